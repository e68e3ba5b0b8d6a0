"""``python3 -I -m fleet.supervisor [start | keep | hold -- CMD... | serve-app]``.

Imports only what the chosen stage needs: the keeper (``hold``) idles for the container's
whole life and must stay small.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "start"
    if command == "keep":
        from .keeper import keep_tenant

        return keep_tenant()
    if command == "hold":
        from .keeper import main as hold

        return hold(argv)
    from . import entrypoint

    if command == "start":
        return entrypoint.start(dict(os.environ))
    if command == "serve-app":
        return entrypoint.serve_app()
    entrypoint.log(f"unknown command {command!r} (start, keep, hold, serve-app)")
    return entrypoint.EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
