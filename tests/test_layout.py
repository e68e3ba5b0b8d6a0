"""The shape of fleet/ (README "Layout"): imports flow one way, cli -> console/gateway -> ops ->
storage -> engine -> core -> supervisor; functions stay short; `fleet --help` loads no heavy
library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

FLEET = Path(__file__).resolve().parents[1] / "fleet"
# Lower layers never import higher ones. storage may use engine (the embedded store is a
# container); engine never uses storage.
# console (the web console) and gateway are long-running servers above ops/; cli starts them.
LAYERS = ["supervisor", "core", "engine", "storage", "ops", "gateway", "console", "cli"]
TOP = {"demo"}  # scripts on top of everything


def _layer(module: str) -> int:
    """fleet.<package>... -> its rank."""
    package = module.split(".")[1]
    return len(LAYERS) if package in TOP else LAYERS.index(package)


def _fleet_imports(path: Path) -> set[str]:
    module = "fleet." + ".".join(path.relative_to(FLEET).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("fleet.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.startswith("fleet."):
                found.add(target)
    return found


def _modules() -> list[Path]:
    return [p for p in sorted(FLEET.rglob("*.py")) if p.parent != FLEET or p.stem in TOP]


def test_every_module_belongs_to_a_layer() -> None:
    packages = {p.name for p in FLEET.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert packages == set(LAYERS)
    assert {p.stem for p in FLEET.glob("*.py")} == {"__init__"} | TOP


def test_imports_flow_one_way() -> None:
    wrong = []
    for path in _modules():
        mine = _layer("fleet." + ".".join(path.relative_to(FLEET).parts))
        for target in _fleet_imports(path):
            if _layer(target) > mine:
                wrong.append(f"{path.relative_to(FLEET)} imports {target}")
    assert not wrong, wrong


def test_functions_stay_short() -> None:
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > 60:
                    long.append(f"{path.relative_to(FLEET)}:{node.lineno} {node.name} ({lines})")
    assert not long, long


@pytest.mark.parametrize("module", ["fleet.cli.app", "fleet.core.names", "fleet.core.hosting"])
def test_the_cli_imports_no_heavy_library(module: str) -> None:
    """`fleet --help` and every command pay only for what they use: docker, boto3, apsw,
    httpx, Rich and pydantic are imported inside the commands that need them."""
    probe = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    heavy = {"docker", "boto3", "botocore", "apsw", "httpx", "rich", "pydantic", "structlog"}
    heavy |= {"jinja2", "starlette", "uvicorn"}
    assert not heavy & loaded, sorted(heavy & loaded)


def test_one_version() -> None:
    """pyproject.toml is the source; fleet reads it from the package metadata, and
    agent_runtime's literal (kept: importlib.metadata costs every runtime ~1.6 MB) agrees."""
    import tomllib

    import agent_runtime
    from fleet.core.names import image_ref, version

    pyproject = tomllib.loads((FLEET.parent / "pyproject.toml").read_text())
    assert version() == pyproject["project"]["version"] == agent_runtime.__version__
    assert image_ref("tenant").startswith("litefleet/tenant:")


def test_the_readme_layout_table_names_every_module() -> None:
    import re

    readme = (FLEET.parent / "README.md").read_text()
    for package in LAYERS:
        row = next(
            (ln for ln in readme.splitlines() if ln.startswith(f"| `fleet/{package}/` |")), None
        )
        assert row is not None, f"README's layout table has no row for fleet/{package}/"
        named = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", row))
        modules = {p.stem for p in (FLEET / package).glob("*.py")} - {"__init__"}
        assert modules <= named, f"fleet/{package}/: {sorted(modules - named)} not in README"
