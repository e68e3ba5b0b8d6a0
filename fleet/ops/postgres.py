"""The PostgreSQL DSN a tenant container gets from ``fleet up --db-url``.

A container cannot reach the host's loopback: a DSN naming 127.0.0.1/localhost is rewritten
to the gateway IP of the tenants' ``litefleet`` network on the tenant's engine, a host address
that images/postgres.sh also listens on (and admits that network's subnet in pg_hba). The
rewrite is reported as a note, and the gateway is probed first so a server that is not
listening there fails ``fleet up`` with one line instead of a tenant that dies at start.

The password never travels inside the DSN: the container gets the DSN without it in
AGENT_RUNTIME_DB and the password in PGPASSWORD (libpq reads it), so it shows neither in the
runtime's command line (``ps``, ``docker top``) nor in any message, which all use ``redact``.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from fleet.core.errors import FleetError, InvalidArgument

SCHEMES = ("postgresql", "postgres")
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
DEFAULT_PORT = 5432
_PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class TenantDsn:
    """What the container gets. ``repr`` never shows the password."""

    url: str  # without the password
    password: str | None = field(repr=False)
    note: str | None  # set when the host was rewritten
    host: str
    port: int


def check_url(dsn: str) -> None:
    """InvalidArgument unless ``dsn`` is a postgresql:// URL this module can hand on."""
    for_tenant(dsn, "0.0.0.0")


def _parse(dsn: str) -> SplitResult:
    try:
        parts = urlsplit(dsn)
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in SCHEMES:
        raise InvalidArgument(
            "--db-url must be a postgresql://USER:PASSWORD@HOST:PORT/DB URL",
            "`bash images/postgres.sh url` prints the local server's",
        )
    return parts


def redact(dsn: str) -> str:
    """The DSN without its password (for messages)."""
    try:
        parts = urlsplit(dsn)
        user, host = parts.username, _netloc_host(parts)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "password"]
    except ValueError:
        return "<invalid DSN>"
    netloc = f"{user}@{host}" if user else host
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))


def _netloc_host(parts: SplitResult) -> str:
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def for_tenant(dsn: str, gateway: str) -> TenantDsn:
    """Split ``dsn`` into what the container gets; loopback hosts become ``gateway``."""
    parts = _parse(dsn)
    query = parse_qsl(parts.query)
    if any(k in ("host", "hostaddr") for k, _ in query) or "," in parts.netloc:
        raise InvalidArgument(
            "--db-url: give one host in the URL (host=/hostaddr= parameters and multi-host "
            "DSNs are not supported)"
        )
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise InvalidArgument(f"--db-url: invalid port in {redact(dsn)}") from None
    host = parts.hostname or "localhost"
    note = None
    if host in LOOPBACK or host.startswith("127."):
        note = (
            f"--db-url names this host's loopback ({host}), which containers cannot reach: "
            f"the tenant connects to {gateway}:{port}, the litefleet network's gateway"
        )
        host = gateway
    password = parts.password
    query_pw = [v for k, v in query if k == "password"]
    if password is None and query_pw:
        password = query_pw[-1]
    query = [(k, v) for k, v in query if k != "password"]
    user = parts.username
    netloc = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    if user:
        netloc = f"{user}@{netloc}"  # username stays percent-encoded as given
    url = urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))
    return TenantDsn(
        url=url,
        password=unquote(password) if password is not None else None,
        note=note,
        host=host,
        port=port,
    )


def check_listening(t: TenantDsn, original: str) -> None:
    """Fail with one line unless something accepts TCP at the rewritten address (the
    gateway is a host address: probing it from here is what the container will see)."""
    try:
        with socket.create_connection((t.host, t.port), timeout=_PROBE_TIMEOUT_S):
            return
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
    raise FleetError(
        f"PostgreSQL of --db-url {redact(original)} does not answer on {t.host}:{t.port}, "
        f"where tenant containers would connect ({reason})",
        "make it listen on the litefleet network's gateway too: `bash images/postgres.sh "
        "start` does for the local server",
    )
