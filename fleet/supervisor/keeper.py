"""The keeper: holds a tenant's lease while a child process group runs.

``python3 -I -m fleet.supervisor hold -- CMD [ARGS...]``: take the lease (waiting up to
LITEFLEET_LEASE_WAIT for a dead holder's lease to lapse, else exit 75), start CMD in its own
process group, renew every RENEW_S, and on losing the lease SIGKILL the whole group at once,
without Litestream's final sync: a sync after losing the lease is what would corrupt the new
holder's backup. A keeper that cannot renew at all stops the same way before its lease runs
out (self-fencing), so a new holder never overlaps it. When CMD ends (after the final sync on
a clean stop) the lease is released and CMD's exit status passes through.

The child today is one process group (restore, then ``litestream replicate -exec`` the
runtime). Running Litestream and the runtime as sibling children (different uids), or telling
the runtime through a file while its lease is unconfirmed, belongs here: ``_spawn`` and the
renewal loop in ``run`` are the places.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sys
import time

from . import conditional
from .conditional import EXIT_UNSAFE_STORE
from .layout import (
    ENV_HOST,
    ENV_LEASE_RENEW,
    ENV_LEASE_TTL,
    ENV_LEASE_WAIT,
    ENV_TENANT,
    conditional_check_key,
)
from .lease import (
    EXIT_LEASE,
    RENEW_S,
    TTL_S,
    Holder,
    Lease,
    LeaseHeld,
    LeaseLost,
    acquire,
    read,
    release,
    renew,
    renewal_budget,
)
from .s3 import S3Failure, S3Settings

# Annotations only: typing would add to the keeper's RSS.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

EXIT_USAGE = 64


def container_id() -> str:
    """This container's id (from the engine's bind mounts), else the hostname."""
    try:
        with open("/proc/self/mountinfo") as f:
            m = re.search(r"/containers/([0-9a-f]{64})/", f.read())
        if m:
            return m.group(1)
    except OSError:
        pass
    return socket.gethostname()


def _log(msg: str) -> None:
    sys.stderr.write(f"litefleet-lease: {msg}\n")
    sys.stderr.flush()


class Keeper:
    """Holds the lease while a child process group (restore, then Litestream) runs."""

    def __init__(
        self,
        s3: S3Settings,
        tenant: str,
        holder: Holder,
        ttl: float = TTL_S,
        renew_every: float = RENEW_S,
        wait_s: float = TTL_S + RENEW_S,
        log: Callable[[str], None] = _log,
    ) -> None:
        self.s3, self.tenant, self.holder = s3, tenant, holder
        self.ttl, self.renew_every, self.wait_s, self.log = ttl, renew_every, wait_s, log
        self.child: int | None = None
        self._pending: list[int] = []

    def acquire(self) -> Lease:
        """Take the lease. Retries while object storage does not answer, and waits (up to
        ``wait_s``) for another holder's lease to lapse: a crashed holder stops renewing, so a
        replacement container starts once its TTL has run out; a live one keeps it."""
        deadline = time.monotonic() + self.wait_s
        said = ""
        while True:
            try:
                return acquire(self.s3, self.tenant, self.holder, self.ttl)
            except (S3Failure, LeaseHeld) as exc:
                if time.monotonic() >= deadline:
                    raise
                why = f"waiting: {exc}" if isinstance(exc, LeaseHeld) else f"retrying: {exc}"
                if why.split(" (")[0] != said:  # once per situation, not every second
                    self.log(why)
                    said = why.split(" (")[0]
                time.sleep(1.0)

    def check_store(self) -> str | None:
        """Why the store cannot hold the lease (it ignores conditional writes), or None.
        Retries while object storage does not answer, as ``acquire`` does."""
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                return conditional.problem(self.s3, conditional_check_key(self.tenant))
            except S3Failure as exc:
                if time.monotonic() >= deadline:
                    return f"cannot check the object store: {exc}"
                time.sleep(1.0)

    def run(self, child: Callable[[], int]) -> int:
        """Hold the lease while ``child()`` runs in a forked process (its own process group;
        it execs, or returns an exit status); that status, EXIT_LEASE, or EXIT_UNSAFE_STORE
        when the store does not honour the conditional writes the lease relies on."""
        unsafe = self.check_store()
        if unsafe is not None:
            self.log(f"not starting: {unsafe}")
            return EXIT_UNSAFE_STORE
        try:
            lease = self.acquire()
        except LeaseHeld as exc:
            self.log(f"not starting: {exc} (stop it there, or take over with --force-takeover)")
            return EXIT_LEASE
        except S3Failure as exc:
            self.log(f"not starting: cannot take the lease: {exc}")
            return EXIT_LEASE
        self.log(f"lease of {self.tenant} taken: generation {lease.generation}, ttl {self.ttl:g}s")
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        # Own process group: on a lost lease the whole group (restore or Litestream and the
        # runtime it runs) is killed at once.
        self.child = self._spawn(child)
        for pending in self._pending:
            os.kill(self.child, pending)
        held = self._renew_until_exit(lease)
        if held is None:
            return EXIT_LEASE
        lease, rc = held
        self._release(lease)
        return rc

    def _renew_until_exit(self, lease: Lease) -> tuple[Lease, int] | None:
        """Renew until the child exits: (the lease, its exit status); None when the lease
        was lost or could not be renewed in time (the child group is killed then)."""
        next_renew = time.monotonic() + self.renew_every
        while True:
            rc = self._reap()
            if rc is not None:
                return lease, rc
            if time.monotonic() < next_renew:
                time.sleep(0.25)  # reaps the child within 0.25 s; ~no idle CPU
                continue
            # Fence before the lease can lapse, counting the worst case of the attempt we
            # are about to make: a successor may take the lease the moment it expires.
            attempt_s, margin_s = renewal_budget(self.ttl)
            if time.time() + attempt_s + margin_s >= lease.expires_at:
                self._fence("cannot renew the lease before it expires")
                return None
            try:
                lease = renew(self.s3, lease, self.ttl)
                next_renew = time.monotonic() + self.renew_every
            except LeaseLost:
                now_lease = _safe_read(self.s3, self.tenant)
                self._fence(f"lease taken over ({now_lease.describe() if now_lease else 'gone'})")
                return None
            except S3Failure as exc:
                # The check above fences before the next attempt if it could end too late.
                self.log(f"renewal failed, retrying: {exc}")
                next_renew = time.monotonic() + 1.0

    def _release(self, lease: Lease) -> None:
        """The child ended (after Litestream's final sync on a clean stop): hand it back."""
        try:
            if release(self.s3, lease):
                self.log(f"lease of {self.tenant} released")
            else:
                self.log("lease was no longer ours at exit")
        except S3Failure as exc:
            self.log(f"could not release the lease (it expires in {self.ttl:g}s): {exc}")

    def _spawn(self, child: Callable[[], int]) -> int:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 127
            try:
                os.setpgid(0, 0)
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_DFL)
                code = child()
            finally:
                sys.stderr.flush()
                os._exit(code)
        with contextlib.suppress(OSError):  # the child already did it (or exec'd)
            os.setpgid(pid, pid)
        return pid

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.child is None:
            self._pending.append(signum)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child, signum)  # Litestream forwards it to the runtime

    def _reap(self) -> int | None:
        assert self.child is not None
        pid, status = os.waitpid(self.child, os.WNOHANG)
        if pid == 0:
            return None
        code = os.waitstatus_to_exitcode(status)
        return 128 - code if code < 0 else code  # killed by a signal: the shell's 128+N

    def _fence(self, why: str) -> None:
        assert self.child is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.child, signal.SIGKILL)
        os.waitpid(self.child, 0)
        self.log(f"{why}: stopped replication without a final sync")


