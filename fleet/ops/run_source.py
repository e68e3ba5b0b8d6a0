"""Where a tenant's runs are read from, behind one small interface: a running tenant through
its runtime API, any other (stopped, parked, removed with its backup kept) from a copy of
its backup, without waking or touching it.

Both give agent_runtime's own records (``Run``, ``Event``, ``RunPage``), so a reader (the
web console) does not care which it got; ``where`` and ``note`` say it for the user. A
``SourceCache`` keeps, between a long-running reader's requests, copies restored from object
storage with Litestream (restored again only when the backup has moved on: a parked
tenant's backup does not move, so it is restored once), and where each tenant is for a
couple of seconds (a page of a run in flight is fetched every second; asking every engine
each time would cost more than the page).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from fleet.core import names
from fleet.core.context import Fleet
from fleet.core.errors import (
    BackupNotFound,
    RunNotFound,
    RuntimeApiError,
    TenantNotFound,
    TenantNotRunning,
)
from fleet.core.hosting import Tenant
from fleet.storage.backups import backup_state
from fleet.storage.litestream import restore_copy
from fleet.storage.s3 import client as s3_client
from fleet.supervisor.s3 import S3Settings

from .api import RuntimeClient, api
from .tenants import find_or_none

if TYPE_CHECKING:
    from agent_runtime import Event, Run, RunPage

LIVE = "live"  # read through the tenant's runtime API
BACKUP = "backup"  # read from a copy restored from object storage


class RunSource(Protocol):
    """A tenant's runs, read-only."""

    tenant: str
    where: str  # LIVE or BACKUP
    note: str  # for the user: what is shown and from where

    def runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        """Newest first, a page at a time (``next_cursor`` continues)."""
        ...

    def run(self, run_id: str) -> Run:
        """RunNotFound when there is none."""
        ...

    def events(self, run_id: str) -> list[Event]:
        """The run's history in order."""
        ...


def open_source(fleet: Fleet, tenant: str, cache: SourceCache) -> RunSource:
    """The tenant's runtime API while it runs, else its backup. TenantNotFound when there is
    neither a container nor a backup; TenantNotRunning for a stopped PostgreSQL tenant."""
    names.check_tenant(tenant)
    t = cache.find(fleet, tenant)
    if t is not None and t.running:
        return LiveSource(t, cache.client(t))
    if t is not None and t.backend != names.BACKEND_SQLITE:
        raise TenantNotRunning(tenant, t.state)
    s3 = fleet.storage.for_fleet()
    try:
        path, txid = cache.copy_of(s3, tenant)
    except BackupNotFound:
        if t is None:
            raise TenantNotFound(tenant) from None
        raise
    state = t.state if t is not None else "without a container (parked or removed)"
    return BackupSource(tenant, path, f"{state}: shown from its backup (txid {txid})")


class LiveSource:
    where = LIVE

    def __init__(self, t: Tenant, client: RuntimeClient) -> None:
        self.tenant = t.name
        self.note = f"running on {t.host}"
        self._c = client

    def runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        from agent_runtime import RunPage

        page = self._c.runs_page(status=status, workflow=workflow, limit=limit, cursor=cursor)
        return RunPage([_run(r) for r in page.get("runs", [])], page.get("next_cursor"))

    def run(self, run_id: str) -> Run:
        try:
            return _run(self._c.get(run_id))
        except RuntimeApiError as exc:
            if exc.status == 404:
                raise RunNotFound(self.tenant, run_id) from None
            raise

    def events(self, run_id: str) -> list[Event]:
        return [_event(e) for e in self._c.events(run_id)]


class BackupSource:
    where = BACKUP

    def __init__(self, tenant: str, path: Path, note: str) -> None:
        self.tenant = tenant
        self.note = note
        self._path = path

    def runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        from agent_runtime import open_copy

        with open_copy(self._path) as db:
            return db.list_runs(status=status, workflow=workflow, limit=limit, cursor=cursor)

    def run(self, run_id: str) -> Run:
        from agent_runtime import RunNotFound as NoRun
        from agent_runtime import open_copy

        with open_copy(self._path) as db:
            try:
                if db.schema_version:
                    return db.run(run_id)
            except NoRun:
                pass
        raise RunNotFound(self.tenant, run_id)

    def events(self, run_id: str) -> list[Event]:
        from agent_runtime import open_copy

        with open_copy(self._path) as db:
            return db.history(run_id) if db.schema_version else []


