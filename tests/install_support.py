"""A litefleet wheel built from this checkout and installed into a fresh virtual environment
outside it, as a user would (pipx / uv tool / pip do the same: a venv with the package)."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

from .fleet_support import ROOT

WHEELHOUSE = ROOT / "build" / "wheelhouse"  # `make images` fills it: dependencies offline


def build_wheel(out: Path) -> Path:
    """``pip wheel`` of the checkout (what `make dist` and PyPI ship)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("litefleet-*.whl")
    return wheel


def fresh_venv(where: Path, *requirements: str, no_deps: bool = False) -> Path:
    """A new venv at ``where`` with ``requirements`` installed; its bin/ directory. The host
    wheelhouse is tried first (offline), the package index for what it lacks."""
    venv.EnvBuilder(with_pip=True).create(where)
    # The versions this checkout is tested with (and the wheelhouse holds): fast, offline first.
    freeze = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    pins = where.parent / "constraints.txt"
    pins.write_text("".join(ln + "\n" for ln in freeze.splitlines() if "litefleet" not in ln))
    pip = [str(where / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(pins)]
    if no_deps:
        pip.append("--no-deps")
    if WHEELHOUSE.is_dir():
        pip += ["--find-links", str(WHEELHOUSE)]
    proc = subprocess.run([*pip, *requirements], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return where / "bin"
