"""What `fleet template ...` and `fleet deploy` print."""

from __future__ import annotations

import time

from rich.table import Table

from fleet.core.durations import format_duration
from fleet.core.templates import BuildResult, Template
from fleet.ops.templates import RmResult

from .output import out


def built(result: BuildResult) -> None:
    t = result.template
    verb = "built" if result.built else "unchanged"
    out.print(
        f"template {t.name}:{t.version} {verb} ({result.seconds:.1f}s): app {t.app}, "
        f"workflows {', '.join(t.workflows)}",
        markup=False,
    )
    out.print(f"  try: fleet up TENANT --template {t.name}", markup=False)


def table(found: list[Template]) -> None:
    if not found:
        out.print("no templates")
        return
    now = time.time()
    grid = Table(box=None, pad_edge=False)
    for col in ("NAME", "VERSION", "APP", "WORKFLOWS", "CREATED", "SIZE"):
        grid.add_column(col, no_wrap=col != "WORKFLOWS")
    for t in found:
        grid.add_row(
            t.name,
            t.version,
            t.app,
            ", ".join(t.workflows),
            format_duration(now - t.created_at) + " ago",
            f"{t.size / 1e6:.0f} MB",
        )
    out.print(grid)


def removed(result: RmResult) -> None:
    where = ", ".join(result.hosts) or "no host"
    for t in result.removed:
        out.print(f"removed template {t.name}:{t.version} ({where})", markup=False)
