"""A fresh PostgreSQL database per measurement, so no part sees another's rows.

Needs CREATEDB on the role in the DSN (the local test cluster's role has it); without it
the DSN's own database is used as given. The DSN is never printed: it may hold a password.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit


def _with_dbname(dsn: str, dbname: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


@contextmanager
def fresh_database(dsn: str) -> Iterator[str]:
    """Yield a URL DSN for a new empty database, dropped afterwards."""
    import psycopg
    from psycopg import sql

    if not dsn.startswith(("postgresql://", "postgres://")):
        raise SystemExit("the PostgreSQL DSN must be a postgresql:// URL")
    name = "litefleet_bench_" + secrets.token_hex(4)
    try:
        admin = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise SystemExit(f"cannot connect to PostgreSQL: {type(exc).__name__}") from None
    with admin:
        try:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.InsufficientPrivilege:
            yield dsn  # no CREATEDB: measure in the given database
            return
        try:
            yield _with_dbname(dsn, name)
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
