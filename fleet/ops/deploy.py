"""`fleet deploy TENANT... --template NAME[:VERSION]`: move tenants to other code, without
breaking a run they recorded.

1. Check every tenant first (replay_check.py: its unfinished runs replayed against the new
   code, inside the new image, on a copy). When a run would break, nothing changes: the
   result is reported and the command exits 9 (unless ``force``). `--check` stops here.
2. Then, one tenant at a time: stop it (the runtime drains; SQLite: Litestream's final sync
   is checked), and check again what it recorded meanwhile (SQLite: when its backup moved on
   since step 1; PostgreSQL: always): a run may have advanced in between, and a break then
   starts the old container again and stops the deploy.
3. Replace the container: same volume, token, labels, limits, environment, host; the new
   image and its app. Wait for /healthz. A new version that does not become healthy is
   removed and the old container is created again (its lease taken back), and the deploy
   stops there with the reason.
4. Runs in flight resume on the new code (the runtime recovers every unfinished run when it
   starts). A tenant that was stopped is stopped again once its new version answered.

The downtime reported per tenant runs from the SIGTERM until the new version answered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from fleet.core import names
from fleet.core.context import Fleet
from fleet.core.errors import CodeIncompatible, FleetError, InvalidArgument
from fleet.core.hosting import Tenant, TransferProgress
from fleet.core.log import log
from fleet.core.templates import Template
from fleet.storage.backups import backup_state
from fleet.storage.final_sync import FinalSyncFailed

from . import templates
from .replay_check import Replayed, TenantCheck, check
from .tenants import TenantOptions, create, find, list_tenants, stop, wait_healthy


@dataclass(frozen=True)
class Deployed:
    """What happened to one tenant."""

    tenant: str
    host: str
    before: str  # its template (NAME:VERSION) or image before
    after: str  # the template's NAME:VERSION
    action: str  # deployed | unchanged | refused (a run would break, checked after the stop)
    downtime_s: float | None = None
    unfinished: int = 0  # runs that continue on the new code
    failing: list[Replayed] = field(default_factory=list)


@dataclass(frozen=True)
class Selection:
    template: Template
    tenants: list[Tenant]


def select(
    fleet: Fleet,
    tenants: list[str],
    labels: dict[str, str],
    template: str,
    progress: TransferProgress | None = None,
) -> Selection:
    """The template and the tenants named or carrying ``labels``; the image is put on
    each of their hosts (outside any downtime)."""
    if not tenants and not labels:
        raise InvalidArgument("no tenant to deploy", "name tenants, or select them with --label")
    for name in tenants:
        names.check_tenant(name)
    found = templates.resolve(fleet, template)
    chosen = {name: find(fleet, name) for name in tenants}
    if labels:
        chosen.update({t.name: t for t in list_tenants(fleet, labels)})
    if not chosen:
        raise InvalidArgument("no tenant carries these labels", "`fleet ls` shows labels")
    for host in sorted({t.host for t in chosen.values()}):
        fleet.hosting.ensure_image(host, found.ref, progress)
    return Selection(found, [chosen[n] for n in sorted(chosen)])


def check_all(fleet: Fleet, selection: Selection) -> list[TenantCheck]:
    return [check(fleet, t, selection.template) for t in selection.tenants]


def deploy(
    fleet: Fleet, checks: list[TenantCheck], *, force: bool, report: Callable[[Deployed], None]
) -> list[Deployed]:
    """Move each checked tenant to its check's template, in order; stops at the first that
    is refused (a run would break after all) or rolled back (it raises then)."""
    done = []
    for c in checks:
        result = move(fleet, c, force=force)
        report(result)
        done.append(result)
        if result.action == "refused":
            break
    return done


def incompatible(failing: list[TenantCheck], *, checked_only: bool) -> CodeIncompatible:
    runs = sum(len(c.failing) for c in failing)
    template = failing[0].template.spec
    return CodeIncompatible(
        f"{runs} recorded run(s) of {len(failing)} tenant(s) would break on {template}; "
        "nothing was changed",
        "new code must call what the history recorded, in the same order; add, do not reorder"
        + ("" if checked_only else ", or pass --force to deploy anyway (those runs fail)"),
    )


def refused(d: Deployed, deployed: list[str]) -> CodeIncompatible:
    before = f"deployed before it: {', '.join(deployed)}" if deployed else "none deployed"
    return CodeIncompatible(
        f"tenant {d.tenant!r}: {len(d.failing)} run(s) advanced during the deploy and would "
        f"break; it runs {d.before} again and the deploy stopped there ({before})",
        "check again with --check, or pass --force",
    )


def move(fleet: Fleet, c: TenantCheck, *, force: bool) -> Deployed:
    t, template = c.tenant, c.template
    before = t.template_spec or t.image
    if t.image == template.ref:
        return Deployed(t.name, t.host, before, template.spec, "unchanged")
    old = replace(TenantOptions.of(fleet.hosting.spec_of(t)), ttl=t.ttl, expires_at=t.expires_at)
    new = replace(old, image=template.ref, app=template.app_path, template=template.spec)
    was_running = t.running
    t0 = time.monotonic()
    if was_running:
        _stop(fleet, t)
    again = _recheck(fleet, c)
    if again.failing and not force:
        if was_running:
            fleet.hosting.start(t)
            wait_healthy(fleet, t)
        return Deployed(t.name, t.host, before, template.spec, "refused", failing=again.failing)
    fleet.hosting.remove(t)  # the volume stays
    log.info("starting new version", tenant=t.name, template=template.spec)
    try:
        started = create(fleet, t.name, new, host=t.host).tenant
    except Exception as exc:
        why = exc.message if isinstance(exc, FleetError) else type(exc).__name__
        printed = _rollback(fleet, t, old)
        raise FleetError(
            f"tenant {t.name!r} did not start on {template.spec} ({why}); "
            f"it runs {before} again. The new version's last error: {printed}",
            "fix the template, build it again and deploy the new version",
        ) from None
    downtime = time.monotonic() - t0
    if not was_running:
        stop(fleet, started)
    return Deployed(t.name, t.host, before, template.spec, "deployed", downtime, len(again.runs))


def _stop(fleet: Fleet, t: Tenant) -> None:
    try:
        stop(fleet, t)
    except FinalSyncFailed as exc:
        fleet.hosting.start(t)
        raise FleetError(
            f"tenant {t.name!r} did not stop cleanly ({exc.message}); it was started again "
            "and nothing was deployed",
            f"`fleet logs {t.name}` shows why",
        ) from None


def _recheck(fleet: Fleet, c: TenantCheck) -> TenantCheck:
    """The check again, on what the stopped tenant recorded, unless nothing changed: a
    SQLite backup at the same txid after the final sync holds no transaction more."""
    t = c.tenant
    sqlite = t.backend == names.BACKEND_SQLITE
    if sqlite and backup_state(fleet.storage.for_fleet(), t.name).txid == c.txid:
        return c
    return check(fleet, t, c.template)


def _rollback(fleet: Fleet, t: Tenant, old: TenantOptions) -> str:
    """Remove what the new version left and create the old one again on the same volume;
    its lease is taken back (the new container may have held it). Returns the last line the
    new version logged."""
    log.info("new version failed; rolling back", tenant=t.name, host=t.host)
    printed = "(none)"
    for copy in fleet.hosting.tenants(name=t.name):
        if copy.host == t.host:
            tail = b"".join(fleet.hosting.logs(copy, tail=40)).decode(errors="replace")
            printed = _why(tail) or printed
            fleet.hosting.remove(copy)
    create(fleet, t.name, old, host=t.host, force_takeover=True)
    return printed[:300]


def _why(logs: str) -> str | None:
    """The runtime's own error line from a container's log, else the last line reporting an
    error, else the last line."""
    lines = [ln.strip() for ln in logs.splitlines() if ln.strip()]
    runtime = [ln for ln in lines if ln.startswith("agent-runtime: error:")]
    errors = [ln for ln in lines if "error" in ln.lower()]
    found = runtime or errors or lines
    return found[-1] if found else None
