"""The keeper's two children, seen from the keeper (PID 1 of the container, SUPERVISOR_UID).

- ``Replicator``: Litestream, the keeper's own child and uid. The first start runs the
  ``replicate`` stage (restore or set aside under the lease, then ``exec litestream
  replicate``), which reports on a pipe when the database is ready; a restart after a crash
  runs Litestream directly. While the lease is unconfirmed it is paused (SIGSTOP): it writes
  nothing to the replica, keeps its state and its hold on the database (so nobody checkpoints
  the WAL behind its back), and SIGCONT resumes it where it was. SIGTERM makes it do its
  final sync and exit; SIGKILL stops it without one (a lost lease).
- ``AppLink``: the runner (AGENT_UID, images/tenant/runner.sh), forked by the first stage
  before it became the keeper; once started it *is* the runtime (exec). The keeper may not
  signal another uid, so it writes a line on a pipe: start, stop (the runtime drains), kill.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

READY = b"r"
START, STOP, KILL = b"start\n", b"stop\n", b"kill\n"  # to the runner (runner.sh)


def which(name: str, env: dict[str, str]) -> str:
    """``name`` found on ``env``'s PATH (as execvp would), for execve."""
    if "/" in name:
        return name
    for d in env.get("PATH", "").split(":"):
        path = os.path.join(d, name)
        if os.access(path, os.X_OK):
            return path
    return name  # execve reports it missing


def spawn(argv: list[str], env: dict[str, str], keep_fd: int | None = None) -> int:
    """Fork and exec ``argv`` with ``env`` in its own process group; ``keep_fd`` stays open
    in the child (every other descriptor of the keeper is close-on-exec)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.setpgid(0, 0)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            if keep_fd is not None:
                os.set_inheritable(keep_fd, True)
            os.execve(argv[0], argv, env)
        except OSError as exc:
            sys.stderr.write(f"litefleet-supervisor: cannot run {argv[0]}: {exc}\n")
        finally:
            os._exit(127)
    return pid


class Replicator:
    """``first``: argv of the first start, which writes READY on the fd named by the
    ``{fd}`` placeholder of its environment variable ``ready_var`` (None: ready at once);
    ``again``: argv of a restart."""

    def __init__(
        self, first: list[str], again: list[str], env: dict[str, str], ready_var: str | None
    ) -> None:
        self.first, self.again, self.env, self.ready_var = first, again, env, ready_var
        self.pid: int | None = None
        self.ready = False
        self.paused = False
        self.ready_fd: int | None = None  # ours, while the first start prepares

    def start(self) -> None:
        self.paused = False
        if self.ready:  # started before, and it prepared the database: a restart
            self.pid = spawn(self.again, self.env)
        elif self.ready_var is None:
            self.pid = spawn(self.first, self.env)
            self.ready = True
        else:
            r, w = os.pipe2(os.O_CLOEXEC)
            self.pid = spawn(self.first, {**self.env, self.ready_var: str(w)}, keep_fd=w)
            os.close(w)
            self.ready_fd = r

    def on_ready_fd(self) -> None:
        """The first start wrote on its pipe (ready) or closed it (it ended before)."""
        assert self.ready_fd is not None
        msg = os.read(self.ready_fd, 1)
        os.close(self.ready_fd)
        self.ready_fd = None
        self.ready = msg == READY

    def exited(self) -> None:
        self.pid = None
        self.paused = False
        if self.ready_fd is not None:
            os.close(self.ready_fd)
            self.ready_fd = None

    def _signal(self, sig: int) -> None:
        """To its whole process group (it is the group's leader): whatever it started too."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)

    def pause(self) -> None:
        if self.pid is not None and not self.paused:
            self._signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.paused:
            self._signal(signal.SIGCONT)
            self.paused = False

    def terminate(self) -> None:
        """Stop after a final sync."""
        self.resume()
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """Stop now, without a final sync (a stopped process dies of SIGKILL too)."""
        self._signal(signal.SIGKILL)


class AppLink:
    """The runner, then the runtime it became, through the control pipe (``control``: our
    write end)."""

    def __init__(self, pid: int, control: int) -> None:
        self.pid: int | None = pid
        self.control = control
        self.started = False

    def _send(self, msg: bytes) -> bool:
        """False when nobody reads the pipe any more (the runtime exited, or agent code
        killed the runner's reader: then the runtime cannot be told)."""
        try:
            os.write(self.control, msg)
        except OSError:
            return False
        return True

    def start(self) -> None:
        if not self.started:
            self.started = True
            self._send(START)

    def stop(self) -> bool:
        return self._send(STOP)

    def kill(self) -> None:
        self._send(KILL)

    def exited(self) -> None:
        self.pid = None
