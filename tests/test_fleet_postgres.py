"""`fleet up --db-url`: tenants on PostgreSQL (fleet/ops/postgres.py, images/postgres.sh).

The DSN handling is checked on its own; the end-to-end tests drive the installed `fleet`
script against the real engine, the tenant image and the local PostgreSQL server, which
listens on the `litefleet` network's gateway for the tenants."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from fleet.core.errors import InvalidArgument
from fleet.core.hosting import TenantSpec
from fleet.engine.container_spec import container_config
from fleet.engine.network import ensure_tenant_network, network_gateway
from fleet.ops.postgres import check_url, for_tenant, redact
from tests import docker_fixtures as _fixtures
from tests.fleet_support import Result, fleet, free_port, one_line_error
from tests.pg_fixtures import SCRIPT, pg_dsn, pg_server  # noqa: F401  (fixtures)

docker_client = _fixtures.docker_client
tenant_image = _fixtures.tenant_image

# -- the DSN a container gets ----------------------------------------------------------------


def test_loopback_host_becomes_the_gateway_and_the_password_leaves_the_url() -> None:
    t = for_tenant("postgresql://app:p%40ss%2Fw@localhost:5544/db?sslmode=disable", "172.30.0.1")
    assert t.url == "postgresql://app@172.30.0.1:5544/db?sslmode=disable"
    assert t.password == "p@ss/w"  # percent-decoded: what libpq reads from PGPASSWORD
    assert (t.host, t.port) == ("172.30.0.1", 5544)
    assert t.note is not None and "172.30.0.1:5544" in t.note and "p@ss" not in t.note
    assert "p@ss" not in repr(t) and "p%40ss" not in repr(t)
    for host in ("127.0.0.1", "127.0.0.2", "[::1]"):
        assert (
            for_tenant(f"postgres://u@{host}/d", "10.1.0.1").url == "postgres://u@10.1.0.1:5432/d"
        )


def test_other_hosts_are_kept_and_a_query_password_is_moved_out() -> None:
    t = for_tenant("postgresql://u@db.internal:6432/x?password=s3cret&connect_timeout=5", "gw")
    assert (t.url, t.password, t.note) == (
        "postgresql://u@db.internal:6432/x?connect_timeout=5", "s3cret", None,
    )  # fmt: skip
    assert for_tenant("postgresql://db.internal/x", "gw").password is None


@pytest.mark.parametrize(
    "dsn",
    [
        "mysql://u:pw@h/db",
        "/var/lib/db.sqlite",
        "postgresql://u:pw@h:notaport/db",
        "postgresql://u:pw@h1,h2/db",
        "postgresql://u:pw@/db?host=/run/postgresql",
    ],
)
def test_unusable_urls_are_refused_without_echoing_the_password(dsn: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        check_url(dsn)
    assert "pw" not in info.value.line()


def test_redact_drops_every_password() -> None:
    assert redact("postgresql://u:pw@h:1/d?password=pw2&x=1") == "postgresql://u@h:1/d?x=1"


def test_container_gets_the_password_apart_and_the_app_cannot_override_it() -> None:
    cfg = container_config(TenantSpec(
        tenant="t1", image="img", volume="v", s3=None, token="tok",
        db_url="postgresql://u@172.30.0.1:5432/d", db_password="pw",
        env={"PGPASSWORD": "mine", "OTHER": "1"},
    ))  # fmt: skip
    env = cfg["environment"]
    assert (env["AGENT_RUNTIME_DB"], env["PGPASSWORD"], env["OTHER"]) == (
        "postgresql://u@172.30.0.1:5432/d", "pw", "1",
    )  # fmt: skip
    assert "volumes" not in cfg  # no local database, no volume


# -- end to end ------------------------------------------------------------------------------


@pytest.fixture
def tenant_env(docker_client: Any, tenant_image: str, pg_server: str) -> dict[str, str]:  # noqa: F811
    # The server listens on the network's gateway as it is now (restarts if it moved).
    ensure_tenant_network(docker_client)
    started = subprocess.run(
        ["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=300, check=False
    )
    assert started.returncode == 0, started.stderr
    return {"FLEET_IMAGE": tenant_image, "FLEET_CONFIG": "", "FLEET_HEALTH_TIMEOUT": "90",
            "COLUMNS": "250"}  # fmt: skip


@pytest.fixture
def tenant(tenant_env: dict[str, str]) -> Iterator[str]:
    name = f"pg-{uuid.uuid4().hex[:8]}"
    yield name
    fleet("rm", name, "--yes", env=tenant_env)


def _ok(r: Result) -> Result:
    assert r.code == 0, f"exit {r.code}\nstdout: {r.out}\nstderr: {r.err}"
    return r


@pytest.mark.docker
@pytest.mark.postgres
def test_tenant_on_postgres_end_to_end(
    tenant: str,
    tenant_env: dict[str, str],
    pg_dsn: str,  # noqa: F811
    docker_client: Any,
) -> None:
    password = urlsplit(pg_dsn).password
    assert password
    gateway = network_gateway(docker_client)

    up = _ok(fleet("up", tenant, "--db-url", pg_dsn, env=tenant_env))
    assert "note: --db-url names this host's loopback (127.0.0.1)" in up.err
    assert f"{gateway}:" in up.err

    ran = _ok(fleet("run", tenant, "steps", "--input", '{"n": 4}', "--wait", "--json",
                    env=tenant_env))  # fmt: skip
    done = json.loads(ran.out)
    assert (done["status"], done["result"]) == ("completed", 4)

    listed = {t["tenant"]: t for t in json.loads(_ok(fleet("ls", "--json", env=tenant_env)).out)}
    assert listed[tenant]["backend"] == "postgres"
    assert listed[tenant]["replication"]["note"] == "postgres: no Litestream"
    table = _ok(fleet("ls", env=tenant_env)).out
    row = next(line for line in table.splitlines() if line.startswith(tenant + " "))
    assert "postgres" in row.split()

    # No Litestream in the container; the runtime's command line has no password.
    container = docker_client.containers.get(f"litefleet-{tenant}")
    processes = " ".join(" ".join(p) for p in container.top()["Processes"])
    assert "-m agent_runtime serve --db postgresql://" in processes  # python3 -I, agent uid
    assert "litestream" not in processes
    assert password not in processes
    logs = _ok(fleet("logs", tenant, env=tenant_env))
    for out in (up, ran, logs, *(fleet("ls", *a, env=tenant_env) for a in ((), ("--json",)))):
        assert password not in out.out + out.err

    # The run lives in PostgreSQL, and stays there after the tenant is removed.
    _ok(fleet("rm", tenant, "--yes", env=tenant_env))
    import docker.errors

    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(f"litefleet-{tenant}")
    with psycopg.connect(pg_dsn) as conn:
        runs = conn.execute("SELECT id, workflow, status, result FROM runs").fetchall()
        assert [(r[1], r[2], r[3]) for r in runs] == [("steps", "completed", "4")]
        assert runs[0][0] == done["id"]
        kinds = conn.execute(
            "SELECT kind FROM events WHERE run_id = %s ORDER BY seq", (done["id"],)
        ).fetchall()
    assert [k for (k,) in kinds].count("step_completed") == 4


@pytest.mark.docker
@pytest.mark.postgres
def test_server_is_reachable_from_the_tenant_network_only(
    tenant_env: dict[str, str],
    pg_server: str,  # noqa: F811
    docker_client: Any,
    tenant_image: str,
) -> None:
    gateway = network_gateway(docker_client)
    with psycopg.connect(pg_server) as conn:
        row = conn.execute("SHOW listen_addresses").fetchone()
    assert row is not None and row[0] == f"127.0.0.1,{gateway}"  # not 0.0.0.0 / *

    probe = (
        "import os, psycopg\n"
        "try:\n"
        "    psycopg.connect(os.environ['DSN'], connect_timeout=5).close(); print('ok')\n"
        "except psycopg.OperationalError as e:\n"
        "    print('refused:', str(e).splitlines()[0])\n"
    )
    dsn = for_tenant(pg_server, gateway)

    def connect_from(network: str) -> str:
        out = docker_client.containers.run(
            tenant_image, ["-c", probe], entrypoint="python3", network=network, remove=True,
            environment={"DSN": dsn.url, "PGPASSWORD": dsn.password or ""},
        )  # fmt: skip
        return str(out.decode().strip())

    assert connect_from("litefleet") == "ok"
    # A container on another network reaches the host address, but pg_hba turns it away.
    assert "no pg_hba.conf entry" in connect_from("bridge")


@pytest.mark.docker
@pytest.mark.postgres
def test_nothing_listening_on_the_gateway_fails_up_in_one_line(
    tenant: str,
    tenant_env: dict[str, str],
    docker_client: Any,
) -> None:
    dsn = f"postgresql://someone:do-not-print@localhost:{free_port()}/x"
    r = fleet("up", tenant, "--db-url", dsn, env=tenant_env)
    line = one_line_error(r)
    assert "does not answer on" in line and "do-not-print" not in r.out + r.err
    assert not docker_client.containers.list(all=True, filters={"name": f"litefleet-{tenant}"})
