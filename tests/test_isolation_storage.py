"""A tenant cannot harm another tenant's backup, its lease, or its database (issue 11: object
storage and PostgreSQL), and the fleet refuses stores the lease cannot rely on.

Without Docker: the embedded store's own server (images/s3/serve.py, real HTTP on loopback),
per-tenant keys made through its IAM API, Litestream with such a key, the conditional-write
check against a store that ignores those headers (a proxy in front of moto), a missing bucket.
With Docker: hostile workflows inside tenant A attack tenant B's backup, lease and database;
`fleet up` refuses a store without conditional writes and a missing bucket before creating
anything; `fleet rm --purge` deletes the tenant's key; an old store is replaced or refused.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.core.errors import ObjectStoreError
from fleet.core.names import lease_key, tenant_user
from fleet.storage import preflight
from fleet.storage.credentials import TenantKeys, policy, wait_usable
from fleet.storage.s3 import client as s3_client
from fleet.supervisor import conditional, exits, lease
from fleet.supervisor.children import Replicator
from fleet.supervisor.keeper import Keeper
from fleet.supervisor.layout import conditional_check_key
from fleet.supervisor.lease import Holder
from fleet.supervisor.s3 import S3Failure, S3Settings, request

from .moto_support import checked_store, clean_env, moto_s3
from .s3_proxy import ignoring_conditional_writes

BUCKET = "isolation"


def _tenant() -> str:
    return f"iso-{uuid.uuid4().hex[:8]}"


def _status(s3: S3Settings, method: str, key: str, body: bytes = b"") -> int:
    return request(s3, method, key, body)[0]


def _with_key(admin: S3Settings, key: tuple[str, str]) -> S3Settings:
    return S3Settings(admin.endpoint, admin.bucket, admin.region, *key)


@pytest.fixture(scope="module")
def store() -> Iterator[S3Settings]:
    with checked_store(BUCKET) as admin:
        yield admin


# -- the embedded store's server


def test_the_store_checks_every_request(store: S3Settings) -> None:
    import httpx

    request(store, "PUT", "tenants/x/obj", b"data")
    anonymous = S3Settings(store.endpoint, BUCKET, "us-east-1", "", "")
    wrong = S3Settings(store.endpoint, BUCKET, "us-east-1", store.access_key_id, "wrong")
    for s3 in (anonymous, wrong):
        assert _status(s3, "GET", "tenants/x/obj") == 403
        assert _status(s3, "DELETE", "tenants/x/obj") == 403
    assert _status(store, "GET", "tenants/x/obj") == 200
    with httpx.Client(trust_env=False) as http:
        for method in ("GET", "PUT", "DELETE"):  # not signed at all
            assert (
                http.request(method, f"{store.endpoint}/{BUCKET}/tenants/x/obj").status_code == 403
            )
        # moto's control API would reset every backend, switch checks off, dump every secret.
        assert http.get(f"{store.endpoint}/moto-api/data.json").status_code == 403
        assert http.post(f"{store.endpoint}/moto-api/reset-auth", content=b"inf").status_code == 403
        assert http.post(f"{store.endpoint}//moto-api/reset").status_code == 403
    assert _status(wrong, "GET", "tenants/x/obj") == 403  # still checked


def test_a_tenant_key_reaches_its_own_backup_and_lease_only(store: S3Settings) -> None:
    a, b = _tenant(), _tenant()
    keys = TenantKeys(store, store.endpoint)
    mine = _with_key(store, keys.issue(a))
    request(store, "PUT", f"tenants/{b}/0000/x.ltx", b"B")
    request(store, "PUT", lease_key(b), b"{}")
    for key in (f"tenants/{a}/0000/y.ltx", lease_key(a)):
        assert _status(mine, "PUT", key, b"A") == 200
        assert _status(mine, "GET", key) == 200
        assert _status(mine, "DELETE", key) == 204
    for key in (f"tenants/{b}/0000/x.ltx", lease_key(b), "manifests/x.json", f"archive/{a}/z"):
        assert _status(mine, "GET", key) == 403, key
        assert _status(mine, "PUT", key, b"evil") == 403, key
        assert _status(mine, "DELETE", key) == 403, key
    assert request(store, "GET", f"tenants/{b}/0000/x.ltx")[2] == b"B"
    # Copying another tenant's object into its own prefix would read it: refused.
    copy = request(
        mine,
        "PUT",
        f"tenants/{a}/stolen",
        b"",
        {"x-amz-copy-source": f"/{BUCKET}/tenants/{b}/0000/x.ltx"},
    )
    assert copy[0] == 403 and _status(store, "GET", f"tenants/{a}/stolen") == 404
    # No IAM either: it cannot make itself (or B) another key.
    other = TenantKeys(mine, store.endpoint)
    with pytest.raises(ObjectStoreError, match="AccessDenied"):
        other.issue(b)


def test_a_fork_reads_the_source_backup_with_a_key_that_only_reads_it(store: S3Settings) -> None:
    """`fleet fork SRC NEW`: the restore job's key gets SRC's replica and nothing else, and
    stops working when the job is done."""
    src, other = _tenant(), _tenant()
    for t in (src, other):
        request(store, "PUT", f"tenants/{t}/0000/x.ltx", t.encode())
        request(store, "PUT", lease_key(t), b"{}")
    keys = TenantKeys(store, store.endpoint)
    with keys.reader(store, src) as key:
        reader = _with_key(store, key)
        assert request(reader, "GET", f"tenants/{src}/0000/x.ltx")[2] == src.encode()
        listed = s3_client(reader).list_objects_v2(Bucket=BUCKET, Prefix=f"tenants/{src}/")
        assert [o["Key"] for o in listed["Contents"]] == [f"tenants/{src}/0000/x.ltx"]
        assert _status(reader, "PUT", f"tenants/{src}/0000/y.ltx", b"evil") == 403
        assert _status(reader, "DELETE", f"tenants/{src}/0000/x.ltx") == 403
        for key_name in (lease_key(src), f"tenants/{other}/0000/x.ltx", "manifests/x.json"):
            assert _status(reader, "GET", key_name) == 403, key_name
            assert _status(reader, "PUT", key_name, b"evil") == 403, key_name
    assert _status(reader, "GET", f"tenants/{src}/0000/x.ltx") == 403  # deleted with its user
    assert request(store, "GET", f"tenants/{src}/0000/x.ltx")[2] == src.encode()


def test_listing_is_scoped_by_policy_but_moto_ignores_the_prefix(store: S3Settings) -> None:
    """The policy limits listing to its own prefix (AWS and MinIO enforce it); moto does not
    evaluate s3:prefix, so names (never contents) of other tenants' objects show there. The
    README says so; this test notices when that changes."""
    a, b = _tenant(), _tenant()
    statement = policy(BUCKET, a)["Statement"][1]
    assert statement["Condition"] == {
        "StringLike": {"s3:prefix": [f"tenants/{a}/", f"tenants/{a}/*"]}
    }
    mine = _with_key(store, TenantKeys(store, store.endpoint).issue(a))
    request(store, "PUT", f"tenants/{b}/name-only", b"secret data")
    listed = s3_client(mine).list_objects_v2(Bucket=BUCKET, Prefix=f"tenants/{b}/")
    assert [o["Key"] for o in listed.get("Contents", [])] == [f"tenants/{b}/name-only"]


def test_a_new_key_replaces_the_old_and_purge_deletes_it(store: S3Settings) -> None:
    t = _tenant()
    keys = TenantKeys(store, store.endpoint)
    first = _with_key(store, keys.issue(t))
    wait_usable(first, t)
    second = _with_key(store, keys.issue(t))
    assert first.access_key_id != second.access_key_id
    assert _status(first, "GET", lease_key(t)) == 403  # a stale copy's key stops working
    assert _status(second, "GET", lease_key(t)) == 404
    assert keys.revoke(t) is True
    assert _status(second, "GET", lease_key(t)) == 403
    assert keys.revoke(t) is False
    iam = keys.iam
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_user(UserName=tenant_user(BUCKET, t))


def test_tenant_user_names_fit_iam() -> None:
    longest = "a" * 63
    assert len(tenant_user("bucket", longest)) <= 64
    assert tenant_user("b1", "x") != tenant_user("b2", "x")
    assert tenant_user("b", "x").startswith("lf-x-")


def test_litestream_replicates_and_restores_with_a_tenant_key(
    store: S3Settings, tmp_path: Path
) -> None:
    import apsw

    from fleet.storage.litestream import litestream_binary, restore_config

    t = _tenant()
    mine = _with_key(store, TenantKeys(store, store.endpoint).issue(t))
    db = tmp_path / "t.db"
    conn = apsw.Connection(str(db))
    for sql in ("PRAGMA journal_mode=WAL", "CREATE TABLE x(a)", "INSERT INTO x VALUES (42)"):
        list(conn.execute(sql))
    config = tmp_path / "ls.yml"
    config.write_text(restore_config(mine, t).replace("/data/tenant.db", str(db)))
    env = {
        **clean_env(),
        "LITESTREAM_ACCESS_KEY_ID": mine.access_key_id,
        "LITESTREAM_SECRET_ACCESS_KEY": mine.secret_access_key,
    }
    proc = subprocess.Popen(
        [litestream_binary(), "replicate", "-config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while (
            not s3_client(store)
            .list_objects_v2(Bucket=BUCKET, Prefix=f"tenants/{t}/0000/")
            .get("KeyCount")
        ):
            assert time.monotonic() < deadline, "nothing replicated"
            time.sleep(0.2)
    finally:
        proc.terminate()
        err, _ = proc.communicate(timeout=30)
        conn.close()
    assert b"AccessDenied" not in err and b"ERROR" not in err, err.decode()[-2000:]
    out = tmp_path / "restored.db"
    done = subprocess.run(
        [litestream_binary(), "restore", "-config", str(config), "-o", str(out), str(db)],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert list(apsw.Connection(str(out)).execute("SELECT a FROM x")) == [(42,)]


def test_tenant_credentials_can_be_created_check(store: S3Settings) -> None:
    preflight.check_tenant_credentials(store, store.endpoint)
    users = TenantKeys(store, store.endpoint).iam.list_users(PathPrefix="/litefleet/")["Users"]
    assert not [u for u in users if u["UserName"].startswith("lfprobe-")]  # cleaned up
    no_iam = S3Settings(store.endpoint, BUCKET, "us-east-1", "AKIANOSUCHKEY0000000", "x")
    with pytest.raises(ObjectStoreError, match="IAM API"):
        preflight.check_tenant_credentials(no_iam, store.endpoint)


# -- conditional writes and missing buckets


@pytest.fixture(scope="module")
def plain_moto() -> Iterator[S3Settings]:
    with moto_s3(BUCKET) as s3:
        yield s3


def test_conditional_writes_are_checked(store: S3Settings, plain_moto: S3Settings) -> None:
    assert conditional.problem(store, "leases/.check") is None
    assert conditional.problem(plain_moto, "leases/.check") is None
    preflight.check_conditional_writes(plain_moto)
    with ignoring_conditional_writes(plain_moto.endpoint) as proxy:
        careless = plain_moto.with_endpoint(proxy)
        why = conditional.problem(careless, "leases/.check")
        assert why is not None and "does not honour conditional writes" in why
        assert "If-None-Match" in why and proxy in why
        with pytest.raises(ObjectStoreError, match="does not honour conditional writes") as exc:
            preflight.check_conditional_writes(careless)
        assert exc.value.exit_code == 5
    assert _status(plain_moto, "GET", "leases/.check") == 404  # the scratch object is gone


def test_the_keeper_refuses_a_store_without_conditional_writes(plain_moto: S3Settings) -> None:
    lines: list[str] = []
    t = _tenant()
    replicator = Replicator(["true"], ["true"], {}, None)  # never started: no lease
    with ignoring_conditional_writes(plain_moto.endpoint) as proxy:
        keeper = Keeper(
            plain_moto.with_endpoint(proxy), t, Holder("h", "c"), replicator, wait_s=2,
            log=lines.append,
        )  # fmt: skip
        assert keeper.run() == exits.DOWN  # stays down: retrying cannot help
    assert lease.read(plain_moto, t) is None  # no lease taken, nothing started
    assert replicator.pid is None
    assert any("does not honour conditional writes" in ln for ln in lines), lines
    # The same check on the store itself passes.
    assert conditional.problem(plain_moto, conditional_check_key(t)) is None


def test_a_missing_bucket_is_named(plain_moto: S3Settings) -> None:
    missing = S3Settings(plain_moto.endpoint, "no-such-bucket", "us-east-1", "k", "s")
    with pytest.raises(ObjectStoreError) as exc:
        preflight.check_bucket(missing)
    assert exc.value.exit_code == 5
    assert "no-such-bucket" in exc.value.message and plain_moto.endpoint in exc.value.message
    with pytest.raises(S3Failure, match="no-such-bucket"):
        conditional.problem(missing, "leases/.check")
    preflight.check_bucket(plain_moto)


# -- which key a tenant gets


def _endpoints(**settings: Any) -> Any:
    from fleet.core.settings import FleetSettings
    from fleet.storage.endpoints import S3Endpoints

    def no_engine() -> Any:
        raise AssertionError("an external store needs no engine")

    return S3Endpoints(FleetSettings(**settings), no_engine)


def _external(s3: S3Settings, **more: Any) -> dict[str, Any]:
    return {
        "s3_endpoint": s3.endpoint,
        "s3_bucket": s3.bucket,
        "s3_access_key_id": s3.access_key_id,
        "s3_secret_access_key": s3.secret_access_key,
        **more,
    }


def test_keys_per_tenant_wherever_the_iam_api_answers(store: S3Settings) -> None:
    t = _tenant()
    storage = _endpoints(**_external(store, s3_tenant_endpoint="http://10.9.8.7:9000"))
    own = storage.for_tenant(t)
    assert storage.sharing_warning() is None
    assert own.access_key_id != store.access_key_id
    assert own.endpoint == "http://10.9.8.7:9000"  # as containers reach it
    assert storage.for_tenant(t) == own  # one key per tenant and command
    assert storage.forget_tenant(t) is True


def test_shared_keys_warn(store: S3Settings) -> None:
    explicit = _endpoints(**_external(store, s3_credentials="shared"))
    assert explicit.for_tenant(_tenant()).access_key_id == store.access_key_id
    warning = explicit.sharing_warning()
    assert warning and "every other tenant's backups" in warning
    # Unset, and no IAM API where it is looked for: shared, and the warning says why.
    closed = _endpoints(**_external(store, s3_iam_endpoint="http://127.0.0.1:9"))
    assert closed.for_tenant(_tenant()).access_key_id == store.access_key_id
    assert "does not answer" in (closed.sharing_warning() or "")
    required = _endpoints(
        **_external(store, s3_credentials="iam", s3_iam_endpoint="http://127.0.0.1:9")
    )
    with pytest.raises(ObjectStoreError):
        required.for_tenant(_tenant())


# -- PostgreSQL names and statements


def test_pg_names_and_the_role_statement_hold_no_password() -> None:
    from fleet.core.errors import InvalidArgument
    from fleet.core.names import pg_tenant_name
    from fleet.storage.databases import create_role_sql, tenant_dsn

    assert pg_tenant_name("my-agent") == "lf_my-agent"
    assert pg_tenant_name("a" * 60) == "lf_" + "a" * 60
    with pytest.raises(InvalidArgument, match="too long"):
        pg_tenant_name("a" * 61)
    dsn = tenant_dsn("postgresql://admin:pw@127.0.0.1:5432/x?sslmode=prefer", "lf_t-1", "p/w@")
    assert dsn == "postgresql://lf_t-1:p%2Fw%40@127.0.0.1:5432/lf_t-1?sslmode=prefer"
    with pytest.raises(ValueError):
        create_role_sql("lf_x", "plaintext")


def test_db_url_file_is_read_and_checked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from .fleet_support import cli, one_line_error

    missing = tmp_path / "missing"
    r = cli(capsys, "up", "x", "--db-url-file", str(missing))
    assert r.code == 2 and "cannot read --db-url-file" in one_line_error(r)
    empty = tmp_path / "empty"
    empty.write_text("\n\n")
    assert "is empty" in one_line_error(cli(capsys, "up", "x", "--db-url-file", str(empty)))
    given = tmp_path / "dsn"
    given.write_text("postgresql://u:p@h/d\n")
    r = cli(capsys, "up", "x", "--db-url-file", str(given), "--db-url", "postgresql://u@h/d")
    assert r.code == 2 and "not both" in one_line_error(r)
    r = cli(capsys, "up", "x", "--db-url-file", str(given), "--postgres")
    assert r.code == 2 and "not both" in one_line_error(r)


# -- from inside tenants (Docker)

HOSTILE_APP = Path(__file__).with_name("hostile_storage_app.py")
APP_IN_VOLUME = "/data/hostile.py"
DENIED = (401, 403)


@pytest.fixture
def fleet_env(tenant_image: str, object_store: Any) -> Iterator[dict[str, str]]:
    """The fleet CLI on the test store (FLEET_S3_CONTAINER / FLEET_S3_PORT come from the
    environment, as for the ``object_store`` fixture); tenants it saw are purged after."""
    from tests.docker_fixtures import TEST_BUCKET

    from .fleet_support import cli_env, fleet

    env = cli_env(tenant_image, TEST_BUCKET)
    yield env
    listed = fleet("ls", "--json", env=env)
    for t in json.loads(listed.out) if listed.code == 0 else []:
        if t["tenant"].startswith("iso-"):
            fleet("rm", t["tenant"], "--purge", "--yes", env=env)


def _ok(r: Any) -> Any:
    assert r.code == 0, f"exit {r.code}\nstdout: {r.out}\nstderr: {r.err}"
    return r


def _seed_volume(docker_client: Any, image: str, tenant: str, files: dict[str, bytes]) -> str:
    """The tenant's volume, made before `fleet up` (which then uses it), holding ``files``:
    how a test puts its own app where the tenant's runtime loads it."""
    import io
    import tarfile

    from fleet.core import names

    volume = names.volume_name(tenant)
    docker_client.volumes.create(name=volume, labels={names.LABEL_TENANT: tenant})
    c = docker_client.containers.create(
        image, entrypoint=["true"], volumes={volume: {"bind": "/data", "mode": "rw"}}
    )
    try:
        c.start()  # the image's /data (owner, mode) is copied into the new volume
        c.wait(timeout=60)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                info.uid, info.gid = names.SUPERVISOR_UID, names.AGENT_GID  # agent may read
                tar.addfile(info, io.BytesIO(data))
        c.put_archive("/data", buf.getvalue())
    finally:
        c.remove(force=True)
    return volume


