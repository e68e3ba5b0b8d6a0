"""``python3 -I -m fleet.supervisor [start | keep | replicate | run-app | hold ...]``.

Imports only what the chosen stage needs: the keeper idles for the container's whole life
and must stay small.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "start"
    if command == "run-app":
        from .runner import main as run_app

        return run_app()
    from . import entrypoint

    stages = {
        "start": lambda: entrypoint.start(dict(os.environ)),
        "keep": lambda: entrypoint.keep(dict(os.environ)),
        "replicate": lambda: entrypoint.replicate(dict(os.environ)),
        "hold": lambda: entrypoint.hold(argv[1:]),
    }
    stage = stages.get(command)
    if stage is None:
        entrypoint.log(f"unknown command {command!r} (start, keep, replicate, run-app, hold)")
        return entrypoint.EXIT_USAGE
    return stage()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
