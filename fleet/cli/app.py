"""The `fleet` command: thin wrappers that build objects from settings and call one ops/
function each (same names as the commands), one module per group of commands. Errors become
one line and an exit code in main(), the only place that happens.
"""

from __future__ import annotations

import sys

from fleet.core.errors import FleetError, translate

# The command modules register their commands on the app when imported.
from . import admin, backups, hosts, lifecycle, observe, parking, runs, templates
from .base import app

__all__ = [
    "admin",
    "app",
    "backups",
    "hosts",
    "lifecycle",
    "main",
    "observe",
    "parking",
    "runs",
    "templates",
]


def main(argv: list[str] | None = None) -> None:
    """Console entry point; the one place errors become a message and an exit code."""
    # Typer handles its own usage errors, --help and Ctrl-C (standalone mode, SystemExit);
    # everything a command raises lands here.
    try:
        app(args=argv, prog_name="fleet")
    except Exception as exc:
        err = translate(exc)
        if err is None:
            from fleet.core.log import log

            log.debug("internal error", exc_info=True)
            err = FleetError(
                f"internal error: {type(exc).__name__}: {str(exc)[:200]}",
                "rerun with FLEET_LOG_LEVEL=debug and report it",
            )
            err.exit_code = 70
        _fail(err)


def _fail(err: FleetError) -> None:
    sys.stderr.write(f"fleet: {err.line()}\n")
    sys.stderr.flush()
    sys.exit(err.exit_code)