def _container_env(docker_client: Any, tenant: str) -> dict[str, str]:
    c = docker_client.containers.get(f"litefleet-{tenant}")
    return dict(e.partition("=")[::2] for e in c.attrs["Config"]["Env"])


def _start_run(docker_client: Any, tenant: str, workflow: str, payload: Any) -> dict[str, Any]:
    """Through the tenant's API directly (the input may hold the tenant's own key: never on a
    command line)."""
    import httpx

    from fleet.engine.container_spec import published_port

    c = docker_client.containers.get(f"litefleet-{tenant}")
    url = f"http://127.0.0.1:{published_port(c.attrs)}"
    token = _container_env(docker_client, tenant)["AGENT_RUNTIME_TOKEN"]
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, trust_env=False, timeout=30) as http:
        posted = http.post("/v1/runs", json={"workflow": workflow, "input": payload})
        assert posted.status_code == 201, posted.text
        run = posted.json()
        deadline = time.monotonic() + 120
        while run["status"] not in ("completed", "failed", "cancelled"):
            assert time.monotonic() < deadline, run
            time.sleep(0.2)
            run = http.get(f"/v1/runs/{run['id']}").json()
    assert run["status"] == "completed", run
    return run


def _wait_backup(admin: S3Settings, tenant: str, above: int = 0) -> int:
    from fleet.storage.backups import backup_state

    deadline = time.monotonic() + 30
    while (txid := backup_state(admin, tenant).txid) <= above:
        assert time.monotonic() < deadline, f"{tenant}'s backup did not pass txid {above}"
        time.sleep(0.2)
    return txid


