"""Helpers for the template and deploy tests: the `fleet` CLI with the test settings, and
small apps written into a directory."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.storage.embedded import EmbeddedStore as ObjectStore
from tests.docker_fixtures import TEST_BUCKET

from .fleet_support import Result, cli_env, fleet

Fleet = Callable[..., Result]


@pytest.fixture
def env(tenant_image: str, object_store: ObjectStore) -> dict[str, str]:
    return cli_env(tenant_image, TEST_BUCKET)


@pytest.fixture
def run(env: dict[str, str]) -> Iterator[Fleet]:
    """``run(*args) -> Result``; removes the tenants it saw `up` and the templates it built."""
    tenants: list[str] = []
    templates: list[str] = []

    def call(*args: str, **kw: Any) -> Result:
        if args[:1] == ("up",):
            tenants.append(args[1])
        if args[:2] == ("template", "build"):
            templates.append(args[args.index("--name") + 1])
        return fleet(*args, env={**env, **kw.pop("env", {})}, **kw)

    yield call
    for name in tenants:
        fleet("rm", name, "--purge", "--yes", env=env)
    for name in templates:
        fleet("template", "rm", name, "--force", env=env)


def ok(r: Result) -> Result:
    assert r.code == 0, f"exit {r.code}\nstdout: {r.out}\nstderr: {r.err}"
    return r


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def write_app(directory: Path, source: str, requirements: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "agents.py").write_text(source)
    if requirements is not None:
        (directory / "requirements.txt").write_text(requirements)
    return directory


def templates(run: Fleet, name: str) -> list[dict[str, Any]]:
    return [t for t in json.loads(ok(run("template", "ls", "--json")).out) if t["name"] == name]


def tenant_info(run: Fleet, tenant: str) -> dict[str, Any]:
    rows = json.loads(ok(run("ls", "--json")).out)
    return dict(next(t for t in rows if t["tenant"] == tenant))


def run_wait(run: Fleet, tenant: str, workflow: str, payload: dict[str, Any]) -> dict[str, Any]:
    r = ok(run("run", tenant, workflow, "-i", json.dumps(payload), "--wait", "--json"))
    return dict(json.loads(r.out))


def wait_status(run: Fleet, tenant: str, run_id: str, status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        rows = json.loads(ok(run("runs", tenant, "--json")).out)
        now = next((r["status"] for r in rows if r["id"] == run_id), None)
        if now == status:
            return
        assert time.monotonic() < deadline, f"run {run_id} is {now}, not {status}"
        time.sleep(0.3)


def events(docker_client: Any, tenant: str, run_id: str) -> list[dict[str, Any]]:
    """A run's history from the tenant's API (its token read from the engine)."""
    import httpx

    from fleet.engine.container_spec import published_port

    c = docker_client.containers.get(f"litefleet-{tenant}")
    token = dict(e.partition("=")[::2] for e in c.attrs["Config"]["Env"])["AGENT_RUNTIME_TOKEN"]
    url = f"http://127.0.0.1:{published_port(c.attrs)}/v1/runs/{run_id}/events"
    got = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, trust_env=False)
    body: Any = got.raise_for_status().json()
    return list(body["events"] if isinstance(body, dict) else body)
