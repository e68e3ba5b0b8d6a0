"""``agent-runtime replay``: would the recorded runs still resume under this code?

Exit 0 when every replayed run replays, 9 when any does not (code incompatible with
recorded history), 2 on bad input. Nothing is written to the database, and no step runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from typing import Any

from ._errors import InvalidInput, RunNotFound
from ._logging import LEVELS
from ._replay import ReplayResult

EXIT_INCOMPATIBLE = 9


def add_parser(sub: Any) -> None:
    r = sub.add_parser(
        "replay",
        help="check recorded runs against (new) code without executing anything",
        description="Replay the recorded history of every unfinished run (or one run) "
        "against the app's code, executing no step, and report each run that would fail "
        "with NonDeterminismError. Opens the database read-only. Exit 0: all replay; "
        "9: some do not; 2: bad input.",
    )
    r.add_argument("--db", required=True, help="SQLite file path or postgresql:// URL")
    r.add_argument(
        "--app",
        required=True,
        help="module name, .py file or package directory that defines the @workflows",
    )
    r.add_argument("--run", default=None, metavar="ID", help="replay this run only")
    r.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list of {run, workflow, ok, position, recorded, called, error}",
    )
    r.add_argument("--log-level", default="warning", choices=LEVELS, help="default warning")


def command(args: argparse.Namespace) -> int:
    from ._loader import load_app
    from ._reader import open_reader
    from ._replay import replay
    from ._runtime import collect_workflows

    out = sys.stdout
    # Workflow code may print or log: keep it off the report (and off the JSON).
    with contextlib.redirect_stdout(sys.stderr):
        workflows = collect_workflows(load_app(args.app))
        reader = open_reader(args.db)
        try:
            results = asyncio.run(replay(reader, workflows, args.run))
        except RunNotFound as exc:
            raise InvalidInput(str(exc)) from None
        finally:
            reader.close()
    if args.json:
        json.dump([r.as_json() for r in results], out, indent=2)
        out.write("\n")
    else:
        _print_report(results, out)
    return EXIT_INCOMPATIBLE if any(not r.ok for r in results) else 0


def _print_report(results: list[ReplayResult], out: Any) -> None:
    for r in results:
        verdict = "ok" if r.ok else f"FAILS: {r.error}"
        print(f"{r.run}  {r.workflow}  {verdict}", file=out)
    failing = sum(not r.ok for r in results)
    runs = f"{len(results)} run{'s' if len(results) != 1 else ''} replayed"
    print(f"{runs}, {failing} would fail" if failing else f"{runs}, all replay", file=out)