def _safe_read(s3: S3Settings, tenant: str) -> Lease | None:
    try:
        return read(s3, tenant)
    except S3Failure:
        return None


def from_env(env: dict[str, str]) -> Keeper:
    """The keeper of the container's tenant; KeyError names a missing variable."""
    holder = Holder(host=env.get(ENV_HOST) or "unknown", container=container_id())
    return Keeper(
        S3Settings.from_env(env),
        env[ENV_TENANT],
        holder,
        ttl=float(env.get(ENV_LEASE_TTL) or TTL_S),
        renew_every=float(env.get(ENV_LEASE_RENEW) or RENEW_S),
        wait_s=float(env.get(ENV_LEASE_WAIT) or TTL_S + RENEW_S),
    )


def main(argv: list[str]) -> int:
    """``hold -- CMD [ARGS...]``: CMD under the lease of the tenant in the environment."""
    if len(argv) < 3 or argv[0] != "hold" or argv[1] != "--":
        _log("usage: python3 -I -m fleet.supervisor hold -- CMD [ARGS...]")
        return EXIT_USAGE
    command = argv[2:]

    def run_command() -> int:
        os.execvp(command[0], command)

    return _keep(run_command)


def keep_tenant() -> int:
    """The tenant container's keeper: under the lease, the forked child prepares the
    database and becomes Litestream (entrypoint.replicate; imported there, not here)."""

    def replicate() -> int:
        from .entrypoint import replicate

        return replicate(dict(os.environ))

    return _keep(replicate)


def _keep(child: Callable[[], int]) -> int:
    try:
        keeper = from_env(dict(os.environ))
    except KeyError as exc:
        _log(f"{exc.args[0]} is not set")
        return EXIT_USAGE
    return keeper.run(child)
