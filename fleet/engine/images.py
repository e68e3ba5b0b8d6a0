"""The litefleet images: building them (images/build.sh, from a checkout or the copy in an
installed package) and checking an engine has them, of this package's version.

Images are built on this machine's default engine; image_transfer.py copies them to the
other engines. Template images (a tenant image plus user code) are built by
template_build.py, whose dependencies come from the same wheelhouse (``template_wheels``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from fleet.core import names
from fleet.core.errors import FleetError, ImageMissing, ImageOutdated, InvalidArgument

from .package_wheel import write_package_wheel

_SIZE_RE = re.compile(r"^images: (\S+)\s+(\d+) MB$")


def assets_root() -> Path:
    """Where images/ and configs/ are: the litefleet checkout this fleet runs from, else the
    copy an installed package carries (fleet/_assets/, same layout; setup.py)."""
    here = Path(__file__).resolve()
    for root in (here.parents[2], here.parents[1] / "_assets"):
        if (root / "images" / "build.sh").is_file():
            return root
    raise FleetError(
        "the image build files are missing (no images/ in a checkout, no fleet/_assets/)",
        "reinstall litefleet: pipx install 'litefleet[fleet]'",
    )


def _installed(root: Path) -> bool:
    """True when ``root`` is an installed package's copy, not a checkout (no pyproject.toml)."""
    return not (root / "pyproject.toml").is_file()


def build_dir() -> Path:
    """The images' build cache: build/ of a checkout, else LITEFLEET_BUILD_DIR or
    ~/.cache/litefleet/build (the wheelhouse lives there between builds)."""
    root = assets_root()
    if not _installed(root):
        return Path(os.environ.get("LITEFLEET_BUILD_DIR") or root / "build")
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("LITEFLEET_BUILD_DIR") or Path(cache) / "litefleet" / "build")


def _installed_env(env: dict[str, str]) -> dict[str, str]:
    """What images/build.sh needs from an installed package instead of a checkout's .venv."""
    import importlib.util

    if importlib.util.find_spec("pip") is None:
        raise FleetError(
            "building images needs pip in the fleet's environment",
            "uv tool install --with pip 'litefleet[fleet]' (pipx and pip environments have it)",
        )
    return {
        **env,
        "LITEFLEET_BUILD_DIR": str(build_dir()),
        "LITEFLEET_PYTHON": sys.executable,
        "LITEFLEET_BUILD_VERSION": names.version(),
    }


def _build_sh(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    root = assets_root()
    # Drop CA overrides: the build talks to the local engine and (for a cold wheelhouse) PyPI
    # through pip, which has its own certificate settings.
    base = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"} | (env or {})
    if _installed(root):
        base = _installed_env(base)
    return subprocess.run(
        ["bash", str(root / "images" / "build.sh"), *args],
        cwd=root,
        env=base,
        capture_output=True,
        text=True,
        check=False,
    )


def build_images() -> list[tuple[str, int]]:
    """Run images/build.sh; returns (image, size in MB) as the script reports them. From an
    installed package, the tenant image gets a wheel of the installed package's own files."""
    with tempfile.TemporaryDirectory(prefix="litefleet-wheel-") as tmp:
        env: dict[str, str] = {}
        if _installed(assets_root()):
            env["LITEFLEET_PROJECT_WHEEL"] = str(write_package_wheel(Path(tmp)))
        proc = _build_sh(env=env)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["images/build.sh failed"])[-1]
        raise FleetError(f"building images failed: {last}", f"see {build_dir()}/*.log")
    sizes: list[tuple[str, int]] = []
    for line in proc.stdout.splitlines():
        m = _SIZE_RE.match(line.strip())
        if m:
            sizes.append((m.group(1), int(m.group(2))))
    return sizes


def template_wheels(requirements: list[str], out: Path) -> list[Path]:
    """The wheels ``requirements`` need, from the host wheelhouse as `make images` fills it
    (images/build.sh wheels), into ``out``; InvalidArgument naming pip's error when they
    cannot be had (no such package, no wheel, a conflict with the runtime's pins)."""
    if not requirements:
        return []
    listing = out / "requirements.in"
    listing.write_text("".join(r + "\n" for r in requirements))
    wheels = out / "wheels"
    wheels.mkdir()
    proc = _build_sh("wheels", str(listing), str(wheels))
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR:")]
        last = (errors or lines or ["images/build.sh wheels failed"])[-1]
        if "no wheelhouse yet" in last:
            raise FleetError(last.removeprefix("images: "), "run `fleet image build`")
        raise InvalidArgument(f"the template's requirements cannot be installed: {last}")
    return sorted(wheels.glob("*.whl"))


def has_image(client: Any, image: str) -> bool:
    import docker.errors

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def ensure_image(client: Any, image: str) -> None:
    """Raise ImageMissing (one line, with the fix) unless the engine has ``image``."""
    if not has_image(client, image):
        raise ImageMissing(
            f"image {image} is not on this engine", "run `make images` (or `fleet image build`)"
        )


VERSION_LABEL = "org.opencontainers.image.version"  # images/build.sh sets it; templates inherit


def check_version(client: Any, image: str) -> None:
    """Raise ImageOutdated unless ``image`` carries this package's version: a tenant runs the
    supervisor and runtime of its image, which must match the fleet that drives it."""
    want = names.version()
    if want == names.UNKNOWN_VERSION:
        return
    labels = client.images.get(image).labels or {}
    have = labels.get(VERSION_LABEL)
    if have != want:
        raise ImageOutdated(f"image {image} is litefleet {have or '(no version)'}, fleet is {want}")
