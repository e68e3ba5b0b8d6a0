"""What `fleet template ...` and `fleet deploy` print."""

from __future__ import annotations

import time

from rich.table import Table

from fleet.core.durations import format_duration
from fleet.core.templates import BuildResult, Template
from fleet.ops.deploy import Deployed
from fleet.ops.replay_check import Replayed, TenantCheck
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


def checks(done: list[TenantCheck], *, every: bool) -> None:
    """A line per tenant (``every``) or per tenant with runs that would break, and those
    runs as `agent-runtime replay` reports them."""
    for c in done:
        if not every and not c.failing:
            continue
        t = c.tenant
        where = t.template_spec or t.image
        n = len(c.runs)
        verdict = (
            f"{len(c.failing)} of {n} unfinished run(s) would break"
            if c.failing
            else f"{n} unfinished run(s) replay"
        )
        out.print(f"tenant {t.name} ({where}): {verdict} on {c.template.spec}", markup=False)
        _failing(c.failing)


def _failing(runs: list[Replayed]) -> None:
    for r in runs:
        out.print(f"  {r.run}  {r.workflow}  FAILS: {r.error}", markup=False)


def deployed(d: Deployed) -> None:
    if d.action == "unchanged":
        out.print(f"tenant {d.tenant}: already on {d.before}", markup=False)
    elif d.action == "refused":
        out.print(f"tenant {d.tenant}: refused after the stop, runs {d.before} again", markup=False)
        _failing(d.failing)
    else:
        out.print(
            f"tenant {d.tenant} on {d.host}: {d.before} -> {d.after}, downtime "
            f"{d.downtime_s or 0:.2f}s, {d.unfinished} unfinished run(s) continue on the new code",
            markup=False,
        )
