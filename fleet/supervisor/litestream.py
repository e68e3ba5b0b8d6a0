"""Litestream as the container runs it: command lines, and what its ``-json`` output says.

The fleet parses the same output when it probes a tenant (``fleet ls``, ``fleet migrate``).
"""

from __future__ import annotations

import json

from .layout import DB_PATH, LITESTREAM_CONFIG

BINARY = "litestream"


def status_command(config: str = LITESTREAM_CONFIG, db: str = DB_PATH) -> list[str]:
    """The local state of ``db``: rows with ``local_txid`` (hex)."""
    return [BINARY, "status", "-json", "-config", config, db]


def ltx_command(config: str = LITESTREAM_CONFIG, db: str = DB_PATH) -> list[str]:
    """The LTX files of ``db``'s replica at every level: rows with ``max_txid`` (hex)."""
    return [BINARY, "ltx", "-json", "-level", "all", "-config", config, db]


def restore_if_empty_command(config: str = LITESTREAM_CONFIG, db: str = DB_PATH) -> list[str]:
    """Restore ``db`` from its replica unless the file exists or there is no replica."""
    return [BINARY, "restore", "-config", config, "-if-db-not-exists", "-if-replica-exists", db]


def replicate_command(config: str = LITESTREAM_CONFIG) -> list[str]:
    """Replicate the config's databases until SIGTERM, then make a final sync and exit 0
    (whether that sync succeeded is only logged: "shutdown sync failed ...")."""
    return [BINARY, "replicate", "-config", config]


def max_txid(output: str, key: str) -> int | None:
    """The highest txid under ``key`` in Litestream's ``-json`` rows (``local_txid`` from
    status, ``max_txid`` from ltx); None when the output holds no such row."""
    try:
        rows = json.loads(output or "null") or []
        found = [int(r[key], 16) for r in rows if isinstance(r, dict) and r.get(key)]
    except (ValueError, TypeError):
        return None
    return max(found) if found else None