@pytest.mark.docker
def test_a_tenant_cannot_touch_another_tenants_backup_or_lease(
    fleet_env: dict[str, str],
    object_store: Any,
    docker_client: Any,
    tenant_image: str,
    tmp_path: Path,
) -> None:
    from .fleet_support import fleet

    admin = object_store.for_fleet()
    a, b = _tenant(), _tenant()
    _ok(fleet("up", b, env=fleet_env))
    _ok(fleet("run", b, "echo", "--input", '{"message": "b"}', "--wait", env=fleet_env))
    _wait_backup(admin, b)
    sentinel = f"tenants/{b}/sentinel"
    request(admin, "PUT", sentinel, b"B's data")
    b_lease = lease.read(admin, b)
    assert b_lease is not None and b_lease.live()

    _seed_volume(docker_client, tenant_image, a, {"hostile.py": HOSTILE_APP.read_bytes()})
    _ok(fleet("up", a, "--image", tenant_image, "--app", APP_IN_VOLUME, env=fleet_env))
    a_env = _container_env(docker_client, a)
    own = (a_env["LITESTREAM_ACCESS_KEY_ID"], a_env["LITESTREAM_SECRET_ACCESS_KEY"])
    assert own[0] != admin.access_key_id  # the fleet's key stays on the host
    a_txid = _wait_backup(admin, a)

    targets = {
        "endpoint": a_env["LITEFLEET_S3_ENDPOINT"],
        "bucket": admin.bucket,
        "victim_object": sentinel,
        "victim_lease": lease_key(b),
        "victim_user": tenant_user(admin.bucket, b),
        "own_prefix": f"tenants/{a}/",
        "keys": [list(own)],
    }
    got = _start_run(docker_client, a, "storage_attack", {"targets": targets})["result"]
    assert set(got["key_ids"]) <= {own[0]}, "a key other than A's own is inside A"
    for label, r in got["results"].items():
        for attempt in (
            "get_victim_object", "head_victim_object", "overwrite_victim_object",
            "delete_victim_object", "get_victim_lease", "overwrite_victim_lease",
            "delete_victim_lease", "write_fleet_manifest", "copy_victim_into_own_prefix",
            "create_victim_iam_key", "list_iam_users", "moto_api_dump", "moto_api_reset",
        ):  # fmt: skip
            assert r[attempt] in DENIED, (label, attempt, r[attempt])
        assert r["read_the_copy"] in (*DENIED, 404), (label, r)
        own_ops = (r["write_own_prefix"], r["read_own_prefix"], r["delete_own_prefix"])
        if label == "given-0" or label.startswith("found-"):
            assert own_ops == (200, 200, 204), (label, own_ops)  # the key works: denials mean it
        else:
            assert all(s in DENIED for s in own_ops), (label, own_ops)

    # B is untouched: its object, its lease, its backup (restorable, with its run).
    assert request(admin, "GET", sentinel)[2] == b"B's data"
    now = lease.read(admin, b)
    assert now is not None and now.live()
    assert (now.holder, now.generation) == (b_lease.holder, b_lease.generation)
    pulled = _ok(fleet("pull", b, "-o", str(tmp_path / "b.db"), env=fleet_env))
    assert "integrity ok" in pulled.out
    # A still works and replicates.
    _start_run(docker_client, a, "note", {"text": "after the attack"})
    _wait_backup(admin, a, above=a_txid)


