"""The runner: the agent uid's end of the supervisor. ``python3 -I -m fleet.supervisor run-app``.

It runs as AGENT_UID and holds nothing the runtime does not hold itself. It exists because
the keeper (another uid, without capabilities) may not signal the runtime: the keeper tells
the runner over a pipe, the runner signals the runtime.

- With a control pipe (``LITEFLEET_CONTROL_FD``, SQLite tenants): wait for ``START`` (the
  lease is held and the database prepared), start the runtime, and on ``STOP`` send it
  SIGTERM (it drains), on ``KILL`` SIGKILL; the end of the pipe (the keeper died) is a STOP.
  The runner exits with the runtime's status (128+N when killed by signal N), which the
  keeper reads.
- Without one (PostgreSQL tenants) it is the container's PID 1: it starts the runtime at once,
  reaps orphans, and maps the container's signals as the keeper does (supervisor.exits):
  SIGUSR1 stops for good (exit 0), SIGTERM stops until the engine starts the container again
  (exit 143), and a runtime that ends by itself is a crash (exit 70).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys

from . import exits
from .environments import serve_command, uses_postgres
from .layout import DB_PATH, ENV_CONTROL_FD, ENV_DB, LEASE_GATE_FILE

START, STOP, KILL = b"s", b"t", b"k"


def log(msg: str) -> None:
    sys.stderr.write(f"litefleet-runner: {msg}\n")
    sys.stderr.flush()


def exit_status(status: int) -> int:
    """A wait status as a shell would report it (128+N for signal N)."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


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
        fd = env.pop(ENV_CONTROL_FD, None)
        self.control = int(fd) if fd else None
        self.env = env
        self.child: int | None = None
        self.requested: int | None = None  # the exit status a stop request asked for
        self.wakeup_r, wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wakeup_w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGCHLD):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGCHLD or self.control is not None:
            return  # the keeper stops us through the pipe; SIGCHLD only wakes the loop
        self.requested = exits.DOWN if signum == signal.SIGUSR1 else exits.ENGINE_STOP
        self._kill(signal.SIGTERM)

    def _kill(self, sig: int) -> None:
        if self.child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child, sig)

    def command(self) -> list[str]:
        if uses_postgres(self.env):
            return serve_command(self.env, self.env[ENV_DB], None)
        return serve_command(self.env, DB_PATH, LEASE_GATE_FILE)

    def run(self) -> int:
        if self.control is not None and not self._wait_for_start():
            return 0
        self.child = spawn(self.command(), self.env)
        while True:
            status = self._reap()
            if status is not None:
                return self._result(status)
            ready = select.select(self._watched(), [], [])[0]
            if self.wakeup_r in ready:
                os.read(self.wakeup_r, 512)
            if self.control is not None and self.control in ready:
                self._on_control(os.read(self.control, 1))

    def _watched(self) -> list[int]:
        return [self.wakeup_r] if self.control is None else [self.wakeup_r, self.control]

    def _wait_for_start(self) -> bool:
        assert self.control is not None
        while True:
            msg = os.read(self.control, 1)
            if msg == START:
                return True
            if msg in (b"", STOP, KILL):
                return False

    def _on_control(self, msg: bytes) -> None:
        if msg == KILL:
            self._kill(signal.SIGKILL)
        elif msg in (STOP, b""):
            self._kill(signal.SIGTERM)
            if msg == b"":
                self.control = None  # the keeper is gone: nothing more will come

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
        code = exit_status(status)
        if self.control is not None or os.getpid() != 1:
            return code
        if self.requested is not None:
            return self.requested
        log(f"the runtime ended by itself ({exits.describe(status)})")
        return exits.CRASHED


def main() -> int:
    env = dict(os.environ)
    os.umask(0o007)
    return Runner(env).run()
