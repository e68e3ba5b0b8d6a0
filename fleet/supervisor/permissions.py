"""Who may touch which file of the tenant's volume (run as SUPERVISOR_UID, before the runtime).

    /data                      litefleet:agent 3770  (sticky, setgid; nothing for others)
    /data/tenant.db            litefleet:agent 0660  the runtime and Litestream read and write
    /data/tenant.db-wal, -shm  litefleet:agent 0660  created here, before anyone opens the db
    /data/tenant.db.lock       agent           0600  the runtime's own (it creates it)
    /data/.tenant.db-litestream  litefleet     0700  Litestream's tracking: agent code cannot
                                                      enter it, let alone write it
    /data/.litefleet           litefleet       0700  the supervisor's record (restarts.py)

The sticky bit keeps agent code from renaming or deleting what it does not own (the
database, its WAL, the tracking directory), the setgid bit gives what it creates the agent
group. The -wal and -shm files are created empty by the supervisor so that they are never
the agent's: a file agent code owned it could replace with a symbolic link, and Litestream
(or SQLite under the supervisor's uid) would then write through it into the tracking state.
For the same reason anything at these names that is not a regular file is removed.

Litestream 0.5 writes to the database too (its ``_litestream_seq``/``_litestream_lock`` tables
and WAL checkpoints), hence group write, not read only. The runtime creates a missing database
0600 and never changes an existing file's mode (agent_runtime/_sqlite.py), so the database is
always created here first.
"""

from __future__ import annotations

import os
import stat

from .layout import AGENT_GID, AGENT_UID, DATA_DIR, DB_PATH, RECORD_DIR, tracking_dir

DIR_MODE = 0o3770
DB_MODE = 0o660
PRIVATE_DIR_MODE = 0o700
UMASK = 0o007  # nothing a tenant's process creates is readable by "others"


class VolumeNotOurs(Exception):
    """The volume's root is not the supervisor's: its permissions cannot be set."""


def db_files(db: str = DB_PATH) -> list[str]:
    return [db, f"{db}-wal", f"{db}-shm"]


def secure_data_dir(data: str = DATA_DIR) -> None:
    st = os.lstat(data)
    if st.st_uid != os.geteuid():
        raise VolumeNotOurs(
            f"{data} belongs to uid {st.st_uid}, not the supervisor's ({os.geteuid()})"
        )
    if st.st_gid != AGENT_GID:
        os.chown(data, -1, AGENT_GID)
    if stat.S_IMODE(st.st_mode) != DIR_MODE:
        os.chmod(data, DIR_MODE)


def private_dir(path: str) -> None:
    """A directory of the supervisor's only (created, or checked and fixed)."""
    try:
        os.mkdir(path, PRIVATE_DIR_MODE)
    except FileExistsError:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            raise VolumeNotOurs(f"{path} is not a directory of the supervisor's") from None
    os.chmod(path, PRIVATE_DIR_MODE)


def suspicious(db: str = DB_PATH) -> str | None:
    """Why the files at the database's names cannot be trusted (one line), or None: each must
    be a regular file of the supervisor's, except the lock file, which may be the agent's.
    None of this can happen through the runtime (see the module doc); the caller sets such
    files aside (never deletes them: a WAL may hold committed transactions)."""
    me = os.geteuid()
    expected = [(p, {me}) for p in db_files(db)] + [(f"{db}.lock", {me, AGENT_UID})]
    for path, owners in expected:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_uid not in owners or st.st_nlink != 1:
            return f"{path} is not a regular file of the supervisor's (uid {st.st_uid})"
    return None


def secure_db_files(db: str = DB_PATH) -> None:
    """Database, WAL and shared-memory file of the supervisor's in the agent group, 0660; the
    -wal and -shm created empty when missing. The lock file gets the same when an older image
    left it to the supervisor's uid. Call after ``suspicious`` said None."""
    me = os.geteuid()
    for path in [*db_files(db), f"{db}.lock"]:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if st.st_uid == me:
            os.chown(path, -1, AGENT_GID)
            os.chmod(path, DB_MODE)
    for path in db_files(db)[1:]:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, DB_MODE)
        except FileExistsError:
            continue
        os.fchown(fd, -1, AGENT_GID)
        os.fchmod(fd, DB_MODE)
        os.close(fd)


def prepare_volume(db: str = DB_PATH) -> None:
    """Everything above, once the database exists (volume.prepare made it)."""
    secure_data_dir(os.path.dirname(db))
    secure_db_files(db)
    private_dir(tracking_dir(db))


def prepare_record_dir(data: str = DATA_DIR) -> str:
    secure_data_dir(data)
    path = os.path.join(data, os.path.basename(RECORD_DIR))
    private_dir(path)
    return path