@pytest.mark.docker
def test_purge_deletes_the_tenants_key(
    fleet_env: dict[str, str], object_store: Any, docker_client: Any
) -> None:
    from .fleet_support import fleet

    admin = object_store.for_fleet()
    t = _tenant()
    up = _ok(fleet("up", t, env=fleet_env))
    assert "warning" not in up.err
    env = _container_env(docker_client, t)
    key = _with_key(admin, (env["LITESTREAM_ACCESS_KEY_ID"], env["LITESTREAM_SECRET_ACCESS_KEY"]))
    assert _status(key, "GET", lease_key(t)) == 200
    removed = _ok(fleet("rm", t, "--purge", "--yes", env=fleet_env))
    assert "its object-store key" in removed.out
    assert _status(key, "GET", lease_key(t)) == 403
    iam = TenantKeys(admin, admin.endpoint).iam
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_user(UserName=tenant_user(admin.bucket, t))
    for out in (up, removed):
        assert key.secret_access_key not in out.out + out.err


@pytest.mark.docker
def test_a_stopped_tenant_whose_key_was_replaced_starts_with_a_new_one(
    fleet_env: dict[str, str], object_store: Any, docker_client: Any
) -> None:
    """A newer container of the tenant (a restore elsewhere, say) took a new key, or the
    store was made anew: `fleet up` of the stopped copy makes its container again, on its
    volume, with a key that works, instead of starting one that cannot replicate."""
    from .fleet_support import fleet

    admin = object_store.for_fleet()
    t = _tenant()
    _ok(fleet("up", t, env=fleet_env))
    ran = json.loads(
        _ok(
            fleet("run", t, "echo", "-i", '{"message": "kept"}', "--wait", "--json", env=fleet_env)
        ).out
    )
    _ok(fleet("down", t, env=fleet_env))
    old = _container_env(docker_client, t)["LITESTREAM_ACCESS_KEY_ID"]
    TenantKeys(admin, admin.endpoint).issue(t)  # what a newer container of it would do
    _ok(fleet("up", t, env=fleet_env))
    assert _container_env(docker_client, t)["LITESTREAM_ACCESS_KEY_ID"] != old
    runs = json.loads(_ok(fleet("runs", t, "--json", env=fleet_env)).out)
    assert ran["id"] in {r["id"] for r in runs}  # the same volume
    _ok(fleet("run", t, "echo", "-i", '{"message": "more"}', "--wait", env=fleet_env))


