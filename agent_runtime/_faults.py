"""Named fault-injection points, used by crash tests.

Production code calls ``fault_point("step.after_commit")`` at the moments a crash is most
interesting. Nothing happens unless ``AGENT_RUNTIME_FAULTS`` names the point, e.g.
``AGENT_RUNTIME_FAULTS="step.after_commit=0.02,step.before_commit=0.01"``: at each pass the
process dies (``os._exit(137)``, like SIGKILL) with that probability. ``=N`` with N >= 1
instead kills it on the N-th pass.
"""

from __future__ import annotations

import os
import random

POINTS = frozenset(
    {
        "step.before_commit",  # step function returned; its record is not yet written
        "step.after_commit",  # step record durable; the workflow has not seen it yet
        "run.before_complete",  # workflow returned; completion not yet written
        "timer.after_commit",  # timer recorded, run not yet suspended in memory
    }
)

_plan: dict[str, float] = {}
_hits: dict[str, int] = {}


def configure(spec: str | None) -> None:
    """Parse a fault spec (see module doc); an unknown point name is an error."""
    _plan.clear()
    _hits.clear()
    for part in filter(None, (p.strip() for p in (spec or "").split(","))):
        name, _, value = part.partition("=")
        if name not in POINTS:
            raise ValueError(f"unknown fault point {name!r} (known: {', '.join(sorted(POINTS))})")
        _plan[name] = float(value or 1)


def fault_point(name: str) -> None:
    if not _plan:
        return
    p = _plan.get(name)
    if p is None:
        return
    n = _hits[name] = _hits.get(name, 0) + 1
    if (p >= 1 and n >= p) or (p < 1 and random.random() < p):
        os._exit(137)


configure(os.environ.get("AGENT_RUNTIME_FAULTS"))
