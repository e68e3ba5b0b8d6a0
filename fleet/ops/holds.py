"""Operations that take a tenant away for a moment (`fleet migrate`, `fleet deploy`) say so in
its manifest, so that the gateway holds requests for it (latency, not errors) instead of
answering that it is gone.

    with holding(fleet, tenant, "deploy"):
        ...  # stop it, start it elsewhere or with a new image

The mark carries an expiry: a command that dies mid-operation does not make the gateway
hold requests for that tenant forever.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from fleet.core.context import Fleet
from fleet.core.log import log
from fleet.storage import manifests

OPERATION_KEY = "operation"
DEFAULT_EXPIRY_S = 300.0


@contextlib.contextmanager
def holding(
    fleet: Fleet, tenant: str, operation: str, expiry: float = DEFAULT_EXPIRY_S
) -> Iterator[None]:
    s3 = fleet.storage.for_fleet(start=True)
    mark = {"op": operation, "since": time.time(), "until": time.time() + expiry}
    manifests.update(s3, tenant, lambda doc: {**doc, OPERATION_KEY: mark})
    try:
        yield
    finally:

        def change(doc: dict[str, Any]) -> dict[str, Any] | None:
            if doc.get(OPERATION_KEY) != mark:
                return None  # not ours any more
            return {k: v for k, v in doc.items() if k != OPERATION_KEY}

        try:
            manifests.update(s3, tenant, change)
        except Exception as exc:  # it expires by itself; the operation's outcome matters more
            log.warning("could not clear the operation mark", tenant=tenant, error=str(exc))


def operation_of(m: manifests.Manifest, now: float | None = None) -> str | None:
    """The operation in progress on the tenant (``migrate``, ``deploy``...), None when none
    or when its mark expired."""
    mark = m.doc.get(OPERATION_KEY)
    if not isinstance(mark, dict):
        return None
    now = time.time() if now is None else now
    until = mark.get("until")
    if not isinstance(until, int | float) or until < now:
        return None
    op = mark.get("op")
    return op if isinstance(op, str) else None
