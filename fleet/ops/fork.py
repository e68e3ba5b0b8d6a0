"""`fleet fork SRC NEW [--at TIME]`: a new tenant whose database is another tenant's backup as
of a point in time, to try a change from the exact state an agent was in.

SRC is only read, through its backup (``tenants/SRC/``): never its container, volume or lease,
so it may be running, stopped or parked. On Docker hosts NEW's volume is filled by
restore.py's one-off restore pointed at SRC's replica. On Swarm (a ``Placing`` hosting) the
fleet cannot prepare a volume on the node Swarm will choose, so it restores SRC's backup on
this machine and seeds NEW's backup with that copy: NEW's task restores it into its empty
volume as it starts, on any node. From then on NEW is a tenant like any other, created by
``tenants.create``: its own API token, lease (``leases/NEW.json``), replica path
(``tenants/NEW/``) and credentials, SRC's image, app, limits and environment, and the user
label ``litefleet.forked-from=SRC``. Its runtime recovers every run that was unfinished at
TIME, so those runs continue in NEW (their steps in flight at TIME run again there: forking
repeats side effects, as any re-execution does).

"As of TIME" is what Litestream replicated by TIME: each replicated transaction carries the
time it was shipped (about a second after its commit). A TIME a few seconds ahead is waited
for, so that a fork "as of now" holds what was committed until now.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from fleet.core import names
from fleet.core.context import Fleet
from fleet.core.errors import (
    BackupNotFound,
    InvalidArgument,
    TenantNotFound,
)
from fleet.core.hosting import Placing, Tenant, TransferProgress
from fleet.storage.backups import backup_state, purge, txid_time
from fleet.storage.litestream import parse_timestamp, restore_copy, seed_backup, shown_timestamp

from .park import parked_spec
from .restore import restore_volume
from .tenants import TenantOptions, claim_and_copy, create, find_or_none, with_template

# A TIME up to this far ahead is waited for; uploads in flight get SETTLE_S more.
MAX_AHEAD_S = 10.0
SETTLE_S = 2.0


@dataclass(frozen=True)
class ForkResult:
    source: str
    tenant: Tenant
    txid: int  # the newest of SRC's transactions NEW starts from
    at: str  # TIME as given (UTC), else when that transaction was replicated
    restore_s: float
    total_s: float  # until NEW answered /healthz


def fork(
    fleet: Fleet,
    src: str,
    new: str,
    *,
    at: str | None = None,
    host: str | None = None,
    labels: dict[str, str] | None = None,
    template: str | None = None,
    progress: TransferProgress | None = None,
) -> ForkResult:
    names.check_tenant(src)
    names.check_tenant(new)
    if src == new:
        raise InvalidArgument("a fork needs a new name", f"e.g. `fleet fork {src} {src}-try`")
    stamp = parse_timestamp(at) if at else None
    t0 = time.monotonic()
    s3 = fleet.storage.checked()
    _refuse_existing(fleet, new, backup_state(s3, new).objects)
    source = find_or_none(fleet, src)
    if backup_state(s3, src).txid == 0:
        raise BackupNotFound(src, s3.bucket) if source else TenantNotFound(src)
    options = _options(fleet, src, source, labels or {}, template)
    image = options.image or fleet.settings.image
    target = fleet.hosting.place(host)
    claim_and_copy(fleet, new, target, image, False, progress)
    if stamp:
        _wait_for(stamp)
    r0 = time.monotonic()
    if isinstance(fleet.hosting, Placing):
        txid = _seeded(fleet, src, new, stamp)
        restore_s = time.monotonic() - r0
        created = _create_seeded(fleet, new, options, target)
    else:
        fleet.hosting.create_volume(new, target)
        try:
            txid = restore_volume(fleet, new, target, image, stamp, backup_of=src)
            restore_s = time.monotonic() - r0
            created = create(fleet, new, options, host=target).tenant
        except BaseException:
            if not any(t.host == target for t in fleet.hosting.tenants(name=new)):
                fleet.hosting.remove_volume(new, target)  # leave nothing half-made behind
            raise
    return ForkResult(
        source=src,
        tenant=created,
        txid=txid,
        at=shown_timestamp(stamp) if stamp else _replicated_at(txid_time(s3, src, txid)),
        restore_s=restore_s,
        total_s=time.monotonic() - t0,
    )


def _refuse_existing(fleet: Fleet, new: str, backup_objects: int) -> None:
    """NEW must be a new name: no container anywhere, no backup (a removed tenant's backup
    would be restored by `fleet up NEW`, and NEW's replication must start from nothing)."""
    existing = find_or_none(fleet, new)
    if existing is not None:
        raise InvalidArgument(
            f"tenant {new!r} exists (on host {existing.host!r})", "fork into a new name"
        )
    if backup_objects:
        raise InvalidArgument(
            f"tenant {new!r} has a backup in object storage",
            f"fork into a new name, or delete it with `fleet up {new}` then "
            f"`fleet rm {new} --purge`",
        )


def _options(
    fleet: Fleet, src: str, source: Tenant | None, labels: dict[str, str], template: str | None
) -> TenantOptions:
    """SRC's settings (a parked SRC's recorded ones; defaults when it has neither a
    container nor a manifest), a token of NEW's own; with ``template`` NEW runs that
    template's code and app instead of SRC's (no replay check: NEW is a new tenant to try
    new code on, and its runs fail loudly where the code diverges from their history)."""
    spec = fleet.hosting.spec_of(source) if source else parked_spec(fleet, src)
    base = TenantOptions.of(spec) if spec else TenantOptions()
    merged = {**base.labels, **labels, names.LABEL_FORKED_FROM: src}
    options = replace(base, token=None, labels=merged)
    if template is not None:
        options = replace(options, template=template, image=None, app=None)
    return with_template(fleet, options)


def _seeded(fleet: Fleet, src: str, new: str, stamp: str | None) -> int:
    """SRC's backup as of ``stamp``, restored on this machine and replicated once as NEW's
    backup (the fleet's key: a tenant's own may not read SRC's); the txid restored."""
    s3 = fleet.storage.for_fleet()
    with tempfile.TemporaryDirectory(prefix=".fleet-fork-") as tmp:
        copy = Path(tmp, "tenant.db")
        txid = restore_copy(s3, src, copy, stamp)
        try:
            seed_backup(s3, new, copy)
        except BaseException:
            purge(s3, new)  # a half-written backup would block a retry under this name
            raise
    return txid


def _create_seeded(fleet: Fleet, new: str, options: TenantOptions, target: str) -> Tenant:
    try:
        return create(fleet, new, options, host=target).tenant
    except BaseException:
        if find_or_none(fleet, new) is None:  # nothing runs from it: leave no backup behind
            purge(fleet.storage.for_fleet(), new)
        raise


def _wait_for(stamp: str) -> None:
    """Let a TIME just ahead pass (plus the uploads in flight then); refuse one far ahead."""
    ahead = datetime.fromisoformat(stamp).timestamp() - time.time()
    if ahead > MAX_AHEAD_S:
        raise InvalidArgument(
            f"--at {shown_timestamp(stamp)} is in the future", "omit --at for now"
        )
    if ahead + SETTLE_S > 0:
        time.sleep(ahead + SETTLE_S)


def _replicated_at(when: datetime | None) -> str:
    if when is None:
        return "the newest replicated state"
    return shown_timestamp(when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