class SourceCache:
    """Copies of tenants' backups in one directory, each restored again only when its backup
    has a newer transaction, and tenants as found at most ``ttl`` seconds ago. Safe to share
    between threads."""

    def __init__(self, directory: Path, ttl: float = 2.0) -> None:
        self._dir = directory
        self._ttl = ttl
        self._found: dict[str, tuple[float, Tenant | None]] = {}
        self._clients: dict[tuple[str, str, str], RuntimeClient] = {}
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._copies: dict[str, tuple[Path, int]] = {}
        self._retired: dict[str, Path] = {}  # the copy before: a reader may be opening it
        self._checked: dict[str, float] = {}  # when each backup's newest txid was read
        self._s3: tuple[S3Settings, Any] | None = None

    def find(self, fleet: Fleet, tenant: str) -> Tenant | None:
        """The tenant's container as the engines reported it lately (None: there is none)."""
        seen = self._found.get(tenant)
        if seen is not None and time.monotonic() - seen[0] < self._ttl:
            return seen[1]
        t = find_or_none(fleet, tenant)
        self._found[tenant] = (time.monotonic(), t)
        return t

    def client(self, t: Tenant) -> RuntimeClient:
        """A client of the tenant's API kept open (keep-alive) while it stays where it is."""
        key = (t.name, t.url or "", t.token or "")
        with self._lock:
            if key not in self._clients:
                for old in [k for k in self._clients if k[0] == t.name]:
                    self._clients.pop(old).close()
                self._clients[key] = api(t)
            return self._clients[key]

    def _s3_client(self, s3: S3Settings) -> Any:
        """One boto3 client for every listing (making one costs more than a LIST)."""
        with self._lock:
            if self._s3 is None or self._s3[0] != s3:
                self._s3 = (s3, s3_client(s3))
            return self._s3[1]

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        self._clients.clear()

    def copy_of(self, s3: S3Settings, tenant: str) -> tuple[Path, int]:
        """(a copy of the tenant's newest backup, its txid); BackupNotFound without one."""
        with self._lock:
            lock = self._locks.setdefault(tenant, threading.Lock())
        with lock:
            cached = self._copies.get(tenant)
            checked = self._checked.get(tenant, 0.0)
            if cached is not None and time.monotonic() - checked < self._ttl:
                return cached
            txid = backup_state(s3, tenant, self._s3_client(s3)).txid
            self._checked[tenant] = time.monotonic()
            if txid == 0:
                raise BackupNotFound(tenant, s3.bucket)
            if cached is not None and cached[1] == txid:
                return cached
            work = Path(tempfile.mkdtemp(prefix=f"{tenant}-", dir=self._dir))
            restore_copy(s3, tenant, work / "tenant.db")
            self._copies[tenant] = (work / "tenant.db", txid)
            if cached is not None:
                gone = self._retired.get(tenant)
                self._retired[tenant] = cached[0].parent
                if gone is not None:
                    shutil.rmtree(gone, ignore_errors=True)
            return self._copies[tenant]


def _epoch(text: Any) -> float:
    """The API's ISO 8601 times as the database's epoch seconds."""
    return datetime.fromisoformat(text).timestamp() if isinstance(text, str) else 0.0


def _run(d: dict[str, Any]) -> Run:
    from agent_runtime import Run

    return Run(
        id=str(d["id"]),
        workflow=str(d["workflow"]),
        status=str(d["status"]),
        input=d.get("input") or {},
        result=d.get("result"),
        error=d.get("error"),
        created_at=_epoch(d.get("created_at")),
        updated_at=_epoch(d.get("updated_at")),
        wake_at=_epoch(d["wake_at"]) if d.get("wake_at") else None,
    )


def _event(d: dict[str, Any]) -> Event:
    from agent_runtime import Event

    return Event(
        kind=str(d["kind"]),
        position=d.get("position"),
        name=d.get("name"),
        attempt=d.get("attempt"),
        data=d.get("data"),
        seq=int(d.get("seq") or 0),
        created_at=_epoch(d.get("at")),
    )