@pytest.mark.docker
def test_parking_deletes_the_key_and_a_wake_gets_a_new_one(
    fleet_env: dict[str, str], object_store: Any, docker_client: Any
) -> None:
    """No container holds a parked tenant's key: it is deleted, and not kept in the parking
    record either; the woken tenant replicates with a new key of its own."""
    from fleet.storage import manifests

    from .fleet_support import fleet

    admin = object_store.for_fleet()
    t = _tenant()
    _ok(fleet("up", t, env=fleet_env))
    env = _container_env(docker_client, t)
    key = _with_key(admin, (env["LITESTREAM_ACCESS_KEY_ID"], env["LITESTREAM_SECRET_ACCESS_KEY"]))
    _ok(
        fleet(
            "run", t, "echo", "-i", '{"message": "kept"}', "--id", "kept", "--wait", env=fleet_env
        )
    )
    _ok(fleet("park", t, env=fleet_env))
    assert _status(key, "GET", lease_key(t)) == 403
    record = json.dumps(manifests.read(admin, t).doc)
    assert key.access_key_id not in record and key.secret_access_key not in record
    _ok(fleet("wake", t, env=fleet_env))
    env = _container_env(docker_client, t)
    assert env["LITESTREAM_ACCESS_KEY_ID"] != key.access_key_id
    new = _with_key(admin, (env["LITESTREAM_ACCESS_KEY_ID"], env["LITESTREAM_SECRET_ACCESS_KEY"]))
    assert _status(new, "GET", lease_key(t)) == 200
    done = _ok(fleet("run", t, "echo", "-i", '{"message": "more"}', "--wait", env=fleet_env))
    assert "more" in done.out
    runs = json.loads(_ok(fleet("runs", t, "--json", env=fleet_env)).out)
    assert "kept" in {r["id"] for r in runs}


