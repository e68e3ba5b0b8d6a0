"""Everything the CLI prints: Rich tables on stdout, JSON for --json, notes on stderr.

Imported by the commands that print, never at the CLI's import (Rich costs `fleet --help`).
A web console would render the same ops/ results its own way beside this module.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from fleet.core.durations import format_duration
from fleet.core.errors import FleetError
from fleet.core.sizes import format_size
from fleet.ops.bulk import Outcome
from fleet.ops.inspect import Report
from fleet.ops.park import ParkResult
from fleet.ops.removal import Removal, RmResult
from fleet.ops.status import TenantStatus
from fleet.ops.tenants import UpResult
from fleet.ops.verify import Verification, failed_summary
from fleet.ops.wake import WakeResult
from fleet.ops.watch import Update

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    # Piped output keeps whole table rows (Rich would wrap them at 80 columns).
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 250
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


out = _console()
err = _console(stderr=True)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def print_json_line(value: Any) -> None:
    """One JSON document per line, flushed: for output that streams."""
    sys.stdout.write(json.dumps(value, default=str) + "\n")
    sys.stdout.flush()


def note(text: str) -> None:
    err.print(text)


def bulk(outcome: Outcome[Any], show: Callable[[Any, bool], None]) -> None:
    """Each result (``show(result, compact)``), each failure on stderr; the first failure's
    exit code when any failed."""
    total = len(outcome.done) + len(outcome.failed)
    for result in outcome.done:
        show(result, total > 1)
    if outcome.failed and total == 1:
        raise outcome.failed[0]
    for failure in outcome.failed:
        err.print(f"fleet: {failure.line()}", markup=False, highlight=False)
    if outcome.failed:
        first = outcome.failed[0]
        summary = FleetError(f"{len(outcome.failed)} of {total} tenants failed (listed above)")
        summary.exit_code = first.exit_code
        raise summary


def up(result: UpResult, compact: bool = False) -> None:
    t = result.tenant
    verbs = {"created": "created", "started": "started", "running": "already running"}
    verb = verbs.get(result.action, result.action)
    if result.note:
        err.print(f"note: {result.note}", markup=False, highlight=False)
    if result.warning:
        err.print(f"warning: {result.warning}", markup=False, highlight=False)
    out.print(f"tenant [bold]{t.name}[/] {verb} on {t.host}: API at {t.url}")
    if result.action != "running" and not compact and t.template:
        out.print(
            f"  try: fleet run {t.name} WORKFLOW --input '{{...}}' --wait"
            f"  (workflows: fleet template ls)",
            markup=False,
        )
    elif result.action != "running" and not compact:
        out.print(f'  try: fleet run {t.name} echo --input \'{{"message": "hi"}}\' --wait')


def tenants(rows: list[TenantStatus]) -> None:
    if not rows:
        out.print("no tenants")
        return
    now = time.time()
    table = Table(box=None, pad_edge=False)
    cols = ("TENANT", "HOST", "STATE", "HEALTH", "TEMPLATE", "AGE", "TTL", "DB", "REPLICATION")
    for col in (*cols, "VERIFIED", "LABELS"):
        table.add_column(col, no_wrap=col != "LABELS")
    for s in rows:
        t = s.tenant
        table.add_row(
            t.name,
            t.host,
            _state(s),
            t.health,
            t.template_spec or "-",
            format_duration(now - t.created_at),
            _ttl(t.expires_at, now),
            format_size(s.db_bytes) if t.backend == "sqlite" else t.backend,
            _replication(s, now),
            _verified(s.verified, now),
            ",".join(f"{k}={v}" for k, v in sorted(t.labels.items())) or "-",
        )
    out.print(table)


def _ttl(expires_at: float | None, now: float) -> str:
    if expires_at is None:
        return "-"
    left = expires_at - now
    return "expired" if left <= 0 else format_duration(left)


def _state(s: TenantStatus) -> str:
    """running (restarted 2x: why), exited (137, OOM: why)."""
    t = s.tenant
    if t.running:
        text = t.state
        if t.restart_count:
            text += f" (restarted {t.restart_count}x"
            text += f": {s.last_crash})" if s.last_crash else ")"
        return text
    details = [str(t.exit_code)] if t.exit_code is not None else []
    details += ["OOM"] if t.oom_killed else []
    details += [s.last_crash] if s.last_crash else []
    return f"{t.state} ({', '.join(details)})" if details else t.state


def _replication(s: TenantStatus, now: float) -> str:
    r = s.replication
    since = s.store_unreachable_since
    if since is not None:
        text = f"store unreachable since {_clock(since)}"
        return text + (f", lease: {s.lease}" if s.lease else "")
    if s.lease == "unconfirmed":
        return "lease: unconfirmed"
    if r.replicated_txid is None:
        return r.note or "-"
    if r.replicated_txid == 0:
        return "no backup yet"
    text = f"txid {r.replicated_txid:x}"
    if r.last_upload is not None:
        text += f", {format_duration(now - r.last_upload.timestamp())} ago"
    lag = r.lag_txns
    if lag is not None:
        text += ", in sync" if lag == 0 else f", {lag} txn behind"
    return text


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _verified(rec: dict[str, Any] | None, now: float) -> str:
    """The last restore drill: passed or FAILED, how long ago."""
    if rec is None:
        return "-"
    verdict = "passed" if rec.get("passed") else "FAILED"
    return f"{verdict} {format_duration(now - float(rec.get('at') or 0))} ago"


def run(run: dict[str, Any]) -> None:
    line = f"run {run.get('id')} ({run.get('workflow')}): {run.get('status')}"
    out.print(line)
    if run.get("result") is not None:
        out.print("result: " + json.dumps(run["result"], default=str))
    if run.get("error"):
        out.print("error: " + json.dumps(run["error"], default=str))


def runs(rows: list[dict[str, Any]]) -> None:
    if not rows:
        out.print("no runs")
        return
    table = Table(box=None, pad_edge=False)
    for col in ("RUN", "WORKFLOW", "STATUS", "CREATED", "UPDATED", "RESULT"):
        table.add_column(col, no_wrap=col != "RESULT", overflow="ellipsis")
    for r in rows:
        table.add_row(
            str(r.get("id")),
            str(r.get("workflow")),
            str(r.get("status")),
            _ts(r.get("created_at")),
            _ts(r.get("updated_at")),
            _short(r.get("result") if r.get("error") is None else r.get("error")),
        )
    out.print(table)


def removed(r: RmResult) -> None:
    parts = []
    if r.container:
        parts.append("container")
    if r.volume:
        parts.append("volume")
    if r.purged is not None:
        parts.append(f"backup ({r.purged} objects)")
    if r.key:
        parts.append("its object-store key")
    if r.database:
        parts.append("its PostgreSQL role and database")
    out.print(f"removed {r.tenant}: " + (", ".join(parts) or "nothing"))


def report(rep: Report) -> None:
    counts = ", ".join(f"{k} {v}" for k, v in rep.counts.items()) or "no runs"
    out.print(f"{rep.path}: schema v{rep.schema_version}; {counts}")
    if rep.run is None:
        runs(rep.runs)
        return
    run(rep.run)
    start = float(rep.run.get("created_at") or 0.0)
    table = Table(box=None, pad_edge=False)
    for col in ("SEQ", "T+", "KIND", "POS", "NAME", "TRY", "DATA"):
        table.add_column(col, no_wrap=col != "DATA", overflow="ellipsis")
    for e in rep.events:
        table.add_row(
            str(e["seq"]),
            f"{float(e['created_at']) - start:.3f}s",
            str(e["kind"]),
            "-" if e["position"] is None else str(e["position"]),
            e["name"] or "-",
            "-" if e["attempt"] is None else str(e["attempt"]),
            _short(e["data"]),
        )
    out.print(table)


def _ts(value: Any) -> str:
    """The API gives ISO 8601 strings, the database float seconds: show both alike."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, str):
        return value.replace("T", " ")[:19]
    return "-"


