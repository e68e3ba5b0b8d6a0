"""What `fleet hosts`, `fleet restore` and `fleet migrate` print, and the image copy progress bar
(Rich, on stderr)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from fleet.core.hosting import HostInfo
from fleet.ops.migrate import MigrateResult
from fleet.ops.restore import RestoreResult

from .output import err, out


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / (1 << 20):,.0f} MB"


def hosts(rows: list[HostInfo]) -> None:
    table = Table(box=None, pad_edge=False)
    for col in ("HOST", "REACHABLE", "TENANTS", "MEMORY FREE/TOTAL", "IMAGE", "ENGINE", "URL"):
        table.add_column(col, no_wrap=True)
    for h in rows:
        table.add_row(
            h.name,
            "yes" if h.reachable else f"no ({h.error})",
            "-" if h.tenants is None else f"{h.tenants} ({h.running} running)",
            f"{_mb(h.mem_free)} / {_mb(h.mem_total)}",
            "-" if h.images is None else ("yes" if h.images else "no"),
            h.version or "-",
            h.url,
        )
    out.print(table)


def nodes(rows: list[HostInfo]) -> None:
    """`fleet hosts` on Swarm: one row per node."""
    table = Table(box=None, pad_edge=False)
    for col in ("HOST", "NODE", "HOSTNAME", "STATE", "AVAILABILITY", "TENANTS",
                "MEMORY FREE/TOTAL", "ADDRESS"):  # fmt: skip
        table.add_column(col, no_wrap=True)
    for h in rows:
        n = h.node
        table.add_row(
            n.label if n and n.label else "-",
            n.id[:12] if n else "-",
            n.hostname if n else "-",
            n.state if n else "-",
            n.availability if n else "-",
            f"{h.tenants} ({h.running} running)",
            f"{_mb(h.mem_free)} / {_mb(h.mem_total)}",
            h.url,
        )
    out.print(table)


def restored(r: RestoreResult) -> None:
    t = r.tenant
    age = r.age_s()
    newest = r.newest_at.strftime("%Y-%m-%dT%H:%M:%SZ") if r.newest_at else "?"
    point = f" as of {r.at}" if r.at else ""
    out.print(
        f"tenant [bold]{t.name}[/] restored{point} on {t.host} from object storage: "
        f"txid {r.txid:#x}, newest data from {newest}"
        + (f" ({age:.1f}s old)" if age is not None else "")
    )
    out.print(
        (
            f"  restore {r.restore_s:.1f}s"
            if r.restore_s is not None
            else "  restored by its task as it started"
        )
        + f", healthy after {r.total_s:.1f}s; API at {t.url}"
        + (f"; image copied from {r.transfer.source}" if r.transfer.how == "copied" else "")
    )
    if r.archived:
        out.print(f"  the history after that point was copied to {r.archived} in the bucket")
    if r.removed_stale:
        out.print(
            f"  removed the stopped copy on: {', '.join(r.removed_stale)} (its volume is kept)"
        )


def migrated(r: MigrateResult) -> None:
    t = r.tenant
    synced = (
        f"replicated txid {r.replicated_txid:#x} = local txid {r.local_txid:#x}"
        if r.local_txid is not None
        else f"checked at stop, replicated txid {r.replicated_txid:#x}"
    )
    out.print(
        f"tenant [bold]{t.name}[/] moved {r.source} -> {t.host}: final sync {synced}, "
        f"{r.runs} runs identical"
    )
    out.print(f"  downtime {r.downtime_s:.2f}s (stop + final sync {r.stop_s:.2f}s); API at {t.url}")


class ImageProgress:
    """A Rich progress bar for copying the tenant image between engines."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.task: Any = None

    def start(self, image: str, source: str, target: str, total: int | None) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self.bar = Progress(
            TextColumn(f"copying {image} {source} -> {target}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=err,
            transient=True,
        )
        self.task = self.bar.add_task("copy", total=total)
        self.bar.start()

    def advance(self, nbytes: int) -> None:
        self.bar.advance(self.task, nbytes)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.stop()
