"""`fleet deploy` against a real engine, the embedded store and (for the PostgreSQL case) the
local server: the replay check refuses code that would break a recorded run and changes
nothing; code that only adds deploys, and the waiting run completes on it; a new version
that does not start is rolled back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from .fleet_support import one_line_error
from .template_support import (
    Fleet,
    env,
    ok,
    run,
    run_wait,
    tenant_info,
    unique,
    wait_status,
    write_app,
)

pytestmark = pytest.mark.docker
__all__ = ["env", "run"]  # fixtures

V1 = """\
from agent_runtime import step, wait_for_signal, workflow

@step
async def fetch(url: str) -> str:
    return f"page of {url}"

@step
async def summarize(text: str) -> str:
    return text.upper()

@workflow
async def triage(url: str) -> dict:
    page = await fetch(url)
    verdict = await wait_for_signal("approve")
    return {"summary": await summarize(page), "verdict": verdict}
"""
# The same steps, reordered: a run that recorded `fetch` first cannot resume on it.
V2_REORDERED = V1.replace(
    "    page = await fetch(url)\n    verdict = await wait_for_signal",
    "    await summarize(url)\n    page = await fetch(url)\n    verdict = await wait_for_signal",
)
# Only a new workflow: every recorded run replays.
V2_ADDS = V1 + '\n@workflow\nasync def ping() -> str:\n    return "pong"\n'
# Imports in the build's check and the deploy's replay check, dies when it runs as a tenant.
V_DIES = V2_ADDS + (
    "\nimport os\nif 'AGENT_RUNTIME_TOKEN' in os.environ:\n"
    "    raise SystemExit('this version cannot start')\n"
)


def build(run: Fleet, tmp_path: Path, name: str, source: str) -> str:
    src = write_app(tmp_path / unique("src"), source)
    ok(run("template", "build", str(src), "--name", name))
    return f"{name}:{_versions(run, name)[0]}"


def _versions(run: Fleet, name: str) -> list[str]:
    rows = json.loads(ok(run("template", "ls", "--json")).out)
    return [t["version"] for t in rows if t["name"] == name]  # newest first


def container(docker_client: Any, tenant: str) -> tuple[str, str]:
    c = docker_client.containers.get(f"litefleet-{tenant}")
    return c.id, c.attrs["State"]["StartedAt"]


def waiting_run(run: Fleet, tenant: str, run_id: str) -> None:
    ok(run("run", tenant, "triage", "-i", '{"url": "u"}', "--id", run_id))
    wait_status(run, tenant, run_id, "waiting")


def test_deploy_refuses_a_reordering_and_deploys_an_addition(
    run: Fleet, tmp_path: Path, docker_client: Any
) -> None:
    name, t = unique("dep"), unique("td")
    v1 = build(run, tmp_path, name, V1)
    ok(run("up", t, "--template", v1))
    waiting_run(run, t, "r1")

    v2 = build(run, tmp_path, name, V2_REORDERED)
    before = container(docker_client, t)
    checked = run("deploy", t, "--template", v2, "--check")
    assert checked.code == 9, checked
    assert "r1  triage  FAILS" in checked.out
    assert "history records step 'fetch'" in checked.out
    assert "step 'summarize'" in checked.out
    assert "nothing was changed" in one_line_error(checked)
    refused = run("deploy", t, "--template", v2)  # without --check: refused the same way
    assert refused.code == 9 and "r1  triage  FAILS" in refused.out
    assert container(docker_client, t) == before  # same container, never restarted
    assert tenant_info(run, t)["template_version"] == v1.split(":")[1]

    v3 = build(run, tmp_path, name, V2_ADDS)
    r = ok(run("deploy", t, "--template", name))  # the newest version
    assert f"-> {v3}, downtime " in r.out and "1 unfinished run(s) continue" in r.out
    info = tenant_info(run, t)
    assert (info["template"], info["template_version"]) == (name, v3.split(":")[1])
    assert "already on" in ok(run("deploy", t, "--template", v3)).out
    # The run recorded under v1 goes on under the new code; the new workflow is there.
    ok(run("signal", t, "r1", "approve", "--data", '{"ok": true}'))
    wait_status(run, t, "r1", "completed")
    rows = {x["id"]: x for x in json.loads(ok(run("runs", t, "--json")).out)}
    assert rows["r1"]["result"] == {"summary": "PAGE OF U", "verdict": {"ok": True}}
    assert run_wait(run, t, "ping", {})["result"] == "pong"


def test_a_version_that_does_not_start_is_rolled_back(run: Fleet, tmp_path: Path) -> None:
    name, t = unique("rb"), unique("tr")
    v1 = build(run, tmp_path, name, V1)
    case = f"case={t}"  # a label only this tenant carries: other tests share the engine
    ok(run("up", t, "--template", v1, "--label", case, "--ttl", "3h"))
    info = tenant_info(run, t)
    waiting_run(run, t, "r1")

    bad = build(run, tmp_path, name, V_DIES)
    r = run("deploy", "--label", case, "--template", bad)
    line = one_line_error(r)
    assert r.code == 1 and f"did not start on {bad}" in line and f"runs {v1} again" in line
    assert "this version cannot start" in line
    after = tenant_info(run, t)
    assert after["template_version"] == v1.split(":")[1] and after["state"] == "running"
    assert after["labels"] == {"case": t} and after["expires_at"] == info["expires_at"]
    ok(run("signal", t, "r1", "approve", "--data", "true"))
    wait_status(run, t, "r1", "completed")


def test_deploy_names_its_tenants(run: Fleet) -> None:
    assert "no tenant to deploy" in one_line_error(run("deploy", "--template", "x"))
    line = one_line_error(run("deploy", unique("ghost"), "--template", "x"))
    assert "no template 'x'" in line or "no tenant" in line
    assert "--template" in one_line_error(run("deploy", "t1"))


@pytest.mark.postgres
def test_a_postgresql_tenant_is_checked_against_its_database(
    run: Fleet, tmp_path: Path, pg_dsn: str
) -> None:
    """The check connects to the tenant's own database, read-only, from the sandbox; the
    new version gets the same DSN and password."""
    name, t = unique("pgd"), unique("tp")
    v1 = build(run, tmp_path, name, V1)
    ok(run("up", t, "--template", v1, "--db-url", pg_dsn))
    waiting_run(run, t, "r1")
    v2 = build(run, tmp_path, name, V2_REORDERED)
    checked = run("deploy", t, "--template", v2, "--check")
    assert checked.code == 9 and "r1  triage  FAILS" in checked.out
    password = urlsplit(pg_dsn).password or ""
    assert password and password not in checked.out + checked.err

    v3 = build(run, tmp_path, name, V2_ADDS)
    assert "1 unfinished run(s) continue" in ok(run("deploy", t, "--template", v3)).out
    assert tenant_info(run, t)["backend"] == "postgres"
    ok(run("signal", t, "r1", "approve", "--data", "true"))
    wait_status(run, t, "r1", "completed")


def test_templates_travel_to_another_host(
    two_hosts: dict[str, str], second_engine: str, tmp_path: Path
) -> None:
    """Built on host a, a template is copied to host b when a tenant there needs it; the
    deploy's check runs on b, where the tenant's data is; a restore elsewhere keeps it."""
    import docker

    from .fleet_support import fleet

    def call(*args: str) -> Any:
        return fleet(*args, env=two_hosts)

    name, t = unique("far"), unique("h-far")
    try:
        v1 = build(call, tmp_path, name, V1)
        ok(call("up", t, "--template", v1, "--host", "b"))
        waiting_run(call, t, "r1")
        v2 = build(call, tmp_path, name, V2_ADDS)
        r = ok(call("deploy", t, "--template", v2))
        assert f"tenant {t} on b: {v1} -> {v2}" in r.out
        remote = docker.DockerClient(second_engine)
        assert remote.containers.get(f"litefleet-{t}").image.tags == [f"litefleet/tmpl-{v2}"]
        # Restored on a from its backup, it runs the template its stopped copy on b ran.
        ok(call("down", t))
        ok(call("restore", t, "--host", "a"))
        info = next(x for x in json.loads(ok(call("ls", "--json")).out) if x["tenant"] == t)
        assert (info["host"], info["template_version"]) == ("a", v2.split(":")[1])
        ok(call("signal", t, "r1", "approve", "--data", "true"))
        wait_status(call, t, "r1", "completed")
        ok(call("rm", t, "--purge", "--yes"))
        assert "(a, b)" in ok(call("template", "rm", name)).out
        assert not [i for i in remote.images.list() if any(name in x for x in i.tags)]
    finally:
        call("rm", t, "--purge", "--yes")
        call("template", "rm", name, "--force")
