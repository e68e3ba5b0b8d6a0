"""`fleet watch TENANT [-o PATH]`: a copy of a tenant's database kept up to date from object
storage, for observers who want to follow a live agent without touching it.

Litestream 0.5's follow mode (``litestream restore -f``) does the work: it restores the
backup, then polls the bucket every second and writes each newly replicated transaction into
the copy under SQLite's exclusive lock, so that read-only readers (``fleet inspect PATH
--follow``, agent_runtime's ``open_copy``, any ``sqlite3 -readonly``) see whole transactions.
A commit shows up in the copy about a second after its replication (docs/benchmarks.md has
the measured lag). The tenant, its container and its lease are never involved: only its
backup is read, with the fleet's credentials.

``PATH-txid`` (written by Litestream) records how far the copy got, so a watch stopped and
started again carries on from there instead of restoring anew.
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fleet.core import names
from fleet.core.errors import BackupNotFound, InvalidArgument, ObjectStoreError
from fleet.storage.backups import backup_state
from fleet.storage.litestream import follow_copy, followed_txid, last_error
from fleet.supervisor.s3 import S3Settings

POLL_S = 0.1
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Update:
    txid: int  # the newest transaction in the copy
    at: float  # when the copy had it (epoch seconds)
    first: bool  # the restore that starts the watch (or its resumption)


def watch(s3: S3Settings, tenant: str, out: Path) -> Iterator[Update]:
    """Keep ``out`` up to date; yields once the copy is there, then after each update, until
    the caller stops iterating (the follower is stopped then). ObjectStoreError when
    Litestream gives up."""
    names.check_tenant(tenant)
    if backup_state(s3, tenant).txid == 0:
        raise BackupNotFound(tenant, s3.bucket)
    if out.exists() and followed_txid(out) is None:
        raise InvalidArgument(
            f"{out} exists and is not a copy `fleet watch` keeps", "remove it or pass -o PATH"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fleet-watch-") as tmp:
        proc = follow_copy(s3, tenant, out.absolute(), Path(tmp, "litestream.yml"))
        log = _tail(proc)
        try:
            yield from _updates(proc, out, log)
        finally:
            _stop(proc)


def _updates(proc: subprocess.Popen[str], out: Path, log: deque[str]) -> Iterator[Update]:
    shown: int | None = None
    while True:
        if proc.poll() is not None:
            time.sleep(POLL_S)  # let the log reader take the last lines
            why = last_error("\n".join(log))
            raise ObjectStoreError(f"litestream restore -f stopped: {why}")
        txid = followed_txid(out)
        if txid is not None and txid != shown:
            yield Update(txid, time.time(), shown is None)
            shown = txid
        time.sleep(POLL_S)


def _tail(proc: subprocess.Popen[str], keep: int = 20) -> deque[str]:
    """The last lines of the follower's log, read as they come (an unread pipe would fill
    up and stall it: it logs every update)."""
    lines: deque[str] = deque(maxlen=keep)

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.rstrip())

    threading.Thread(target=read, name="litestream-log", daemon=True).start()
    return lines


def _stop(proc: subprocess.Popen[str]) -> None:
    """SIGINT: Litestream finishes the update it is writing, syncs the copy and exits."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
