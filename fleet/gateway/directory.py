"""What the gateway knows about each tenant: where it answers, its token, its state.

Filled from the engines (running tenants: URL and token) and from the manifests (parked
tenants: token and earliest deadline), refreshed periodically and on demand. Answers for
a tenant nobody knows are cached too (``NEGATIVE_S``), so a flood of requests for made-up
names costs at most one look-up per name and interval, never a wake.

The blocking look-ups (Docker SDK, boto3) are plain functions run in worker threads.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fleet.core import names
from fleet.core.context import Fleet
from fleet.core.durations import parse_duration
from fleet.core.errors import FleetError
from fleet.core.hosting import Tenant
from fleet.ops.holds import operation_of
from fleet.ops.park import parked_record
from fleet.storage import manifests
from fleet.storage.s3 import shared_client

NEGATIVE_S = 5.0  # an unknown name is looked up again at most this often
RUNNING = "running"
STOPPED = "stopped"  # a container that is not running (`fleet down`): not woken
UNKNOWN = "unknown"


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass
class Entry:
    name: str
    state: str  # RUNNING, STOPPED, UNKNOWN, or a manifest state (parked, parking, waking)
    token_digest: bytes | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)  # to ask the runtime itself
    url: str | None = None
    host: str | None = None
    idle_park_s: float | None = None
    next_wake_at: float | None = None
    operation: str | None = None  # migrate, deploy...: hold requests
    checked: float = field(default_factory=time.monotonic)
    last_proxied: float = 0.0  # monotonic, requests this gateway passed on

    def accepts(self, token: str | None) -> bool:
        """Constant-time comparison of digests (the lengths never differ)."""
        if token is None or self.token_digest is None:
            return False
        return hmac.compare_digest(digest(token), self.token_digest)


def entry_of_tenant(t: Tenant) -> Entry:
    return Entry(
        name=t.name,
        state=RUNNING if t.running and t.url else STOPPED,
        token_digest=digest(t.token) if t.token else None,
        token=t.token,
        url=t.url if t.running else None,
        host=t.host,
        idle_park_s=_seconds(t.idle_park),
    )


def entry_of_manifest(m: manifests.Manifest) -> Entry | None:
    """A parked (parking, waking) tenant's entry; None when the manifest records none."""
    rec = parked_record(m)
    if rec is None:
        return None
    token = (rec.get("secrets") or {}).get("token")
    labels = (rec.get("spec") or {}).get("labels") or {}
    return Entry(
        name=m.tenant,
        state=m.state or names.STATE_PARKED,
        token_digest=digest(token) if isinstance(token, str) and token else None,
        token=token if isinstance(token, str) else None,
        host=rec.get("host"),
        idle_park_s=_seconds(labels.get(names.LABEL_IDLE_PARK)),
        next_wake_at=rec.get("next_wake_at"),
        operation=operation_of(m),
    )


def resolve(fleet: Fleet, name: str) -> Entry:
    """One tenant, looked up now: a running copy wins; else its manifest (parked, or an
    operation in progress); else what the engines say (stopped) or UNKNOWN."""
    copies = fleet.hosting.tenants(name=name)
    running = [t for t in copies if t.running and t.url]
    if running:
        return entry_of_tenant(running[0])
    m = manifests.read(fleet.storage.for_fleet(), name)
    entry = entry_of_manifest(m)
    op = operation_of(m)
    if entry is None and copies:
        entry = entry_of_tenant(copies[0])
    if entry is None:
        entry = Entry(name, UNKNOWN)
    entry.operation = op
    return entry


@dataclass
class Survey:
    """Every tenant, for the periodic refresh: running ones from the engines, parked ones from
    the manifests (a manifest is read again only when its ETag changed)."""

    entries: dict[str, Entry]
    manifests_seen: dict[str, tuple[str, Entry | None]]  # name: (etag, entry)


def survey(fleet: Fleet, previous: dict[str, tuple[str, Entry | None]]) -> Survey:
    s3 = fleet.storage.for_fleet()
    client = shared_client(s3)
    seen: dict[str, tuple[str, Entry | None]] = {}
    changed = []
    for name, etag in manifests.etags(s3, client).items():
        old = previous.get(name)
        if old is not None and old[0] == etag:
            seen[name] = old
        else:
            changed.append(name)
    if changed:
        with ThreadPoolExecutor(max_workers=min(16, len(changed))) as pool:
            for m in pool.map(lambda n: manifests.read(s3, n, client), changed):
                seen[m.tenant] = (m.etag or "", entry_of_manifest(m))
    entries = {n: e for n, (_, e) in seen.items() if e is not None}
    for t in fleet.hosting.tenants():
        if t.running or t.name not in entries:
            entry = entry_of_tenant(t)
            if t.name in entries and entries[t.name].operation:
                entry.operation = entries[t.name].operation
            entries[t.name] = entry
    return Survey(entries, seen)


def _seconds(duration: str | None) -> float | None:
    if not duration:
        return None
    try:
        return float(parse_duration(duration))
    except FleetError:
        return None
