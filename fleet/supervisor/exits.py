"""What a tenant container's exit status means, for the engine's restart policy and for people.

Tenant containers run with Docker's restart policy ``on-failure`` (fleet/engine/container_spec):
the engine restarts a container that exits non-zero, with its own backoff (0.1 s doubling to
1 min, reset after 10 s up), and also when the engine itself starts again; one that exits 0
stays stopped. So:

- ``DOWN`` (0): stopped and staying stopped. After SIGUSR1, which `fleet down` (and park,
  migrate, rm) send before the engine's stop, once the runtime drained and Litestream made its
  final sync; or because retrying cannot help (the lease is live elsewhere or was taken over,
  the restart bound was reached, the settings are wrong): the last line the supervisor logs,
  ``litefleet-supervisor: stopped: <why>``, says which.
- ``ENGINE_STOP`` (143, 128+SIGTERM): stopped cleanly by SIGTERM alone, which is what the
  engine sends on ``docker stop`` and when it shuts down (a reboot): the container comes back
  when the engine starts again. (`docker stop` by hand is therefore not `fleet down`.)
- ``CRASHED`` (70) and anything else: a process of the tenant died; the engine restarts it.
"""

from __future__ import annotations

import os
import signal

DOWN = 0
ENGINE_STOP = 128 + signal.SIGTERM
CRASHED = 70  # EX_SOFTWARE
STOPPED_PREFIX = "stopped: "  # the supervisor's last line when it exits DOWN

_OOM_COUNTERS = (
    ("/sys/fs/cgroup/memory.events", "oom_kill"),  # cgroup v2
    ("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill"),  # cgroup v1
)


def oom_kills() -> int | None:
    """How many processes the kernel's OOM killer killed in this container's memory cgroup
    (None when no counter is readable)."""
    for path, key in _OOM_COUNTERS:
        try:
            with open(path) as f:
                for line in f:
                    name, _, value = line.partition(" ")
                    if name == key:
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


def describe(status: int, oom: bool = False) -> str:
    """A wait status in words: "exit 3", "killed by SIGKILL (out of memory)"."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return f"exit {code}"
    return f"killed by {_signal_name(-code)}" + (" (out of memory)" if oom else "")


def describe_code(code: int, oom: bool = False) -> str:
    """An exit status (``os.waitstatus_to_exitcode``: negative for signal N) in words; a shell
    reports a child killed by signal N as 128+N, read the same way."""
    if code < 0 or code > 128:
        name = _signal_name(-code if code < 0 else code - 128)
        return f"killed by {name}" + (" (out of memory)" if oom else "")
    return f"exit {code}"


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"
