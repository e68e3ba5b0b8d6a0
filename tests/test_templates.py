"""Templates against a real engine: `fleet template build | ls | rm`, `fleet up --template`
and `fleet up --app FILE`, driven through the installed `fleet` as a user would.

The dependency (inflection, a small pure-Python package) comes from the package index into
the host wheelhouse, as `make images` fetches the runtime's own."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from .fleet_support import fleet, one_line_error
from .template_support import (
    Fleet,
    env,
    events,
    ok,
    run,
    run_wait,
    templates,
    tenant_info,
    unique,
    write_app,
)

pytestmark = pytest.mark.docker
__all__ = ["env", "run"]  # fixtures

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


def test_fork_into_a_template_runs_its_code_on_the_source_s_state(
    run: Fleet, tmp_path: Path
) -> None:
    """`fleet fork SRC NEW --template NAME`: NEW holds SRC's runs and runs the template."""
    name, src, new = unique("ftmpl"), unique("fsrc"), unique("fnew")
    ok(
        run(
            "template",
            "build",
            str(write_app(tmp_path / "t", TITLE_APP, "inflection==0.5.1\n")),
            "--name",
            name,
        )
    )
    ok(run("up", src))
    first = run_wait(run, src, "echo", {"message": "before"})
    deadline = time.monotonic() + 30
    while True:  # the fork reads SRC's backup: wait until the run is replicated
        rep = tenant_info(run, src)["replication"]
        if rep["local_txid"] and rep["lag_txns"] == 0:
            break
        assert time.monotonic() < deadline, rep
        time.sleep(0.5)
    try:
        out = ok(run("fork", src, new, "--template", name)).out
        assert f"into {new}" in out
        info = tenant_info(run, new)
        assert info["template"] == name and info["app"] == "/app/agents.py"
        rows = json.loads(ok(run("runs", new, "--json")).out)
        assert [r["id"] for r in rows] == [first["id"]]  # SRC's history came along
        done = run_wait(run, new, "title", {"text": "forked code"})
        assert done["result"] == "Forked Code"
        assert tenant_info(run, src)["template"] is None  # SRC is untouched
    finally:
        run("rm", new, "--purge", "--yes")


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


PAI_APP = """\
from pydantic_ai import Agent
from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import FunctionModel

from agent_runtime import workflow
from agent_runtime.integrations.pydantic_ai import DurableAgent


def script(messages, info):
    if len(messages) == 1:  # the question: look the order up
        return ModelResponse(parts=[ToolCallPart("order_status", {"order_id": "A7"})])
    return ModelResponse(parts=[TextPart("order A7 has shipped")])


agent = Agent(FunctionModel(script), name="support")


@agent.tool_plain
def order_status(order_id: str) -> str:
    return f"{order_id}: shipped"


support = DurableAgent(agent)


@workflow
async def answer(question: str) -> str:
    return (await support.run(question)).output
"""


def test_a_pydantic_ai_agent_in_a_template(run: Fleet, tmp_path: Path, docker_client: Any) -> None:
    """requirements.txt names litefleet[pydantic-ai]: the stock tenant image leaves
    PydanticAI out, the template adds it."""
    name, t = unique("pai"), unique("tpai")
    src = write_app(tmp_path / "support", PAI_APP, "litefleet[pydantic-ai]\n")
    ok(run("template", "build", str(src), "--name", name))
    assert [x["workflows"] for x in templates(run, name)] == [["answer"]]
    ok(run("up", t, "--template", name))
    done = run_wait(run, t, "answer", {"question": "where is A7?"})
    assert done["status"] == "completed" and done["result"] == "order A7 has shipped"
    names = [
        e["name"] for e in events(docker_client, t, done["id"]) if e["kind"] == "step_completed"
    ]
    assert names[0] == "support__model.request" and names[1].endswith("call_tool:order_status")


def test_the_readme_s_own_agent_commands_work(env: dict[str, str], tmp_path: Path) -> None:
    """README's "Your own agent" block, as written, in an empty directory (with a tenant and
    a directory name of its own)."""
    import os
    import re
    import subprocess
    import sys

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Your own agent", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    tenant, folder = unique("readme"), unique("hello")
    script = (
        block.group(1)
        .replace("alice", tenant)
        .replace("mkdir hello", f"mkdir {folder}")
        .replace("hello/", f"{folder}/")
    )
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    try:
        done = subprocess.run(
            ["bash", "-euc", script],
            cwd=tmp_path,
            env={**os.environ, **env, "PATH": path},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
        assert "completed" in done.stdout and '"hello, bob"' in done.stdout
    finally:
        fleet("rm", tenant, "--purge", "--yes", env=env)
        fleet("template", "rm", folder, "--force", env=env)
