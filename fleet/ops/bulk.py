"""Many tenants in one command: `fleet up | park | wake T1 T2 ...` (and ``--count N --prefix
P``). One process, a bounded number of tenants at once, one report per tenant as it ends:
a failure is reported for its tenant and the others go on.

`fleet up` of a parked tenant wakes it (as it was parked: same token and settings).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Generic, Protocol, TypeVar

from fleet.core import names
from fleet.core.context import Fleet
from fleet.core.errors import FleetError, InvalidArgument, translate
from fleet.core.hosting import TransferProgress

from .park import ParkResult, park
from .tenants import TenantOptions, UpResult, find_or_none, up, with_template
from .wake import WakeResult, is_parked, wake

R = TypeVar("R")


class Reporter(Protocol):
    """How a bulk command reports (the CLI: one progress bar on stderr)."""

    def start(self, total: int) -> None: ...

    def done(self, tenant: str, result: object) -> None: ...


@dataclass
class Outcome(Generic[R]):
    done: list[R] = field(default_factory=list)
    failed: list[FleetError] = field(default_factory=list)


def tenant_names(given: list[str], count: int | None, prefix: str | None) -> list[str]:
    """The names given, then ``count`` more as ``<prefix>1..<prefix>N``; each checked once."""
    tenants = list(given)
    if count is not None or prefix is not None:
        if not count or count < 1 or not prefix:
            raise InvalidArgument("--count N and --prefix P go together (N >= 1)")
        width = len(str(count))
        tenants += [f"{prefix}{i:0{width}d}" for i in range(1, count + 1)]
    if not tenants:
        raise InvalidArgument("name at least one tenant (or --count N --prefix P)")
    for t in tenants:
        names.check_tenant(t)
    if len(set(tenants)) != len(tenants):
        raise InvalidArgument("a tenant is named twice")
    return tenants


def for_each(
    tenants: list[str],
    one: Callable[[str], R],
    reporter: Reporter | None = None,
    parallel: int = names.PARK_PARALLEL,
) -> Outcome[R]:
    def run(name: str) -> R | FleetError:
        try:
            result: R | FleetError = one(name)
        except Exception as exc:  # reported per tenant; the others go on
            err = translate(exc)
            if err is None:
                raise
            if len(tenants) == 1:  # the error as it is: the command named the tenant
                result = err
            else:
                result = FleetError(f"{name}: {err.message}", err.hint)
                result.exit_code = err.exit_code
        if reporter:
            reporter.done(name, result)
        return result

    outcome: Outcome[R] = Outcome()
    if reporter:
        reporter.start(len(tenants))
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(tenants)))) as pool:
        for r in pool.map(run, tenants):
            if isinstance(r, FleetError):
                outcome.failed.append(r)
            else:
                outcome.done.append(r)
    return outcome


def up_many(
    fleet: Fleet,
    tenants: list[str],
    options: TenantOptions,
    *,
    host: str | None = None,
    force_takeover: bool = False,
    progress: TransferProgress | None = None,
    reporter: Reporter | None = None,
) -> Outcome[UpResult]:
    options.check()
    if tenants:
        # A template (or --app PATH built as one) is resolved once, not by each thread;
        # each up() then finds it pinned (image from the template, not given twice).
        resolved = with_template(fleet, options)
        _warm(fleet, host, resolved, progress)
        options = replace(resolved, image=None) if resolved.template else options

    def one(tenant: str) -> UpResult:
        if find_or_none(fleet, tenant) is None and is_parked(fleet, tenant):
            woken = wake(fleet, tenant, host=host)
            return UpResult(woken.tenant, "woken")
        return up(fleet, tenant, options, host=host, force_takeover=force_takeover)

    return for_each(tenants, one, reporter)


def park_many(
    fleet: Fleet, tenants: list[str], reporter: Reporter | None = None
) -> Outcome[ParkResult]:
    fleet.storage.for_fleet(start=True)
    return for_each(tenants, lambda t: park(fleet, t), reporter)


def wake_many(
    fleet: Fleet, tenants: list[str], host: str | None = None, reporter: Reporter | None = None
) -> Outcome[WakeResult]:
    fleet.storage.for_fleet(start=True)
    return for_each(tenants, lambda t: wake(fleet, t, host=host), reporter)


def _warm(
    fleet: Fleet, host: str | None, options: TenantOptions, progress: TransferProgress | None
) -> None:
    """What every tenant needs, once before the threads race for it: object storage and the
    image on the target host."""
    fleet.storage.for_fleet(start=True)
    if options.db_url is None and not options.postgres:
        fleet.storage.checked()
        fleet.storage.sharing_warning()  # which keys tenants get, decided once
    if host is not None:
        fleet.hosting.ensure_image(host, options.image or fleet.settings.image, progress)
