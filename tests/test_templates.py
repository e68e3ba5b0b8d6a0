"""Templates against a real engine: `fleet template build | ls | rm`, `fleet up --template`
and `fleet up --app FILE`, driven through the installed `fleet` as a user would.

The dependency (inflection, a small pure-Python package) comes from the package index into
the host wheelhouse, as `make images` fetches the runtime's own."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.storage.embedded import EmbeddedStore as ObjectStore
from tests.docker_fixtures import TEST_BUCKET

from .fleet_support import Result, fleet, one_line_error

pytestmark = pytest.mark.docker

Fleet = Callable[..., Result]

TITLE_APP = """\
import inflection
from agent_runtime import step, workflow

@step
async def titleize(text: str) -> str:
    return inflection.titleize(text)

@workflow
async def title(text: str) -> str:
    return await titleize(text)
"""


@pytest.fixture
def env(tenant_image: str, object_store: ObjectStore) -> dict[str, str]:
    return {
        "FLEET_IMAGE": tenant_image,
        "FLEET_S3_BUCKET": TEST_BUCKET,
        "FLEET_HEALTH_TIMEOUT": "90",
        "FLEET_CONFIG": "",
        "COLUMNS": "250",
    }


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


def test_a_template_with_a_dependency_from_the_index(run: Fleet, tmp_path: Path) -> None:
    name, t = unique("tmpl"), unique("tt")
    src = write_app(tmp_path / "title", TITLE_APP, "inflection==0.5.1\n")
    built = ok(run("template", "build", str(src), "--name", name))
    [record] = templates(run, name)
    assert record["app"] == "agents" and record["workflows"] == ["title"]
    assert record["image"] == f"litefleet/tmpl-{name}:{record['version']}"
    assert f"{name}:{record['version']} built" in built.out

    # Unchanged code: the same version, nothing built; a change: a new version.
    again = ok(run("template", "build", str(src), "--name", name))
    assert f"{name}:{record['version']} unchanged" in again.out
    assert [x["version"] for x in templates(run, name)] == [record["version"]]

    ok(run("up", t, "--template", name))
    info = tenant_info(run, t)
    assert (info["template"], info["template_version"]) == (name, record["version"])
    assert info["app"] == "/app/agents.py"
    done = run_wait(run, t, "title", {"text": "hello big world"})
    assert done["status"] == "completed" and done["result"] == "Hello Big World"

    # In use: rm refuses, naming the tenant; once the tenant is gone it removes every version.
    line = one_line_error(run("template", "rm", name))
    assert t in line and "--force" in line
    ok(run("rm", t, "--purge", "--yes"))
    assert "removed template" in ok(run("template", "rm", name)).out
    assert templates(run, name) == []


def test_up_app_file_builds_an_implicit_template(run: Fleet, tmp_path: Path) -> None:
    t = unique("tf")
    stem = unique("probe").replace("-", "_")
    probe = tmp_path / f"{stem}.py"
    probe.write_text(
        "import os\nfrom agent_runtime import workflow\n\n"
        "@workflow\nasync def whoami() -> dict:\n"
        "    try:\n        open(__file__, 'a').close()\n        writable = True\n"
        "    except OSError:\n        writable = False\n"
        "    return {'uid': os.getuid(), 'file': __file__, 'writable': writable}\n"
    )
    r = ok(run("up", t, "--app", str(probe)))
    name = stem.replace("_", "-")
    try:
        assert "created" in r.out
        done = run_wait(run, t, "whoami", {})
        assert done["result"] == {"uid": 10001, "file": f"/app/{probe.name}", "writable": False}
        info = tenant_info(run, t)
        assert info["template"] == name and info["template_version"]
        assert [x["workflows"] for x in templates(run, name)] == [["whoami"]]
    finally:  # the fixture does not know the implicit template's name
        run("rm", t, "--purge", "--yes")
        run("template", "rm", name, "--force")


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("import no_such_dependency_xyz\n", "No module named 'no_such_dependency_xyz'"),
        ("raise RuntimeError('OPENAI_API_KEY is not set')\n", "RuntimeError: OPENAI_API_KEY"),
        ("x = 1\n", "defines no @workflow"),
    ],
)
def test_a_template_that_does_not_import_is_refused(
    run: Fleet, tmp_path: Path, source: str, needle: str
) -> None:
    name = unique("bad")
    src = write_app(tmp_path / "bad", source)
    r = run("template", "build", str(src), "--name", name)
    line = one_line_error(r)
    assert r.code == 2 and needle in line and name in line
    assert templates(run, name) == []
