"""A wheel of the installed litefleet, for the tenant image of an installed fleet.

A checkout builds the image's wheel from its sources (images/build.sh: ``pip wheel .``). An
installed package has no sources to build from, but it has its files and its metadata: the
wheel is those files repacked (the image build contexts under fleet/_assets left out: the
tenant does not need them), the same code the fleet runs, with no build backend and no network.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from importlib import metadata
from pathlib import Path

from fleet.core import names

_PACKAGES = ("agent_runtime/", "fleet/")
_SKIPPED = ("fleet/_assets/",)
# Copied from the installed dist-info; RECORD and WHEEL are written anew.
_METADATA_FILES = ("METADATA", "entry_points.txt")


def installed_files(dist: metadata.Distribution) -> list[tuple[str, Path]]:
    """(path in the wheel, file on disk) of the installed package's modules and data."""
    found: list[tuple[str, Path]] = []
    for entry in dist.files or []:
        name = entry.as_posix()
        if not name.startswith(_PACKAGES) or name.startswith(_SKIPPED):
            continue
        if "__pycache__" in name or name.endswith(".pyc"):
            continue
        found.append((name, Path(str(dist.locate_file(entry)))))
    return found


def write_package_wheel(out: Path) -> Path:
    """Write ``litefleet-<version>-py3-none-any.whl`` of the installed package into ``out``."""
    dist = metadata.distribution(names.PACKAGE)
    files = installed_files(dist)
    if not any(name.startswith("fleet/supervisor/") for name, _ in files):
        raise RuntimeError("the installed litefleet lists no modules (an editable install?)")
    version = dist.version
    info = f"{names.PACKAGE}-{version}.dist-info"
    wheel = out / f"{names.PACKAGE}-{version}-py3-none-any.whl"
    record: list[str] = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:

        def add(name: str, data: bytes) -> None:
            zf.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{name},sha256={digest.decode()},{len(data)}")

        for name, path in sorted(files):
            add(name, path.read_bytes())
        for meta in _METADATA_FILES:
            text = dist.read_text(meta)
            if text is not None:
                add(f"{info}/{meta}", text.encode())
        add(f"{info}/WHEEL", _WHEEL.encode())
        zf.writestr(f"{info}/RECORD", "\n".join([*record, f"{info}/RECORD,,"]) + "\n")
    return wheel


_WHEEL = "Wheel-Version: 1.0\nGenerator: litefleet\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
