"""Fail closed: a tenant whose egress policy is not enforced on its host starts nothing.

The rules live in the host's kernel, outside the container, and a host that rebooted has none
until the fleet's firewall container has put them back (fleet/engine/firewall.py); the engine
may restart this container first. So before anything else runs, the supervisor checks for
its own rules: the first rule of the tenant's chain answers a TCP connection to
EGRESS_SENTINEL (an address no host has) with a reset. Without the rules that connection goes
nowhere (a timeout, or an unreachable error): the supervisor waits and tries again, for as
long as it takes. Only containers the fleet created with a policy (ENV_EGRESS) are checked.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable, Mapping

from .layout import EGRESS_SENTINEL, ENV_EGRESS

PROBE_TIMEOUT_S = 2.0
SAY_EVERY_S = 30.0


def enforced(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether this container's egress chain answers the sentinel (a reset, at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        code = s.connect_ex(EGRESS_SENTINEL)
    return code == errno.ECONNREFUSED


def wait_until_enforced(
    environ: Mapping[str, str],
    log: Callable[[str], None],
    probe: Callable[[], bool] = enforced,
    pause: float = 1.0,
) -> float:
    """Return once the host enforces this tenant's policy (at once without ENV_EGRESS);
    the seconds it waited."""
    if not environ.get(ENV_EGRESS):
        return 0.0
    t0 = last_said = time.monotonic()
    while not probe():
        if time.monotonic() - last_said >= SAY_EVERY_S or last_said == t0:
            log(
                "egress rules for this tenant are not in place on its host; waiting for them "
                "(the litefleet-firewall container applies them; `fleet up` starts it)"
            )
            last_said = time.monotonic()
        time.sleep(pause)
    return time.monotonic() - t0
