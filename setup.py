"""Everything is declared in pyproject.toml; this file only adds the image build contexts.

The fleet builds its images from images/ (Dockerfiles, entrypoint, health check, build.sh, the
template recipe) and configs/ (Litestream template, settings reference). They stay where they
are in a checkout (`make images`); a wheel carries a copy under fleet/_assets/ with the same
layout, so images/build.sh finds ../configs from either place.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ASSETS = {
    "images": ("build.sh", "tenant", "s3", "template"),
    "configs": ("litestream.yml", "fleet.example.toml"),
}


class BuildPyWithAssets(build_py):
    """build_py that also copies ASSETS into fleet/_assets/ of the build."""

    def run(self) -> None:
        super().run()
        root = Path(__file__).parent
        target = Path(self.build_lib) / "fleet" / "_assets"
        for folder, entries in ASSETS.items():
            for entry in entries:
                src, dst = root / folder / entry, target / folder / entry
                dst.parent.mkdir(parents=True, exist_ok=True)
                if src.is_dir():
                    shutil.copytree(src, dst, dirs_exist_ok=True)
                else:
                    shutil.copy2(src, dst)


setup(cmdclass={"build_py": BuildPyWithAssets})