@pytest.mark.docker
def test_shared_credentials_warn(fleet_env: dict[str, str], object_store: Any) -> None:
    from .fleet_support import fleet

    t = _tenant()
    up = _ok(fleet("up", t, env={**fleet_env, "FLEET_S3_CREDENTIALS": "shared"}))
    warnings = [ln for ln in up.err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "every other tenant's backups" in warnings[0]


@pytest.fixture
def careless_store(docker_client: Any) -> Iterator[tuple[S3Settings, str]]:
    """Plain moto (with the test bucket) behind a proxy that drops conditional headers,
    listening on the tenants' gateway: (settings as this machine reaches it, as tenants do)."""
    from fleet.engine.network import ensure_tenant_network, network_gateway

    ensure_tenant_network(docker_client)
    gateway = network_gateway(docker_client)
    with moto_s3(BUCKET) as moto, ignoring_conditional_writes(moto.endpoint, gateway) as proxy:
        yield moto.with_endpoint(proxy), proxy


def _nothing_created(docker_client: Any, tenant: str) -> None:
    assert not docker_client.containers.list(all=True, filters={"name": f"litefleet-{tenant}"})
    assert not docker_client.volumes.list(filters={"name": f"litefleet-{tenant}-data"})


@pytest.mark.docker
def test_up_refuses_a_store_without_conditional_writes(
    fleet_env: dict[str, str], careless_store: tuple[S3Settings, str], docker_client: Any
) -> None:
    from .fleet_support import fleet, one_line_error

    s3, proxy = careless_store
    t = _tenant()
    external = {
        **fleet_env,
        "FLEET_S3_ENDPOINT": proxy,
        "FLEET_S3_BUCKET": BUCKET,
        "FLEET_S3_ACCESS_KEY_ID": s3.access_key_id,
        "FLEET_S3_SECRET_ACCESS_KEY": s3.secret_access_key,
    }
    r = fleet("up", t, env=external)
    assert r.code == 5
    line = one_line_error(r)
    assert "does not honour conditional writes" in line and proxy in line
    _nothing_created(docker_client, t)


@pytest.mark.docker
def test_the_keeper_in_a_container_refuses_such_a_store(
    careless_store: tuple[S3Settings, str], docker_client: Any, tenant_image: str
) -> None:
    from fleet.core.hosting import TenantSpec
    from fleet.engine.container_spec import container_config
    from fleet.engine.network import ensure_tenant_network

    s3, _ = careless_store
    t = _tenant()
    spec = TenantSpec(
        tenant=t, image=tenant_image, token="x", s3=s3, volume=f"litefleet-test-{t}",
        name=f"litefleet-test-{t}",
    )  # fmt: skip
    c = docker_client.containers.create(
        **container_config(spec, ensure_tenant_network(docker_client))
    )
    try:
        c.start()
        assert c.wait(timeout=60)["StatusCode"] == exits.DOWN  # and the engine leaves it down
        logs = c.logs().decode()
        assert "not starting" in logs and "does not honour conditional writes" in logs
        assert "lease of" not in logs  # it never took the lease
    finally:
        c.remove(force=True)
        docker_client.volumes.get(f"litefleet-test-{t}").remove(force=True)


@pytest.mark.docker
def test_up_refuses_a_missing_bucket(
    fleet_env: dict[str, str], plain_moto: S3Settings, docker_client: Any
) -> None:
    from .fleet_support import fleet, one_line_error

    t = _tenant()
    r = fleet(
        "up", t,
        env={**fleet_env, "FLEET_S3_ENDPOINT": plain_moto.endpoint, "FLEET_S3_BUCKET": "nope-x1"},
    )  # fmt: skip
    assert r.code == 5
    line = one_line_error(r)
    assert "bucket 'nope-x1' does not exist at " + plain_moto.endpoint in line
    _nothing_created(docker_client, t)


@pytest.mark.docker
def test_an_old_store_is_replaced_only_while_empty(docker_client: Any) -> None:
    """A store made by an older fleet (moto without credential checks, same ports) is
    replaced when it holds nothing, and refused in one line when it holds data (in memory:
    recreating it would delete the data)."""
    from fleet.core.names import image_ref
    from fleet.engine.network import ensure_tenant_network, network_gateway
    from fleet.storage import embedded

    from .fleet_support import free_port

    network = ensure_tenant_network(docker_client)
    gateway = network_gateway(docker_client)
    name, port = f"litefleet-test-olds3-{uuid.uuid4().hex[:8]}", free_port()

    def old_store() -> Any:
        return docker_client.containers.run(
            image_ref("s3"), name=name, network=network, detach=True,
            entrypoint=["/opt/moto/bin/moto_server", "-H", "0.0.0.0", "-p", "9000"],
            ports={"9000/tcp": [("127.0.0.1", port), (gateway, port)]},
            environment={"MOTO_S3_DEFAULT_KEY_BUFFER_SIZE": str(embedded.STORE_OBJECT_BUFFER)},
        )  # fmt: skip

    try:
        old = old_store()
        store = embedded.ensure_object_store(docker_client, bucket="b-old", port=port, name=name)
        assert store.checks_credentials and old.id != docker_client.containers.get(name).id
        assert _status(store.for_fleet(), "GET", "x") == 404
        anonymous = S3Settings(store.host_endpoint, "b-old", "us-east-1", "", "")
        assert _status(anonymous, "GET", "x") == 403

        embedded.remove_object_store(docker_client, name)
        old = old_store()
        unchecked = embedded.EmbeddedStore(f"http://127.0.0.1:{port}", "", "b-old")
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(Exception):
                embedded.client(unchecked).create_bucket(Bucket="b-old")
                break
            assert time.monotonic() < deadline
            time.sleep(0.2)
        embedded.client(unchecked).put_object(Bucket="b-old", Key="tenants/t/x", Body=b"keep")
        with pytest.raises(ObjectStoreError, match=r"checks no credentials.*holds 1 object"):
            embedded.ensure_object_store(docker_client, bucket="b-old", port=port, name=name)
        assert docker_client.containers.get(name).id == old.id  # kept, with its data
    finally:
        embedded.remove_object_store(docker_client, name)


@pytest.mark.docker
@pytest.mark.postgres
def test_a_postgres_tenant_cannot_reach_another_tenants_database(
    fleet_env: dict[str, str], pg_server: str, docker_client: Any, tenant_image: str
) -> None:
    import psycopg

    from fleet.core.hosting import TenantSpec
    from fleet.engine.container_spec import container_config
    from fleet.engine.network import ensure_tenant_network, network_gateway
    from fleet.ops.postgres import for_tenant
    from fleet.storage import databases

    from .fleet_support import fleet

    with psycopg.connect(pg_server) as conn:
        row = conn.execute(
            "SELECT rolcreaterole FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
    if not (row and row[0]):
        pytest.skip("the test server's role lacks CREATEROLE (run images/postgres.sh start)")
    env = {**fleet_env, "FLEET_PG_ADMIN_URL": pg_server}
    a, b = _tenant(), _tenant()
    gateway = network_gateway(docker_client)
    _ok(fleet("up", b, "--postgres", env=env))
    listed = {t["tenant"]: t for t in json.loads(_ok(fleet("ls", "--json", env=env)).out)}
    assert listed[b]["database"] == f"lf_{b}" and listed[b]["backend"] == "postgres"
    # A, made as `fleet up --postgres` makes it, with the hostile app mounted beside it.
    dsn = for_tenant(databases.provision(pg_server, a), gateway)
    app_volume = _seed_volume(
        docker_client, tenant_image, f"{a}-app", {"hostile.py": HOSTILE_APP.read_bytes()}
    )
    spec = TenantSpec(
        tenant=a, image=tenant_image, token=uuid.uuid4().hex, app="/app/hostile.py",
        db_url=dsn.url, db_password=dsn.password, name=f"litefleet-{a}",
        labels={"litefleet.role": "tenant", "litefleet.tenant": a},
    )  # fmt: skip
    cfg = container_config(spec, ensure_tenant_network(docker_client))
    cfg["volumes"] = {app_volume: {"bind": "/app", "mode": "ro"}}
    c = docker_client.containers.create(**cfg)
    try:
        c.start()
        from tests.docker_fixtures import Tenant, wait_healthy

        wait_healthy(Tenant(a, spec.token, app_volume, c), timeout=90)
        targets = {
            "host": gateway, "port": dsn.port, "own_role": f"lf_{a}",
            "victim_database": f"lf_{b}", "admin_database": urlsplit_path(pg_server),
        }  # fmt: skip
        got = _start_run(docker_client, a, "pg_attack", {"targets": targets})["result"]
        assert got["own_role_own_database"] == "connected", got
        for attempt in ("own_role_victim_database", "own_role_admin_database",
                        "own_role_postgres_database"):  # fmt: skip
            assert "pg_hba.conf rejects connection" in got[attempt], got
        assert "password authentication failed" in got["victim_role_own_password"], got
        with psycopg.connect(pg_server) as conn:
            granted = conn.execute(
                "SELECT has_database_privilege(%s, %s, 'CONNECT')", (f"lf_{a}", f"lf_{b}")
            ).fetchone()
        assert granted == (False,)  # and without pg_hba, CONNECT is revoked from PUBLIC
    finally:
        c.remove(force=True)
        docker_client.volumes.get(app_volume).remove(force=True)
        databases.drop(pg_server, a)
    removed = _ok(fleet("rm", b, "--purge", "--yes", env=env))
    assert "its PostgreSQL role and database" in removed.out
    with psycopg.connect(pg_server) as conn:
        left = conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname IN (%s, %s)", (f"lf_{a}", f"lf_{b}")
        ).fetchall()
    assert left == []


def urlsplit_path(dsn: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(dsn).path.lstrip("/")
