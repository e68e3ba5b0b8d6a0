"""PostgreSQL tenants with a role and a database of their own (`fleet up T --postgres`), on the
server of FLEET_PG_ADMIN_URL (a DSN of a role with CREATEROLE and CREATEDB).

- role ``lf_<t>``: LOGIN and nothing more (no superuser, CREATEDB, CREATEROLE, replication), a
  member of ``litefleet_tenants``, which pg_hba admits to the database of the member's own name
  only (images/postgres.sh writes those lines; README for other servers);
- database ``lf_<t>`` owned by that role, CONNECT and TEMPORARY revoked from PUBLIC, so no other
  tenant's role connects to it even where pg_hba would let it;
- a random password, sent as a SCRAM-SHA-256 verifier computed here (libpq's
  PQencryptPasswordConn): the statement the server receives, and may log, never holds it.

`fleet up` of a tenant whose role exists sets a new password and keeps its database;
`fleet rm --purge` drops both. The admin role needs to be a member of a tenant role to make it
own a database and to drop that database; it grants that to itself for those moments only.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from fleet.core.errors import FleetError
from fleet.core.log import log
from fleet.core.names import PG_TENANT_GROUP, pg_tenant_name

_DROP_RETRIES = 50


def provision(admin_url: str, tenant: str) -> str:
    """Make (or refresh) the tenant's role and database; the DSN it connects with, password
    included (handed on like a user's --db-url: the password is split off before it reaches
    the container's command line)."""
    from psycopg import sql

    name = pg_tenant_name(tenant)
    password = secrets.token_urlsafe(24)
    with _connect(admin_url) as conn:
        verifier = conn.pgconn.encrypt_password(
            password.encode(), name.encode(), b"scram-sha-256"
        ).decode()
        _ensure_group(conn)
        role = sql.Identifier(name)
        if _exists(conn, "pg_roles", "rolname", name):
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(role, sql.Literal(verifier)))
        else:
            conn.execute(create_role_sql(name, verifier))
        if not _exists(conn, "pg_database", "datname", name):
            _create_database(conn, name)
    log.info("tenant database ready", tenant=tenant, database=name)
    return tenant_dsn(admin_url, name, password)


def create_role_sql(name: str, verifier: str) -> Any:
    """CREATE ROLE with the password as a SCRAM verifier (never the password itself)."""
    from psycopg import sql

    if not verifier.startswith("SCRAM-SHA-256$"):
        raise ValueError("not a SCRAM-SHA-256 verifier")
    return sql.SQL(
        "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
        "IN ROLE {} PASSWORD {}"
    ).format(sql.Identifier(name), sql.Identifier(PG_TENANT_GROUP), sql.Literal(verifier))


def drop(admin_url: str, tenant: str) -> bool:
    """Drop the tenant's database (its sessions ended first) and role; False when neither
    existed."""
    from psycopg import sql

    name = pg_tenant_name(tenant)
    with _connect(admin_url) as conn:
        role = _exists(conn, "pg_roles", "rolname", name)
        database = _exists(conn, "pg_database", "datname", name)
        if role:
            conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(name)))
        if database:
            _drop_database(conn, name)
        if role:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
    return role or database


def tenant_dsn(admin_url: str, name: str, password: str) -> str:
    """The admin DSN's server, as role ``name`` with ``password``, on database ``name``."""
    parts = urlsplit(admin_url)
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(name, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("user", "password", "dbname")]
    return urlunsplit((parts.scheme, netloc, "/" + quote(name, safe=""), urlencode(query), ""))


def _connect(admin_url: str) -> Any:
    import psycopg

    try:
        return psycopg.connect(admin_url, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        first = (str(exc).strip().splitlines() or ["error"])[0][:200]
        raise FleetError(
            f"cannot connect to FLEET_PG_ADMIN_URL's server: {first}",
            "check the DSN (a role with CREATEROLE and CREATEDB) and that the server runs",
        ) from None


def _exists(conn: Any, catalog: str, column: str, name: str) -> bool:
    from psycopg import sql

    query = sql.SQL("SELECT 1 FROM {} WHERE {} = %s").format(
        sql.Identifier("pg_catalog", catalog), sql.Identifier(column)
    )
    return conn.execute(query, (name,)).fetchone() is not None


def _ensure_group(conn: Any) -> None:
    import psycopg
    from psycopg import sql

    if _exists(conn, "pg_roles", "rolname", PG_TENANT_GROUP):
        return
    with contextlib.suppress(psycopg.errors.DuplicateObject):  # another fleet made it meanwhile
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(PG_TENANT_GROUP)))


def _create_database(conn: Any, name: str) -> None:
    from psycopg import sql

    ident = sql.Identifier(name)
    conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(ident))
    try:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(ident, ident))
        conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(ident))
    finally:
        conn.execute(sql.SQL("REVOKE {} FROM CURRENT_USER").format(ident))


def _drop_database(conn: Any, name: str) -> None:
    import psycopg
    from psycopg import sql

    for attempt in range(_DROP_RETRIES):
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        try:
            conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))
            return
        except psycopg.errors.ObjectInUse:
            if attempt == _DROP_RETRIES - 1:
                raise
            time.sleep(0.1)
