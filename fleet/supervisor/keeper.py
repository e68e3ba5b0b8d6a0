"""The keeper: PID 1 of a SQLite tenant's container, as SUPERVISOR_UID. It holds the tenant's
lease and runs the tenant's processes by it.

1. Take the lease (lease.Contender: another holder's only after seeing it unchanged for a
   full ttl). While object storage does not answer it keeps trying, as long as it takes; a
   holder that stays live for LITEFLEET_LEASE_WAIT means the tenant runs elsewhere: stay down.
2. Start the replicator (children.Replicator: prepare the volume, then Litestream). Once the
   database is ready, write the lease-gate file (lease_gate.py) and tell the runner to start
   the runtime.
3. Renew every RENEW_S. Each success moves the deadline (``Held.valid_until``: the send time
   of the renewal plus the ttl, minus a margin) and is written to the gate file, which the
   runtime obeys on its own monotonic clock. A renewal that fails is retried every second;
   before an attempt that could end past the deadline, and at the deadline at the latest,
   the keeper *pauses* Litestream (SIGSTOP) and marks the gate unconfirmed: from then on
   nothing of this tenant writes to the replica and the runtime executes no step (it answers
   writes 503, reads as usual). When a renewal succeeds again the lease is still ours (it is
   a conditional write): Litestream resumes (SIGCONT) and catches up, the gate says held, runs
   continue. The container never exits for an unreachable store.
4. A renewal answered 412: the lease was taken over. Litestream is killed without a final
   sync, the runtime stopped, the volume set aside, and the container stops for good.
5. SIGUSR1 (`fleet down`) or SIGTERM (the engine): the runtime drains, Litestream does its
   final sync (only while the lease is confirmed: otherwise it is killed and the log says
   "shutdown sync skipped"), the lease is released; exit 0 or 143 (supervisor/exits.py).
6. A child that dies: Litestream is restarted in place with backoff (the runtime keeps
   running); the runtime (through the runner, which the keeper cannot restart: another uid)
   ends the container after Litestream's final sync, and the engine restarts it. Crashes
   count towards the restart bound (restarts.py). Orphans of agent code are reaped here.

The loop sleeps in one ``select`` until the next renewal, deadline or signal: no polling.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import sys
import time

from . import conditional, exits
from .children import AppLink, Replicator
from .layout import (
    ENV_HOST,
    ENV_LEASE_RENEW,
    ENV_LEASE_TTL,
    ENV_LEASE_WAIT,
    ENV_TENANT,
    LITESTREAM_ATTACH_S,
    conditional_check_key,
)
from .lease import (
    RENEW_S,
    TTL_S,
    Contender,
    Held,
    Holder,
    LeaseHeld,
    LeaseLost,
    release,
    renew,
    renewal_budget,
)
from .lease_gate import GateFile
from .report import StateFile
from .s3 import S3Failure, S3Settings

# Annotations only: typing would add to the keeper's RSS.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .restarts import RestartRecord

RETRY_S = 1.0  # between failed renewals
SAY_AGAIN_S = 30.0  # a failure that goes on is logged again this often
MAX_BACKOFF_S = 30.0  # between restarts of a crashed Litestream


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
    sys.stderr.write(f"litefleet-supervisor: {msg}\n")
    sys.stderr.flush()


class Keeper:
    """Holds the lease while the replicator (and, in a tenant, the runtime) run."""

    def __init__(
        self,
        s3: S3Settings,
        tenant: str,
        holder: Holder,
        replicator: Replicator,
        app: AppLink | None = None,
        *,
        gate: GateFile | None = None,
        state: StateFile | None = None,
        record: RestartRecord | None = None,
        set_aside: Callable[[], str] | None = None,
        ttl: float = TTL_S,
        renew_every: float = RENEW_S,
        wait_s: float = TTL_S + RENEW_S,
        log: Callable[[str], None] = _log,
    ) -> None:
        self.s3, self.tenant, self.holder = s3, tenant, holder
        self.replicator, self.app, self.set_aside = replicator, app, set_aside
        self.gate, self.state = gate or GateFile(None), state or StateFile(None)
        self.record = record
        self.ttl, self.renew_every, self.wait_s, self.log = ttl, renew_every, wait_s, log
        self.held: Held | None = None
        self.confirmed = False
        self.next_renew = 0.0
        self.requested: int | None = None  # exits.DOWN or ENGINE_STOP, from a signal
        self.stopping = False
        self.sync_asked = False  # SIGTERM sent to the replicator (its final sync)
        self.synced = False  # the replicator ended after a final sync
        self.down_why: str | None = None  # stay down: why (lease lost, gave up)
        self.lost = False
        self.app_deaf = False  # the runtime could not be told to stop: its gate closes instead
        self.attached_at = 0.0  # when Litestream, (re)started, has attached the database
        self.crash_why: str | None = None
        self.restart_at: float | None = None
        self.crashes = 0
        self.failing_since: float | None = None
        self.said_at = 0.0
        self.ooms = exits.oom_kills()
        self.wakeup_r = -1

    # -- signals and waiting

    def _install_signals(self) -> None:
        self.wakeup_r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGCHLD):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if signum == signal.SIGUSR1:
            self.requested = exits.DOWN  # sticky: a SIGTERM after it (the stop) keeps it
        elif signum in (signal.SIGTERM, signal.SIGINT) and self.requested is None:
            self.requested = exits.ENGINE_STOP

    def _wait(self, timeout: float) -> None:
        fds = [self.wakeup_r]
        if self.replicator.ready_fd is not None:
            fds.append(self.replicator.ready_fd)
        ready = select.select(fds, [], [], max(0.0, timeout))[0]
        if self.wakeup_r in ready:
            os.read(self.wakeup_r, 512)
        if self.replicator.ready_fd in ready:
            self.replicator.on_ready_fd()
            if self.replicator.ready:
                self._ready()

    # -- the phases

    def run(self) -> int:
        self._install_signals()
        give_up = self.record.begin() if self.record else None
        self._report_restarts()
        if give_up is not None:
            return self._finish_down(give_up)
        unsafe = self._check_store()
        if unsafe is not None:  # retrying cannot help: stay down, saying why
            return self._finish_down(f"not starting: {unsafe}")
        held = self._acquire()
        if held is None:
            return self._finish()
        self.held, self.confirmed = held, True
        self.next_renew = time.monotonic() + self.renew_every
        self.state.lease("held", f"generation {held.lease.generation}")
        self.replicator.start()
        if self.replicator.ready:
            self._ready()
        while True:
            self._reap()
            self._tick()
            if self._done():
                return self._finish()
            self._wait(self._timeout())

    def _check_store(self) -> str | None:
        """Why the store cannot hold the lease (it ignores conditional writes), or None;
        retries while it does not answer, up to ``wait_s``."""
        deadline = time.monotonic() + self.wait_s
        while self.requested is None:
            try:
                return conditional.problem(self.s3, conditional_check_key(self.tenant))
            except S3Failure as exc:
                if time.monotonic() >= deadline:
                    return f"cannot check the object store: {exc}"
                self._wait(RETRY_S)
        return None

    def _acquire(self) -> Held | None:
        """The lease, or None (asked to stop, or live elsewhere: ``down_why`` set)."""
        contender = Contender(self.s3, self.tenant, self.holder, self.ttl)
        held_since: float | None = None
        said = ""
        while self.requested is None:
            try:
                held = contender.try_take()
                self.state.store_answered()
                self.log(
                    f"lease of {self.tenant} taken: generation {held.lease.generation}, "
                    f"ttl {self.ttl:g}s"
                )
                return held
            except LeaseHeld as exc:
                self.state.store_answered()
                held_since = held_since or time.monotonic()
                if time.monotonic() - held_since >= self.wait_s:
                    self.down_why = f"the tenant is live elsewhere: {exc}"
                    return None
                why = f"waiting: {exc}"
            except S3Failure as exc:
                self.state.store_failed(str(exc))
                why = f"object storage does not answer, retrying: {exc}"
            if why.split(" (")[0] != said:  # once per situation, not every second
                self.log(why)
                said = why.split(" (")[0]
            self._wait(RETRY_S)
        return None

    def _tick(self) -> None:
        if self.requested is not None and not self.stopping:
            self._begin_stop()
        now = time.monotonic()
        if self.held is not None and now >= self.next_renew:
            self._renew(now)
        if self.held is not None and self.confirmed and time.monotonic() >= self.held.valid_until:
            self._unconfirm()
        if self.restart_at is not None and self.confirmed and time.monotonic() >= self.restart_at:
            self._restart_replicator()
        if self.stopping:
            self._advance_stop()

    def _timeout(self) -> float:
        now = time.monotonic()
        due = [now + 3600.0]
        if self.held is not None:
            due += [self.next_renew, self.held.valid_until if self.confirmed else due[0]]
        if self.restart_at is not None and self.confirmed:
            due.append(self.restart_at)
        if self.app_deaf:
            due.append(self.gate.valid_until)
        if self.stopping and not self.sync_asked:
            due.append(self.attached_at)
        return min(due) - now

    def _done(self) -> bool:
        return self.stopping and self._app_settled() and self.replicator.pid is None

    def _app_settled(self) -> bool:
        """The runtime exited, or (deaf to its stop request) commits nothing any more: the
        last deadline its gate was given has passed."""
        if self.app is None or self.app.pid is None:
            return True
        return self.app_deaf and time.monotonic() >= self.gate.valid_until

    # -- the lease

    def _renew(self, now: float) -> None:
        assert self.held is not None
        if self.confirmed and self.held.valid_until - now <= renewal_budget(self.ttl):
            self._unconfirm()  # this attempt could end after the deadline: pause first
        try:
            self.held = renew(self.s3, self.held)
        except LeaseLost:
            self._lost()
            return
        except S3Failure as exc:
            self._renewal_failed(now, str(exc))
            return
        self.next_renew = time.monotonic() + self.renew_every
        if self.failing_since is not None:
            self.log(f"object storage answers again after {now - self.failing_since:.0f}s")
            self.failing_since = None
        self.state.store_answered()
        self._confirm()

    def _renewal_failed(self, now: float, error: str) -> None:
        self.next_renew = now + RETRY_S
        self.state.store_failed(error)
        if self.failing_since is None:
            self.failing_since = now
            self.log(f"renewal failed, retrying every {RETRY_S:g}s: {error}")
            self.said_at = now
        elif now - self.said_at >= SAY_AGAIN_S:
            self.log(f"renewal still failing after {now - self.failing_since:.0f}s: {error}")
            self.said_at = now

    def _confirm(self) -> None:
        if not self.confirmed:
            self.confirmed = True
            self.replicator.resume()
            self.log("lease confirmed again: replication resumed, steps run again")
        self.state.lease("held", "renewed")
        if self.replicator.ready:
            self.state.update(replication="running" if self.replicator.pid else "restarting")
            if not self.app_deaf:
                self.gate.held(self.held.valid_until if self.held else 0.0)

    def _unconfirm(self) -> None:
        """Cannot vouch for the lease any more: nothing of this tenant may write."""
        if not self.confirmed:
            return
        self.confirmed = False
        reason = f"cannot reach the object store: {self.state.data.get('store_error') or '?'}"
        self.replicator.pause()
        if self.sync_asked:  # its final sync cannot finish under the lease any more
            self.replicator.kill()
            self.log("shutdown sync skipped: the lease could not be confirmed in time")
        self.gate.unconfirmed(reason)
        self.state.lease("unconfirmed", reason)
        self.state.update(replication="paused")
        self.log(f"lease not confirmed ({reason}): replication paused, no step runs")

    def _lost(self) -> None:
        """Taken over: stop writing at once (no final sync), then stop for good."""
        self.replicator.kill()
        self.gate.unconfirmed("the lease was taken over")
        self.state.lease("lost", "taken over")
        self.held, self.confirmed, self.lost = None, False, True
        self.log("lease taken over: stopped replication without a final sync")
        self.down_why = "the lease was taken over by another container"
        self._begin_stop()

    # -- children

    def _ready(self) -> None:
        """The database is prepared and Litestream runs: the runtime may start."""
        self.attached_at = time.monotonic() + LITESTREAM_ATTACH_S
        self.state.update(replication="running")
        if self.held is not None and self.confirmed:
            self.gate.held(self.held.valid_until, "held")
            if self.app is not None and not self.stopping:
                self.app.start()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.replicator.pid:
                self._replicator_exited(status)
            elif self.app is not None and pid == self.app.pid:
                self._app_exited(status)
            # anything else: an orphan of agent code, reaped

    def _oom(self) -> bool:
        now = exits.oom_kills()
        oom = now is not None and self.ooms is not None and now > self.ooms
        self.ooms = now
        return oom

    def _replicator_exited(self, status: int) -> None:
        was_ready = self.replicator.ready
        self.replicator.exited()
        if self.stopping or self.lost:  # we stopped it
            self.synced = self.sync_asked and os.waitstatus_to_exitcode(status) == 0
            return
        what = "Litestream" if was_ready else "preparing the database"
        why = f"{what} ended ({exits.describe(status, self._oom())})"
        self.log(why)
        give_up = self.record.crashed(why) if self.record else None
        self._report_restarts()
        if give_up is not None:
            self.down_why = give_up
            self._begin_stop()
            return
        self.crashes += 1
        self.restart_at = time.monotonic() + min(MAX_BACKOFF_S, 2.0 ** (self.crashes - 1))
        self.state.update(replication="restarting")

    def _report_restarts(self) -> None:
        if self.record is not None:
            self.state.update(restarts=[list(c) for c in self.record.crashes])

    def _restart_replicator(self) -> None:
        if self.stopping or self.replicator.pid is not None:
            return
        self.restart_at = None
        self.log("restarting Litestream" if self.replicator.ready else "preparing again")
        self.replicator.start()
        if self.replicator.ready:
            self.attached_at = time.monotonic() + LITESTREAM_ATTACH_S
            self.state.update(replication="running")

    def _app_exited(self, status: int) -> None:
        assert self.app is not None
        self.app.exited()
        if self.stopping:
            return
        code = os.waitstatus_to_exitcode(status)
        what = exits.describe_code(code, self._oom())
        self.crash_why = f"the runtime {what}"
        self.log(f"{self.crash_why}: stopping the container (the engine restarts it)")
        self._begin_stop()

    # -- stopping

    def _begin_stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.restart_at = None
        # The runtime drains (or the runner, never started, just ends). If nobody reads the
        # request, the gate is left to lapse instead: then the runtime commits nothing more,
        # Litestream makes its final sync, and the runtime ends with the container.
        if self.app is not None and self.app.pid is not None and not self.app.stop():
            self.app_deaf = True
            self.gate.unconfirmed("the tenant is stopping")
            self.log("the runtime did not take its stop request: letting its lease gate lapse")
        self._advance_stop()

    def _advance_stop(self) -> None:
        if not self._app_settled():
            return  # still draining: Litestream keeps replicating what it commits
        if self.replicator.pid is None or self.sync_asked:
            return
        if self.confirmed and self.replicator.ready and not self.lost:
            if time.monotonic() < self.attached_at:
                return  # a stop right after a start: its final sync needs the database attached
            self.sync_asked = True
            self.replicator.terminate()  # the final sync, then it exits
        else:
            self.replicator.kill()
            if self.replicator.ready and not self.lost:
                self.log("shutdown sync skipped: the lease is not confirmed")

    def _finish(self) -> int:
        if self.held is not None and (self.synced or not self.replicator.ready):
            self._release()  # after a final sync, or when Litestream never ran
        if self.lost:
            aside = self.set_aside() if self.set_aside is not None else None
            where = f"; the volume's database is kept in {aside}" if aside else ""
            return self._finish_down(f"{self.down_why}{where}")
        if self.down_why is not None:
            return self._finish_down(self.down_why)
        if self.requested == exits.DOWN:
            return self._finish_down("on request (fleet down)")
        if self.crash_why is not None:
            if self.record is not None:
                self.record.exiting(self.crash_why)
            return exits.CRASHED
        if self.record is not None:
            self.record.ended(stayed_down=False)
        return self.requested if self.requested is not None else exits.CRASHED

    def _finish_down(self, why: str) -> int:
        if self.record is not None:
            self.record.ended(stayed_down=True)
        self.state.update(replication="stopped")
        self.log(f"{exits.STOPPED_PREFIX}{why}")
        return exits.DOWN

    def _release(self) -> None:
        assert self.held is not None
        try:
            if release(self.s3, self.held.lease):
                self.log(f"lease of {self.tenant} released")
            else:
                self.log("lease was no longer ours at exit")
        except S3Failure as exc:
            self.log(f"could not release the lease (it lapses in {self.ttl:g}s): {exc}")
        self.state.lease("released", "stopped")


def from_env(
    env: dict[str, str], replicator: Replicator, app: AppLink | None = None, **kw: Any
) -> Keeper:
    """The keeper of the container's tenant; KeyError names a missing variable."""
    holder = Holder(host=env.get(ENV_HOST) or "unknown", container=container_id())
    return Keeper(
        S3Settings.from_env(env),
        env[ENV_TENANT],
        holder,
        replicator,
        app,
        ttl=float(env.get(ENV_LEASE_TTL) or TTL_S),
        renew_every=float(env.get(ENV_LEASE_RENEW) or RENEW_S),
        wait_s=float(env.get(ENV_LEASE_WAIT) or TTL_S + RENEW_S),
        **kw,
    )
