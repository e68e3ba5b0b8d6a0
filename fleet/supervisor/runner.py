"""The runner: the agent uid's end of the supervisor. It holds nothing the runtime does not
hold itself, and exists because the keeper (another uid, without capabilities) may not signal
the runtime.

- SQLite tenant: images/tenant/runner.sh, a POSIX shell script (it idles for the tenant's whole
  life: ~1.6 MB against ~10 MB for a Python process). It waits on the keeper's pipe, then
  becomes the runtime, leaving a reader of the pipe behind that signals it.
- PostgreSQL tenant (no keeper, no lease): this module, ``python3 -I -m fleet.supervisor
  run-app``, as the container's PID 1. It starts the runtime at once, reaps orphans, and maps
  the container's signals as the keeper does (supervisor/exits.py): SIGUSR1 stops for good
  (exit 0), SIGTERM until the engine starts the container again (143), and a runtime that
  ends by itself is a crash (70).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys

from . import exits
from .environments import serve_command
from .layout import ENV_DB, ENV_EGRESS


def log(msg: str) -> None:
    sys.stderr.write(f"litefleet-runner: {msg}\n")
    sys.stderr.flush()


def spawn(argv: list[str], env: dict[str, str]) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    return pid


class Runner:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.child: int | None = None
        self.requested: int | None = None  # the exit status a stop request asked for
        self.wakeup_r, wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wakeup_w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGCHLD):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGCHLD:
            return  # it only wakes the loop
        if signum == signal.SIGUSR1 or self.requested is None:  # SIGUSR1 wins: fleet down
            self.requested = exits.DOWN if signum == signal.SIGUSR1 else exits.ENGINE_STOP
        self._kill(signal.SIGTERM)

    def _kill(self, sig: int) -> None:
        if self.child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child, sig)

    def run(self) -> int:
        self.child = spawn(serve_command(self.env, self.env[ENV_DB], None), self.env)
        while True:
            status = self._reap()
            if status is not None:
                return self._result(status)
            select.select([self.wakeup_r], [], [])
            os.read(self.wakeup_r, 512)

    def _reap(self) -> int | None:
        """The runtime's wait status once it ended; reaps orphans on the way (PID 1)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return None
            if pid == 0:
                return None
            if pid == self.child:
                return status

    def _result(self, status: int) -> int:
        if self.requested is not None:
            return self.requested
        log(f"the runtime ended by itself ({exits.describe(status)})")
        return exits.CRASHED


def main() -> int:
    from .egress import wait_until_enforced

    env = dict(os.environ)
    wait_until_enforced(env, log)  # before any agent code runs
    env.pop(ENV_EGRESS, None)
    os.umask(0o007)
    return Runner(env).run()
