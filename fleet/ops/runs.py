"""Runs on a tenant through its runtime API: run, runs, signal, cancel."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleet.core.context import Fleet
from fleet.core.errors import InvalidArgument, TenantNotFound

from .api import RuntimeClient, api
from .tenants import find_or_none
from .wake import is_parked, wake

Notify = Callable[[str], None]


def client(
    fleet: Fleet, tenant: str, timeout: float = 15.0, notify: Notify | None = None
) -> RuntimeClient:
    """A client of the tenant's runtime API, waking a parked tenant first (``notify`` is
    told); TenantNotRunning unless it serves."""
    t = find_or_none(fleet, tenant)
    if t is None:
        if not is_parked(fleet, tenant):
            raise TenantNotFound(tenant)
        if notify is not None:
            notify(f"tenant {tenant} is parked: waking it")
        t = wake(fleet, tenant).tenant
        if notify is not None:
            notify(f"tenant {tenant} woken on {t.host}")
    return api(t, timeout)


def parse_json(text: str | None, what: str, *, allow_file: bool = True) -> Any:
    """JSON from the command line; ``@path`` reads it from a file ("@-" is not supported)."""
    if text is None:
        return None
    if allow_file and text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text()
        except OSError as exc:
            raise InvalidArgument(f"cannot read {what} file {path}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"{what} is not valid JSON: {exc}") from None


def parse_input(text: str | None) -> dict[str, Any]:
    value = parse_json(text, "--input")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument("--input must be a JSON object, e.g. '{\"n\": 3}'")
    return value


def run(
    fleet: Fleet,
    tenant: str,
    workflow: str,
    *,
    input: dict[str, Any] | None = None,
    id: str | None = None,
    wait: bool = False,
    timeout: float = 300.0,
    notify: Notify | None = None,
) -> dict[str, Any]:
    """Submit a run (idempotent when ``id`` is given); with ``wait``, its terminal state."""
    with client(fleet, tenant, notify=notify) as api:
        submitted = api.submit(workflow, input or {}, id)
        if not wait:
            return submitted
        return api.wait(str(submitted["id"]), timeout)


def runs(
    fleet: Fleet,
    tenant: str,
    *,
    status: str | None = None,
    workflow: str | None = None,
    limit: int = 100,
    notify: Notify | None = None,
) -> list[dict[str, Any]]:
    with client(fleet, tenant, notify=notify) as api:
        return api.list_runs(status=status, workflow=workflow, limit=limit)


def signal(
    fleet: Fleet, tenant: str, run: str, name: str, data: Any = None, notify: Notify | None = None
) -> dict[str, Any]:
    with client(fleet, tenant, notify=notify) as api:
        return api.signal(run, name, data)


def cancel(fleet: Fleet, tenant: str, run: str, notify: Notify | None = None) -> dict[str, Any]:
    with client(fleet, tenant, notify=notify) as api:
        return api.cancel(run)