def _short(value: Any, width: int = 60) -> str:
    if value is None:
        return "-"
    text = json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def removal(r: Removal) -> None:
    if not r.done and not r.failed:
        out.print("nothing to remove")
    for done in r.done:
        removed(done)
    for e in r.failed:
        err.print(f"fleet: {e.line()}")
    if r.failed:
        total = len(r.done) + len(r.failed)
        raise FleetError(f"{len(r.failed)} of {total} tenant(s) could not be removed")


def parked(result: ParkResult, compact: bool = False) -> None:
    if result.already:
        out.print(f"tenant [bold]{result.tenant}[/] already parked")
        return
    when = ""
    if result.next_wake_at is not None:
        stamp = datetime.fromtimestamp(result.next_wake_at, UTC).isoformat(timespec="seconds")
        when = f"; next durable deadline {stamp} (the gateway wakes it then)"
    out.print(f"tenant [bold]{result.tenant}[/] parked in {result.seconds:.2f}s{when}")
    if result.interrupted:
        err.print(
            f"note: {result.tenant}: {result.interrupted} run(s) were executing; they resume "
            "when it wakes",
            markup=False,
            highlight=False,
        )


def verified(outcome: Outcome[Verification]) -> None:
    """One line per drill, a failed one on stderr; exit 1 when any drill failed (a tenant
    that could not be tried at all: its error's exit code)."""
    bulk(outcome, verification)
    summary = failed_summary(outcome.done)
    if summary is not None:
        raise summary


def verification(v: Verification, compact: bool = False) -> None:
    detail = _CONTROL.sub("?", v.detail)  # Litestream's and SQLite's words, never markup
    if v.passed is None:
        out.print(f"verify {v.tenant}: skipped ({detail})", markup=False, highlight=False)
        return
    verdict = "passed" if v.passed else "FAILED"
    line = f"verify {v.tenant}: {verdict} in {v.seconds:.1f}s: {detail}"
    (out if v.passed else err).print(line, markup=False, highlight=False, soft_wrap=True)


def woken(result: WakeResult, compact: bool = False) -> None:
    t = result.tenant
    verb = {"running": "already running", "waited": "woken (by another process)"}.get(
        result.action, result.action
    )
    out.print(f"tenant [bold]{t.name}[/] {verb} on {t.host} in {result.seconds:.2f}s")


def watched(tenant: str, path: Any, update: Update) -> None:
    """One line per state of a `fleet watch` copy, flushed (it runs until stopped)."""
    if update.first:
        line = f"watching {tenant}: {path} at txid {update.txid} (Ctrl-C stops)"
    else:
        when = datetime.fromtimestamp(update.at, UTC).strftime("%H:%M:%S")
        line = f"{when} txid {update.txid}"
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def event_line(e: dict[str, Any]) -> None:
    """One event of `fleet inspect --follow`, as it arrives."""
    when = datetime.fromtimestamp(float(e["created_at"]), UTC).strftime("%H:%M:%S.%f")[:-3]
    fields = (
        when,
        str(e["run_id"]),
        str(e["seq"]),
        str(e["kind"]),
        "-" if e["position"] is None else str(e["position"]),
        e["name"] or "-",
        "-" if e["attempt"] is None else str(e["attempt"]),
        _short(e["data"], 100),
    )
    # Step names come from agent code: no control character reaches the terminal.
    sys.stdout.write("  ".join(_CONTROL.sub("?", f) for f in fields) + "\n")
    sys.stdout.flush()
