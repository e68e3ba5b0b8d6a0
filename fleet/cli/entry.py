"""The `fleet` console script: one line and exit 2 when the `fleet` extra is not installed
(`pip install litefleet` alone is the runtime for tenants and embedding), else the CLI."""

from __future__ import annotations

import importlib.util
import sys

# The top-level modules of the `fleet` extra's packages (pyproject.toml).
EXTRA_MODULES = ("typer", "rich", "docker", "boto3", "pydantic_settings", "yaml", "jinja2")


def missing_modules() -> list[str]:
    return [m for m in EXTRA_MODULES if importlib.util.find_spec(m) is None]


def main() -> None:
    missing = missing_modules()
    if missing:
        sys.stderr.write(
            "fleet: the fleet command needs the 'fleet' extra (missing: "
            f"{', '.join(missing)}); install it: pipx install 'litefleet[fleet]' "
            "or pip install 'litefleet[fleet]'\n"
        )
        sys.exit(2)
    from .app import main as run

    run()
