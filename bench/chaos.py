"""`make chaos`: faults against tenants under a steady load of runs, and what each one costs.

    python bench/chaos.py [--tenants 3] [--long-partition] [--only FAULT,...] [--json PATH]

A few tenants (the tenant image, created exactly as the fleet creates them) each get a new
run every 0.5 s (3 steps of 0.3 s of work each with a durable pause of 0.2 s between them,
bench/_chaos_app.py). Faults, one after another,
each followed by its recovery and a few quiet seconds:

- ``partition-60s`` (and ``partition-300s`` with ``--long-partition``): every packet from the
  tenants to the object store dropped (one iptables rule on the store's bridge and port);
- ``kill-keeper``, ``kill-runtime``, ``kill-litestream``, ``kill-runner``: kill -9 of one
  process of a tenant (the four kinds `docker top` shows in a tenant);
- ``docker-kill``: the engine's manual stop, then a start 2 s later (what ``fleet up`` does);
- ``full-volume``: a tenant's volume (a 32 MiB tmpfs) filled for 20 s, then freed;
- ``engine-restart``: a second engine of the bench's own stopped as a shutdown does and
  started again, with 2 tenants of its own under the same load.

Per fault it prints: requests failed (of the tenants hit, from the fault until the slowest
accepts runs again), time to recover (from the end of the fault, or the fault itself when it
is an instant, to the first run accepted by the slowest tenant hit), acknowledged runs lost
(answered 201, then not completed or missing from a plain restore of the replica: must be 0;
the exit status is 1 otherwise, or when a tenant does not come back), steps executed twice
(from a log each step appends to in the tenant's volume).

Everything stays on this machine and off what others use: the object store is a moto server
of its own (a host process on the tenants' bridge, never `litefleet-s3`), the engine restart
happens on a second dockerd of its own (tests/second_engine.py), and only its own containers,
volumes, firewall rule and engine are touched, all removed at the end (Ctrl-C included).
Needs root, the built images (`make images`) and ~4 minutes (~8 with ``--long-partition``).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _machine import describe  # noqa: E402

from fleet.core.names import image_ref  # noqa: E402
from tests.docker_fixtures import Tenant, litestream_restore, query, wait_healthy  # noqa: E402
from tests.healing_support import OwnStore, Tenants, cut_off, host_pids, own_store  # noqa: E402
from tests.second_engine import SecondEngine, running_engine  # noqa: E402

APP = str(HERE / "_chaos_app.py")
EVERY_S = 0.5  # one new run per tenant this often
QUIET_S = 5.0  # after each recovery, before the next fault
RECOVER_TIMEOUT_S = 180.0
AGENT = "10002:10002"  # the agent code's uid:gid in a tenant
ROLES = ("keeper", "runtime", "litestream", "runner")  # the process kinds of a tenant

# What a fault does: returns when it ended (an instant fault: when it happened) and a note.
Act = Callable[[], tuple[float, str]]


@dataclass
class Attempt:
    at: float  # when the answer (or the error) came
    ok: bool
    what: str  # the run id, or the status / error


class Load:
    """A new run every EVERY_S on one tenant; finds the tenant's port again after a restart
    (a restarted container gets a new published port)."""

    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant
        self.attempts: list[Attempt] = []
        self.acked: dict[str, float] = {}  # run id -> when the 201 came
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _client(self) -> httpx.Client | None:
        try:
            return self.tenant.http()
        except Exception:  # no port while it restarts, or its engine is down
            return None

    def _run(self) -> None:
        http = self._client()
        while not self._stop.wait(EVERY_S):
            if http is None:
                http = self._client()
            attempt = self._submit(http)
            self.attempts.append(attempt)
            if http is not None and not attempt.ok and not attempt.what.isdigit():
                http.close()
                http = None  # a connection error: the port may have moved
        if http is not None:
            http.close()

    def _submit(self, http: httpx.Client | None) -> Attempt:
        if http is None:
            return Attempt(time.time(), False, "no port")
        body = {"workflow": "work", "input": {"tag": uuid.uuid4().hex[:12]}}
        try:
            r = http.post("/v1/runs", json=body, timeout=5)
        except httpx.HTTPError as exc:
            return Attempt(time.time(), False, type(exc).__name__)
        if r.status_code != 201:
            return Attempt(time.time(), False, str(r.status_code))
        run_id = str(r.json()["id"])
        self.acked[run_id] = time.time()
        return Attempt(self.acked[run_id], True, run_id)

    def first_ok_after(self, t: float) -> float | None:
        return next((a.at for a in list(self.attempts) if a.ok and a.at >= t), None)

    def between(self, t0: float, t1: float) -> list[Attempt]:
        return [a for a in list(self.attempts) if t0 <= a.at <= t1]


@dataclass
class Outcome:
    fault: str
    tenants_hit: int
    started: float = 0.0
    ended: float = 0.0  # every tenant hit accepting runs again (or gave up waiting)
    hit: list[str] = field(default_factory=list)  # tenant names
    requests: int = 0
    failed: int = 0
    first_failure_s: float | None = None  # from the fault's start to the first request failed
    failures: dict[str, int] = field(default_factory=dict)  # status or error -> count
    recover_s: float | None = None  # None: not recovered within RECOVER_TIMEOUT_S
    runs_lost: int = 0
    steps_twice: int = 0
    note: str = ""


def executions(tenant: Tenant) -> collections.Counter[str]:
    """How often each step ran, from the log the app appends to in the volume."""
    for _ in range(10):  # the engine's API may drop a connection once after its restart
        try:
            code, out = tenant.container.exec_run(["cat", "/data/executions.log"], user=AGENT)
        except Exception:
            time.sleep(1)
            continue
        return collections.Counter(out.decode().splitlines() if code == 0 else [])
    raise RuntimeError(f"cannot read the executions of {tenant.name}")


def twice(counts: collections.Counter[str]) -> int:
    return sum(n - 1 for n in counts.values() if n > 1)


class Bench:
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.acked = 0  # runs acknowledged, all tenants
        self.steps_twice_total = 0  # from every tenant's whole log, faults or not
        self.recorded_twice = 0  # step completions in the histories more than once: must be 0

    def fault(self, name: str, hit: list[Load], act: Act) -> Outcome:
        """Run ``act``, wait until every tenant hit accepts runs again, and account for it."""
        print(f"-- {name}", flush=True)
        before = [twice(executions(load.tenant)) for load in hit]
        started = time.time()
        ended, note = act()
        recovered = self._recovered(hit, ended)
        time.sleep(QUIET_S)
        out = Outcome(name, len(hit), started, recovered or time.time(), note=note)
        out.hit = [load.tenant.name for load in hit]
        for load, dup_before in zip(hit, before, strict=True):
            attempts = load.between(started, out.ended)
            out.requests += len(attempts)
            for a in attempts:
                if not a.ok:
                    out.failed += 1
                    out.failures[a.what] = out.failures.get(a.what, 0) + 1
                    first = round(a.at - started, 1)
                    if out.first_failure_s is None or first < out.first_failure_s:
                        out.first_failure_s = first
            out.steps_twice += twice(executions(load.tenant)) - dup_before
        if recovered is None:
            out.note = f"{note}; NOT RECOVERED within {RECOVER_TIMEOUT_S:g} s".lstrip("; ")
        else:
            out.recover_s = round(recovered - ended, 1)
        self.outcomes.append(out)
        print(f"   {json.dumps(asdict(out))}", flush=True)
        return out

    @staticmethod
    def _recovered(hit: list[Load], since: float) -> float | None:
        deadline = time.time() + RECOVER_TIMEOUT_S
        while time.time() < deadline:
            firsts = [load.first_ok_after(since) for load in hit]
            if all(f is not None for f in firsts):
                return max(f for f in firsts if f is not None)
            time.sleep(0.2)
        return None


# -- the faults


def partition(store: OwnStore, seconds: float) -> Act:
    def act() -> tuple[float, str]:
        with cut_off(store):
            time.sleep(seconds)
        return time.time(), f"store unreachable for {seconds:g} s"

    return act


def restarts(container: Any) -> int:
    container.reload()
    return int(container.attrs["RestartCount"])


def kill(load: Load, role: str) -> Act:
    """kill -9 of one process; the note says what came back how (the container restarted by
    the engine, or the process in place, or nothing)."""

    def act() -> tuple[float, str]:
        c = load.tenant.container
        pids, count = host_pids(c), restarts(c)
        os.kill(pids[role], signal.SIGKILL)
        at = time.time()
        deadline = at + 15  # a restart comes within a second or two (backoff from 0.1 s)
        while time.time() < deadline:
            time.sleep(0.2)
            with contextlib.suppress(Exception):  # between two containers' lives
                if restarts(c) > count:
                    return at, f"container restarted by the engine after {time.time() - at:.1f} s"
                now = host_pids(c).get(role)
                if now not in (None, pids[role]):
                    return at, f"{role} restarted in place after {time.time() - at:.1f} s"
        return at, f"{role} not restarted (15 s), the container kept running"

    return act


def docker_kill(load: Load) -> Act:
    def act() -> tuple[float, str]:
        load.tenant.container.kill()
        time.sleep(2)  # stays down: a manual stop cancels the restart policy
        load.tenant.container.reload()
        status = load.tenant.container.status
        load.tenant.container.start()  # what `fleet up` of a stopped tenant does
        return time.time(), f"{status} 2 s after the kill, then started (recover: from the start)"

    return act


def full_volume(load: Load, seconds: float = 20.0) -> Act:
    def act() -> tuple[float, str]:
        c = load.tenant.container
        _, out = c.exec_run(["sh", "-c", "dd if=/dev/zero of=/data/filler bs=64k 2>&1; sync"],
                            user=AGENT)  # fmt: skip
        if b"No space left" not in out:
            raise RuntimeError(f"the volume did not fill: {out.decode(errors='replace')}")
        time.sleep(seconds)
        code, out = c.exec_run(["rm", "-f", "/data/filler"], user=AGENT)
        if code != 0:
            raise RuntimeError(out.decode(errors="replace"))
        return time.time(), f"volume full for {seconds:g} s (recover: from freeing it)"

    return act


def engine_restart(engine: SecondEngine) -> Act:
    def act() -> tuple[float, str]:
        at = time.time()
        engine.restart()
        return at, f"engine stopped and answering again after {time.time() - at:.1f} s"

    return act


# -- the tenants


def tmpfs_volume(client: Any, tenants: Tenants) -> str:
    """A 32 MiB volume in memory, so that filling it costs no disk (removed by ``tenants``).

    The local driver mounts a tmpfs volume while a container uses it and drops its content
    when the last one stops: a holder container keeps it mounted from before the app file is
    put in until the end (else the app would be gone by the tenant's start)."""
    name = f"litefleet-chaos-full-{uuid.uuid4().hex[:8]}"
    tenants.volumes.add(name)
    opts = {"type": "tmpfs", "device": "tmpfs", "o": "size=32m,uid=10001,gid=10002,mode=3770"}
    client.volumes.create(name, driver="local", driver_opts=opts, labels={"litefleet.test": "true"})
    holder = client.containers.create(
        tenants.image,
        entrypoint=["sleep", "infinity"],
        name=f"{name}-holder",
        user="10001:10002",
        network_mode="none",
        read_only=True,
        volumes={name: {"bind": "/data", "mode": "rw"}},
        labels={"litefleet.test": "true"},
    )
    tenants.containers.append(holder)
    holder.start()
    return name


def start(tenants: Tenants, n: int, **kw: Any) -> list[Load]:
    made = [tenants.create(APP, **kw) for _ in range(n)]
    for t in made:
        t.container.start()
    for t in made:
        wait_healthy(t, timeout=120)
    return [Load(t) for t in made]


@contextlib.contextmanager
def second_engine(image: str) -> Iterator[SecondEngine]:
    """A second dockerd of the bench's own, with the tenant image; stopped and removed at
    the end (tests/second_engine.py)."""
    with running_engine() as e:
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        subprocess.run(["docker", "-H", e.url, "load", "-q"], stdin=save.stdout, check=True,
                       capture_output=True)  # fmt: skip
        if save.wait(120) != 0:
            raise RuntimeError(f"docker save {image} failed")
        yield e


# -- at the end: every acknowledged run completed and replicated


def unfinished(load: Load) -> set[str]:
    """Acknowledged runs that are not completed (after waiting for them)."""
    pending = set(load.acked)
    deadline = time.time() + RECOVER_TIMEOUT_S
    with load.tenant.http() as http:
        while pending and time.time() < deadline:
            for run_id in list(pending):
                with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                    r = http.get(f"/v1/runs/{run_id}")
                    if r.status_code == 200 and r.json()["status"] == "completed":
                        pending.discard(run_id)
            if pending:
                time.sleep(1)
    return pending


def recorded_twice(load: Load) -> int:
    """Steps of acknowledged runs whose completion the history holds more than once (a step
    that ran twice because it was in flight at a crash is recorded once: this must be 0)."""
    extra = 0
    with load.tenant.http() as http:
        for run_id in load.acked:
            events = http.get(f"/v1/runs/{run_id}/events").raise_for_status().json()["events"]
            done = [e["position"] for e in events if e["kind"] == "step_completed"]
            extra += len(done) - len(set(done))
    return extra


def not_replicated(load: Load, store: OwnStore, workdir: Path) -> set[str]:
    """Acknowledged runs missing (or not completed) in a plain restore of the replica."""
    acked, have = set(load.acked), set[str]()
    out = workdir / f"{load.tenant.name}.db"
    deadline = time.time() + 60
    while time.time() < deadline:
        if litestream_restore(cast(Any, store), load.tenant.name, out).returncode == 0:
            with contextlib.suppress(Exception):  # still the empty database
                have = {r[0] for r in query(out, "SELECT id FROM runs WHERE status = 'completed'")}
            if acked <= have:
                break
        time.sleep(2)
    return acked - have


def charge_losses(bench: Bench, load: Load, lost: set[str]) -> int:
    """Each lost run goes to the first fault on its tenant that ended after it was acked;
    the count of those no fault explains."""
    unexplained = 0
    for run_id in lost:
        at = load.acked[run_id]
        out = next((o for o in bench.outcomes if load.tenant.name in o.hit and o.ended >= at), None)
        if out is None:
            unexplained += 1
        else:
            out.runs_lost += 1
    return unexplained


def settle(bench: Bench, loads: list[Load], store: OwnStore, workdir: Path) -> int:
    """Stop the load, check every acknowledged run; the lost runs no fault explains."""
    for load in loads:
        load.stop()
    unexplained = 0
    for load in loads:
        lost = unfinished(load) | not_replicated(load, store, workdir)
        for run_id in sorted(lost):
            print(f"   LOST {load.tenant.name} {run_id}", flush=True)
        unexplained += charge_losses(bench, load, lost)
        bench.acked += len(load.acked)
        bench.steps_twice_total += twice(executions(load.tenant))
        bench.recorded_twice += recorded_twice(load)
    return unexplained


# -- the run


def plan(args: argparse.Namespace, store: OwnStore, loads: list[Load], full: Load) -> list[Any]:
    """(name, tenants hit, act) in the order they run."""
    everyone = [*loads, full]
    faults: list[Any] = [("partition-60s", everyone, partition(store, 60))]
    if args.long_partition:
        faults.append(("partition-300s", everyone, partition(store, 300)))
    for i, role in enumerate(ROLES):
        victim = loads[i % len(loads)]
        faults.append((f"kill-{role}", [victim], kill(victim, role)))
    faults.append(("docker-kill", [loads[0]], docker_kill(loads[0])))
    faults.append(("full-volume", [full], full_volume(full)))
    return [f for f in faults if not args.only or f[0] in args.only]


def on_this_engine(args: argparse.Namespace, bench: Bench, store: OwnStore, workdir: Path) -> int:
    import docker

    client = docker.from_env(timeout=120)
    tenants = Tenants(client, image_ref("tenant"), store.for_tenants)
    try:
        loads = start(tenants, args.tenants)
        (full,) = start(tenants, 1, volume=tmpfs_volume(client, tenants))
        time.sleep(QUIET_S)
        for name, hit, act in plan(args, store, loads, full):
            bench.fault(name, hit, act)
        return settle(bench, [*loads, full], store, workdir)
    finally:
        tenants.cleanup()
        client.close()


def on_second_engine(bench: Bench, store: OwnStore, workdir: Path) -> int:
    import docker

    with second_engine(image_ref("tenant")) as engine:
        client = docker.DockerClient(engine.url, timeout=60)
        tenants = Tenants(client, image_ref("tenant"), store.for_tenants)
        try:
            loads = start(tenants, 2)
            time.sleep(QUIET_S)
            bench.fault("engine-restart", loads, engine_restart(engine))
            return settle(bench, loads, store, workdir)
        finally:
            tenants.cleanup()
            client.close()


def report(bench: Bench, seconds: float) -> None:
    print()
    print(f"{'fault':<15} {'hit':>3} {'requests failed':>15} {'1st fail s':>10} "
          f"{'recover s':>9} {'runs lost':>9} {'steps twice':>11}  failures; note")  # fmt: skip
    for o in bench.outcomes:
        failed = f"{o.failed}/{o.requests}"
        why = ", ".join(f"{k} x{v}" for k, v in sorted(o.failures.items())) or "-"
        first, recover = str(o.first_failure_s), str(o.recover_s)
        print(f"{o.fault:<15} {o.tenants_hit:>3} {failed:>15} {first:>10} {recover:>9} "
              f"{o.runs_lost:>9} {o.steps_twice:>11}  {why}; {o.note}")  # fmt: skip
    print(f"\n{bench.acked} runs acknowledged in all, {bench.steps_twice_total} steps executed "
          f"twice in all, {bench.recorded_twice} recorded twice, {seconds:.0f} s")  # fmt: skip


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--tenants", type=int, default=3, help="tenants under load (default 3)")
    p.add_argument("--long-partition", action="store_true", help="also a 5-minute partition")
    p.add_argument("--only", type=lambda s: set(s.split(",")), default=None,
                   help="comma-separated fault names")  # fmt: skip
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return p.parse_args()


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # a SIGTERM cleans up as Ctrl-C does (the `finally` blocks)


def main() -> int:
    args = arguments()
    if os.geteuid() != 0:
        print("chaos: needs root (iptables, a second dockerd)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, _interrupted)  # also when started with SIGINT ignored (`&`)
    t0, bench = time.time(), Bench()
    workdir = Path(f"/tmp/lf-chaos-{uuid.uuid4().hex[:6]}")
    workdir.mkdir()
    import docker

    try:
        with own_store(docker.from_env(timeout=120), bucket="chaos") as store:
            unexplained = 0
            if not args.only or args.only - {"engine-restart"}:
                unexplained += on_this_engine(args, bench, store, workdir)
            if not args.only or "engine-restart" in args.only:
                unexplained += on_second_engine(bench, store, workdir)
        report(bench, time.time() - t0)
        if args.json:
            outcomes = [asdict(o) for o in bench.outcomes]
            doc = {
                "machine": describe(workdir, HERE.parent),
                "outcomes": outcomes,
                "acked": bench.acked,
                "steps_twice_total": bench.steps_twice_total,
                "recorded_twice": bench.recorded_twice,
            }
            args.json.write_text(json.dumps(doc, indent=2))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    lost = sum(o.runs_lost for o in bench.outcomes) + unexplained
    stuck = [o.fault for o in bench.outcomes if o.recover_s is None]
    if lost or stuck or bench.recorded_twice:
        print(f"chaos: {lost} acknowledged runs lost, {bench.recorded_twice} steps recorded "
              f"twice; not recovered: {', '.join(stuck) or 'none'}")  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the `finally` blocks have removed what it made
        print("chaos: interrupted; its tenants, store, firewall rule and engine are removed",
              file=sys.stderr)  # fmt: skip
        sys.exit(130)
