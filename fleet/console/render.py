"""HTML from the package's templates (Jinja2, autoescaping everything), and the filters they
use to show times, durations, sizes and JSON values.

Values an agent produced can be large (up to 4 MiB each): a page shows at most
``JSON_LIMIT`` characters of each and says how much was left out.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote

import jinja2

from fleet.core.sizes import format_size

if TYPE_CHECKING:
    from .timeline import Timeline

JSON_LIMIT = 4000
SHORT_LIMIT = 120
DETAIL_LIMIT = 300


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("fleet.console", "templates"),
        autoescape=True,  # every template, whatever its name: all output is escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        json=pretty_json,
        short=short_json,
        when=when,
        iso=iso,
        secs=seconds,
        size=size,
        seg=segment,
    )
    env.globals["shown"] = shown
    return env


class Shown(NamedTuple):
    """A waterfall row as text, formatted in Python: a page of a run with thousands of
    events spends its time here, and one call per row is several times cheaper than the
    same formatting through template filters."""

    css: str
    position: str
    kind: str
    label: str
    attempt: str
    took: str
    left: float
    width: float
    error: str
    due: str
    detail: str


def shown(tl: Timeline) -> list[Shown]:
    return [
        Shown(
            css=f"{r.kind} {r.state}",
            position="" if r.position is None else str(r.position),
            kind="run" if r.kind in ("submitted", "outcome") else r.kind,
            label=r.label,
            attempt=str(r.attempt or ""),
            took="waiting" if r.end is None else seconds(r.duration),
            left=r.left,
            width=r.width,
            error=short_json(r.error, DETAIL_LIMIT) if r.error else "",
            due=when(r.deadline) if r.deadline else "",
            detail="" if r.detail is None else short_json(r.detail, DETAIL_LIMIT),
        )
        for r in tl.rows
    ]


def pretty_json(value: Any, limit: int = JSON_LIMIT) -> str:
    return _cut(json.dumps(value, indent=2, ensure_ascii=False, default=str), limit)


def short_json(value: Any, limit: int = SHORT_LIMIT) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return _cut(text, limit)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"


def when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso(ts: float | None) -> str:
    """RFC 3339 in UTC, as ``--at`` takes it."""
    if not ts:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.2f} s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 120:
        return f"{minutes} min {secs} s"
    return f"{minutes // 60} h {minutes % 60} min"


def size(n: int | None) -> str:
    return format_size(n, " ")


def segment(text: str) -> str:
    """One URL path segment (run ids may hold ':' and '.'; nothing may split the path)."""
    return quote(str(text), safe="")
