"""PostgreSQL fixtures: the local server (images/postgres.sh) and a fresh database per test.

``pg_dsn`` gives each test its own database (created from template0, dropped afterwards), so
tests never see each other's runs, and NOTIFYs stay inside it. Set
``LITEFLEET_TEST_PG_DSN`` to use another server; its role needs CREATEDB.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "images" / "postgres.sh"


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=600, check=False
    )


@pytest.fixture(scope="session")
def pg_server() -> str:
    """DSN of the server's ``litefleet`` database; starts the local server if needed."""
    dsn = os.environ.get("LITEFLEET_TEST_PG_DSN")
    if dsn:
        return dsn
    started = _script("start")
    if started.returncode != 0:
        lines = (started.stderr or started.stdout).strip().splitlines()
        pytest.skip(
            "PostgreSQL not available (images/postgres.sh start failed: "
            f"{lines[-1] if lines else started.returncode})"
        )
    return _script("url").stdout.strip()


def with_database(dsn: str, dbname: str) -> str:
    """``dsn`` (a postgresql:// URL) pointing at another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + dbname))


def create_database(server_dsn: str, prefix: str = "lf_test") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        # template0: nothing another test left in template1 can leak in.
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    return name


def drop_database(server_dsn: str, name: str) -> None:
    # Not WITH (FORCE): that fails on an autovacuum worker, which a non-superuser cannot
    # signal. End our own role's sessions; plain DROP cancels autovacuum by itself.
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        for attempt in range(50):
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND usename = current_user AND pid <> pg_backend_pid()",
                (name,),
            )
            try:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
                return
            except psycopg.errors.ObjectInUse:
                if attempt == 49:
                    raise
                time.sleep(0.1)


@pytest.fixture
def pg_dsn(pg_server: str) -> Iterator[str]:
    """A fresh, empty database for this test: its postgresql:// URL."""
    name = create_database(pg_server)
    try:
        yield with_database(pg_server, name)
    finally:
        drop_database(pg_server, name)


@pytest.fixture(scope="module")
def pg_module_dsn(pg_server: str) -> Iterator[str]:
    """A fresh database shared by the tests of one module."""
    name = create_database(pg_server)
    try:
        yield with_database(pg_server, name)
    finally:
        drop_database(pg_server, name)
