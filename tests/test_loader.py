"""Loading the user's app (agent_runtime/_loader.py): module names, files, package
directories, directories holding one module; never through ``sys.path``."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent_runtime import InvalidInput
from agent_runtime._loader import load_app
from agent_runtime._runtime import collect_workflows

APP = """
import {sibling}
from agent_runtime import workflow

@workflow
async def {name}() -> str:
    return {sibling}.VALUE
"""


def test_a_file_app_imports_its_siblings_without_touching_sys_path(tmp_path: Path) -> None:
    (tmp_path / "agents_a.py").write_text(APP.format(sibling="sibling_a", name="wf_a"))
    (tmp_path / "sibling_a.py").write_text("VALUE = 'a'\n")
    path_before = list(sys.path)
    module = load_app(str(tmp_path / "agents_a.py"))
    assert sys.path == path_before
    assert module.__name__ == "agents_a" and sys.modules["agents_a"] is module
    assert module.sibling_a.VALUE == "a"
    assert list(collect_workflows(module)) == ["wf_a"]


def test_app_siblings_are_for_the_app_only(tmp_path: Path) -> None:
    """A module beside the app stands in for nothing the server (or a library) imports:
    only the app's own files find it."""
    (tmp_path / "agents_b.py").write_text(APP.format(sibling="sibling_b", name="wf_b"))
    (tmp_path / "sibling_b.py").write_text("VALUE = 'b'\n")
    (tmp_path / "optional_dep_b.py").write_text("raise SystemExit('planted')\n")
    load_app(str(tmp_path / "agents_b.py"))
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("optional_dep_b")


def test_a_file_named_like_an_installed_module_replaces_nothing(tmp_path: Path) -> None:
    (tmp_path / "json.py").write_text(
        "from agent_runtime import workflow\n@workflow\nasync def shadow() -> int:\n    return 1\n"
    )
    module = load_app(str(tmp_path / "json.py"))
    assert module.__name__ == "agent_runtime_app_json"
    assert sys.modules["json"] is json and json.dumps([1]) == "[1]"


def test_a_package_directory(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg_c"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .flows import wf_c\nfrom . import helpers\n")
    (pkg / "helpers.py").write_text("VALUE = 'c'\n")
    (pkg / "flows.py").write_text(
        "from agent_runtime import workflow\nfrom pkg_c.helpers import VALUE\n"
        "@workflow\nasync def wf_c() -> str:\n    return VALUE\n"
    )
    module = load_app(str(pkg))
    assert module.__name__ == "pkg_c" and list(collect_workflows(module)) == ["wf_c"]
    assert module.helpers.VALUE == "c"


def test_a_directory_holding_one_module(tmp_path: Path) -> None:
    (tmp_path / "agents_d.py").write_text(APP.format(sibling="_helpers_d", name="wf_d"))
    (tmp_path / "_helpers_d.py").write_text("VALUE = 'd'\n")
    (tmp_path / "test_agents_d.py").write_text("")
    (tmp_path / "setup.py").write_text("")
    (tmp_path / "requirements.txt").write_text("")
    assert list(collect_workflows(load_app(f"{tmp_path}/"))) == ["wf_d"]
    (tmp_path / "more.py").write_text("")
    with pytest.raises(InvalidInput, match=r"exactly one module or package \(found: agents_d"):
        load_app(str(tmp_path))


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("raise RuntimeError('boom')\n", "failed to import: RuntimeError: boom"),
        ("import sys\nsys.exit(3)\n", "failed to import: SystemExit: 3"),
        ("def broken(:\n", "failed to import: SyntaxError"),
        ("import no_such_dependency_e\n", "cannot import app module"),
        ("x = 1\n", "defines no @workflow"),
    ],
)
def test_an_app_that_does_not_load_is_one_line(tmp_path: Path, source: str, needle: str) -> None:
    (tmp_path / "bad_e.py").write_text(source)
    with pytest.raises(InvalidInput, match=needle) as caught:
        load_app(str(tmp_path / "bad_e.py"))
    assert "\n" not in str(caught.value)


def test_an_unreadable_directory_beside_the_app_is_no_obstacle(tmp_path: Path) -> None:
    """A tenant's volume holds the supervisor's private directories (0700, another uid) next
    to an app file put there: loading the app must not try to enter them. Run as `nobody`
    (root enters any directory)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run the loader as another uid")
    tmp_path.chmod(0o755)
    (tmp_path / "agents_p.py").write_text(APP.format(sibling="sibling_p", name="wf_p"))
    (tmp_path / "sibling_p.py").write_text("VALUE = 'p'\n")
    (tmp_path / ".private").mkdir(mode=0o700)
    probe = (
        "from agent_runtime._loader import load_app\n"
        "from agent_runtime._runtime import collect_workflows\n"
        f"print(sorted(collect_workflows(load_app({str(tmp_path / 'agents_p.py')!r}))))\n"
    )
    parent = tmp_path
    while parent != parent.parent:  # pytest's temp directories are private to root
        parent = parent.parent
        os.chmod(parent, os.stat(parent).st_mode | 0o005)
    out = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-I",
         "-c", probe],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "wf_p" in out.stdout
