"""``agent-runtime workflows``: load an app and list the workflows it registers.

What a build checks before it ships code (``fleet template build`` runs it inside the new
image): the app imports, and registers at least one ``@workflow``. Exit 0 with the list,
2 with one line naming the error otherwise. Workflow code that prints while importing does
not reach stdout, so ``--json`` stays parseable.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    w = sub.add_parser(
        "workflows",
        help="load an app and list its workflows",
        description="Import the app (module name, .py file or package directory) and list "
        "the @workflows it registers. Exit 0; 2 when it does not import or registers none.",
    )
    w.add_argument(
        "--app",
        required=True,
        help="module name, .py file or package directory that defines the @workflows",
    )
    w.add_argument("--json", action="store_true", help='print {"app", "workflows": [...]}')


def command(args: argparse.Namespace) -> int:
    from ._loader import load_app
    from ._runtime import collect_workflows

    with contextlib.redirect_stdout(sys.stderr):
        names = sorted(collect_workflows(load_app(args.app)))
    if args.json:
        json.dump({"app": args.app, "workflows": names}, sys.stdout)
        sys.stdout.write("\n")
    else:
        print("\n".join(names))
    return 0
