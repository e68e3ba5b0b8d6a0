"""Before replicating: restore the database when the volume is empty, and never replicate a
database that is behind the replica.

Under the lease, the replica is the truth. A database this tenant replicated before (it has
Litestream's tracking directory) that is now behind the replica (an old copy on a host that
came back, a rolled-back migration, a restored tarball) must not be replicated: Litestream
would carry on from it and rewind the backup. It is kept aside and the tenant restores
instead. A database without tracking was just restored (``fleet restore``, possibly to a point
in time on purpose) and is used as it is.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable

from .layout import DB_PATH, LITESTREAM_CONFIG, tracking_dir
from .litestream import ltx_command, max_txid, restore_if_empty_command, status_command
from .permissions import suspicious

USE = "use"
SET_ASIDE = "set-aside"
RESTORE = "restore"


class RestoreFailed(Exception):
    pass


def decide(*, db_exists: bool, replicated_before: bool, local_txid: int, replica_txid: int) -> str:
    """What to do with the volume's database before replicating it: USE it, SET_ASIDE (then
    restore) a replicated one that is behind the replica, or RESTORE into an empty volume.
    The txids only matter for a database replicated before."""
    if not db_exists:
        return RESTORE
    if replicated_before and replica_txid > local_txid:
        return SET_ASIDE
    return USE


def prepare(
    env: dict[str, str],
    tenant: str,
    log: Callable[[str], None],
    db: str = DB_PATH,
    config: str = LITESTREAM_CONFIG,
) -> None:
    """Leave ``db`` ready for ``litestream replicate``: the volume's own database when it may
    be used, else the replica's, else an empty database. ``env`` is Litestream's.
    Runs as the supervisor's uid, before the runtime starts."""
    odd = suspicious(db)
    if odd is not None:
        log(f"{odd}: kept the database files in {set_aside(db, 'suspect')}, restoring")
    db_exists, tracked = os.path.exists(db), replicated_before(db)
    local = replica = 0
    if db_exists and tracked:
        local = max_txid(_output(status_command(config, db), env), "local_txid") or 0
        replica = max_txid(_output(ltx_command(config, db), env), "max_txid") or 0
    action = decide(
        db_exists=db_exists, replicated_before=tracked, local_txid=local, replica_txid=replica
    )
    if action == SET_ASIDE:
        aside = set_aside(db)
        log(
            f"{db} on the volume is behind the replica (txid {local} < {replica}): "
            f"kept it in {aside}, restoring"
        )
        action = RESTORE
    elif action == USE and tracked:
        log(f"using {db} from the volume (txid {local}, replica {replica})")
    elif action == USE:
        log(f"using {db} from the volume (restored, not yet replicated)")
    if action == RESTORE:
        restore_or_create(env, tenant, log, db, config)


def replicated_before(db: str) -> bool:
    """Whether Litestream ever tracked ``db`` here (an empty tracking directory is the
    supervisor's own, made before Litestream first ran)."""
    try:
        return bool(os.listdir(tracking_dir(db)))
    except (FileNotFoundError, NotADirectoryError):
        return False


def set_aside(db: str, why: str = "behind-replica") -> str:
    """Move the database, its WAL, the runtime's lock file and Litestream's tracking into a
    new directory beside it (``<why>-<time>-<random>``, the supervisor's only); returns it."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = os.path.join(os.path.dirname(db), f"{why}-{stamp}-{os.urandom(3).hex()}")
    os.mkdir(aside, 0o700)
    for path in (db, f"{db}-wal", f"{db}-shm", f"{db}.lock", tracking_dir(db)):
        if os.path.lexists(path):
            os.rename(path, os.path.join(aside, os.path.basename(path)))
    return aside


def restore_or_create(
    env: dict[str, str], tenant: str, log: Callable[[str], None], db: str, config: str
) -> None:
    t0 = time.monotonic()
    restore = restore_if_empty_command(config, db)
    if subprocess.run(restore, env=env, check=False).returncode != 0:
        raise RestoreFailed(f"restoring {db} from the replica failed")
    ms = int((time.monotonic() - t0) * 1000)
    if os.path.exists(db):
        log(f"restored {db} from replica tenants/{tenant} in {ms} ms")
        return
    log(f"no replica at tenants/{tenant}: starting with an empty database")
    create_empty(db)


def create_empty(path: str) -> None:
    """An empty database in WAL mode (no tables: the runtime migrates it), so Litestream
    attaches at once instead of after the runtime's first write. Python's sqlite3 is enough
    to write a file header; the runtime itself uses its own, newer SQLite (APSW)."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


def _output(argv: list[str], env: dict[str, str]) -> str:
    """stdout of a Litestream query, "" when it fails (read as txid 0)."""
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return proc.stdout if proc.returncode == 0 else ""
