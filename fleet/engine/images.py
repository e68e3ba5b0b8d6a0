"""The litefleet images: building them (images/build.sh) and checking an engine has them.

Images are built on this machine's default engine; image_transfer.py copies them to the
other engines. Building tenant images with user code in them (templates) belongs in a module
beside this one.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

from fleet.core.errors import FleetError, ImageMissing

_SIZE_RE = re.compile(r"^images: (\S+)\s+(\d+) MB$")


def build_images(repo_root: Path | str) -> list[tuple[str, int]]:
    """Run images/build.sh; returns (image, size in MB) as the script reports them."""
    script = Path(repo_root) / "images" / "build.sh"
    if not script.is_file():
        raise FleetError(f"{script} not found", "run this from a litefleet checkout")
    # Drop CA overrides: the build talks to the local engine and (for a cold wheelhouse) PyPI
    # through pip, which has its own certificate settings.
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    proc = subprocess.run(
        ["bash", str(script)], cwd=repo_root, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["images/build.sh failed"])[-1]
        raise FleetError(f"building images failed: {last}", "see build/*.log")
    sizes: list[tuple[str, int]] = []
    for line in proc.stdout.splitlines():
        m = _SIZE_RE.match(line.strip())
        if m:
            sizes.append((m.group(1), int(m.group(2))))
    return sizes


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
