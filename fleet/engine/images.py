"""The litefleet images: building them (images/build.sh) and checking an engine has them.

Images are built on this machine's default engine; image_transfer.py copies them to the
other engines. Template images (a tenant image plus user code) are built by
template_build.py, whose dependencies come from the same wheelhouse (``template_wheels``).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

from fleet.core.errors import FleetError, ImageMissing, InvalidArgument

_SIZE_RE = re.compile(r"^images: (\S+)\s+(\d+) MB$")


def repo_root() -> Path:
    """The litefleet checkout this fleet runs from: images are built from its images/."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "images" / "build.sh").is_file():
        raise FleetError(
            "images/ not found next to the fleet package", "run from a litefleet source checkout"
        )
    return root


def _build_sh(*args: str) -> subprocess.CompletedProcess[str]:
    root = repo_root()
    # Drop CA overrides: the build talks to the local engine and (for a cold wheelhouse) PyPI
    # through pip, which has its own certificate settings.
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    return subprocess.run(
        ["bash", str(root / "images" / "build.sh"), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def build_images() -> list[tuple[str, int]]:
    """Run images/build.sh; returns (image, size in MB) as the script reports them."""
    proc = _build_sh()
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["images/build.sh failed"])[-1]
        raise FleetError(f"building images failed: {last}", "see build/*.log")
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
            raise FleetError(last.removeprefix("images: "), "run `make images`")
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
