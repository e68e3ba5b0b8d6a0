"""Fixtures for the parking tests: a bucket of their own (the gateway registers itself in the
bucket: one per fleet), the fleet CLI with it, and `fleet gateway` as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from fleet.storage.embedded import EmbeddedStore
from fleet.storage.embedded import client as s3_client
from tests.docker_fixtures import the_store
from tests.fleet_support import FLEET, Result, cli_env, fleet, free_port

Fleet = Callable[..., Result]


def ok(r: Result) -> Result:
    assert r.code == 0, f"exit {r.code}\nstdout: {r.out}\nstderr: {r.err}"
    return r


def name(prefix: str = "pk") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def park_env(docker_client: Any, tenant_image: str) -> Iterator[dict[str, str]]:
    """Settings for the CLI: a fresh bucket on the shared embedded store; every tenant in it
    is removed with its backup at the end. Only those: `fleet ls` lists every tenant on the
    engine, which other test sessions share."""
    bucket = f"lf-park-{uuid.uuid4().hex[:10]}"
    store = the_store(docker_client, bucket)
    env = cli_env(tenant_image, bucket)
    yield env
    for t in tenants_in(store, bucket):
        fleet("rm", t, "--purge", "--yes", env=env)


def tenants_in(store: EmbeddedStore, bucket: str) -> list[str]:
    """The tenants with a backup, lease or manifest in ``bucket``."""
    s3 = s3_client(store)
    found = set()
    for prefix in ("tenants/", "leases/", "manifests/"):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                rest = obj["Key"][len(prefix) :]
                found.add(rest.split("/", 1)[0].removesuffix(".json"))
    return sorted(found)


@pytest.fixture
def run(park_env: dict[str, str]) -> Fleet:
    def call(*args: str, **kw: Any) -> Result:
        return fleet(*args, env={**park_env, **kw.pop("env", {})}, **kw)

    return call


def ls(run: Fleet) -> dict[str, dict[str, Any]]:
    return {t["tenant"]: t for t in json.loads(ok(run("ls", "--json")).out)}


def manifest(store: EmbeddedStore, bucket: str, tenant: str) -> dict[str, Any] | None:
    s3 = s3_client(store)
    try:
        body = s3.get_object(Bucket=bucket, Key=f"manifests/{tenant}.json")["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return dict(json.loads(body))


@dataclass
class Gateway:
    url: str
    proc: subprocess.Popen[bytes]
    log: str

    def client(self, tenant: str, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(
            base_url=f"{self.url}/t/{tenant}", headers=headers, trust_env=False, timeout=60
        )

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", trust_env=False, timeout=5).text


def start_gateway(env: dict[str, str], tmp: str, *options: str) -> Gateway:
    port = free_port()
    log = os.path.join(tmp, f"gateway-{port}.log")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [FLEET, "gateway", "--port", str(port), *options],
            env={**os.environ, **env, "FLEET_LOG_LEVEL": "info"},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(log) as f:
                raise AssertionError(f"gateway exited {proc.returncode}: {f.read()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", trust_env=False, timeout=1).status_code == 200:
                return Gateway(url, proc, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("gateway did not answer")


def stop_gateway(gw: Gateway) -> None:
    gw.proc.terminate()
    try:
        gw.proc.wait(15)
    except subprocess.TimeoutExpired:
        gw.proc.kill()
        gw.proc.wait(5)


@pytest.fixture
def gateway(park_env: dict[str, str], tmp_path: Any) -> Iterator[Gateway]:
    gw = start_gateway(park_env, str(tmp_path))
    yield gw
    stop_gateway(gw)


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        time.sleep(0.2)


def console_pages(
    park_env: dict[str, str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch, tenant: str
) -> tuple[str, str]:
    """The web console's tenants page and the tenant's page, as a browser gets them."""
    from starlette.testclient import TestClient

    from fleet.console.app import build_app
    from fleet.core.settings import load_settings
    from fleet.ops.connect import connect
    from fleet.ops.run_source import SourceCache

    for k, v in park_env.items():
        monkeypatch.setenv(k, v)
    app = build_app(connect(load_settings(None)), "console-token", SourceCache(tmp_path))
    with TestClient(app, base_url="http://127.0.0.1:8081") as http:
        listing = http.get("/", params={"token": "console-token"})
        page = http.get(f"/t/{tenant}")
    assert listing.status_code == 200 and page.status_code == 200, page.text
    return listing.text, page.text
