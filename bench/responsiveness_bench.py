"""Does the runtime's API answer promptly whatever its workflows do? (issue 17)

One ``agent-runtime serve --app agent_runtime.examples`` on loopback (fresh SQLite file under
build/, synchronous=FULL). Two probes run in threads, each on its own keep-alive connection,
one request at a time with --interval between them: ``GET /healthz`` and ``POST /v1/runs``
(an ``echo`` run). Their latencies (p50/p99/max) are recorded while:

  hot     (a) one run executes --hot-steps no-op steps (``steps``, default 40,000)
  many    (b) --runs runs execute --steps no-op steps each (default 200 x 50), in rounds
              until --many-seconds of probing (a round is short)
  idle    (c) nothing runs

In (a) and (b) a companion run (``steps`` n=5) is submitted beside the busy runs (in (a) one
second into the hot run) and the time from its submission to its completion is reported,
with whether it completed before the hot run.

    python bench/responsiveness_bench.py [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import _machine  # noqa: E402
import _serve  # noqa: E402

TERMINAL = {"completed", "failed", "cancelled"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    p.add_argument("--hot-steps", type=int, help="steps of the hot run (default 40000)")
    p.add_argument("--runs", type=int, help="runs in (b) (default 200)")
    p.add_argument("--steps", type=int, help="steps per run in (b) (default 50)")
    p.add_argument("--many-seconds", type=float, help="probing time in (b) (default 10)")
    p.add_argument("--idle-seconds", type=float, help="probing time in (c) (default 5)")
    p.add_argument("--interval", type=float, default=0.005, help="pause between probes, s")
    p.add_argument("--dir", type=Path, help="where the database goes (default build/)")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    p.add_argument("--serve-arg", action="append", default=[], help="extra serve argument")
    args = p.parse_args(argv)
    defaults = {
        "hot_steps": 4000 if args.quick else 40_000,
        "runs": 20 if args.quick else 200,
        "steps": 10 if args.quick else 50,
        "many_seconds": 1.0 if args.quick else 10.0,
        "idle_seconds": 1.0 if args.quick else 5.0,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


class Probe(threading.Thread):
    """Sends one kind of request again and again until stopped; keeps the latencies."""

    def __init__(self, server: _serve.Server, kind: str, interval: float) -> None:
        super().__init__(name=f"probe-{kind}", daemon=True)
        self.kind, self.interval = kind, interval
        self.client = httpx.Client(
            base_url=server.url, headers=server.headers, timeout=120, trust_env=False
        )
        self.latencies: list[float] = []
        self.errors = 0
        self._halt = threading.Event()
        self._recording = threading.Event()

    def record(self, on: bool) -> None:
        (self._recording.set if on else self._recording.clear)()

    def take(self) -> tuple[list[float], int]:
        taken, errors = self.latencies, self.errors
        self.latencies, self.errors = [], 0
        return taken, errors

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.client.close()

    def _once(self) -> bool:
        if self.kind == "healthz":
            r = self.client.get("/healthz")
        else:
            r = self.client.post("/v1/runs", json={"workflow": "echo", "input": {"message": "p"}})
        return r.status_code < 300

    def run(self) -> None:
        while not self._halt.is_set():
            t0 = time.perf_counter()
            try:
                ok = self._once()
            except httpx.HTTPError:
                ok = False
            elapsed = time.perf_counter() - t0
            if self._recording.is_set():
                self.latencies.append(elapsed)
                self.errors += not ok
            self._halt.wait(self.interval)


def submit(client: httpx.Client, workflow: str, input: dict[str, Any]) -> str:
    r = client.post("/v1/runs", json={"workflow": workflow, "input": input})
    r.raise_for_status()
    return str(r.json()["id"])


def status(client: httpx.Client, run_id: str) -> str:
    return str(client.get(f"/v1/runs/{run_id}").json()["status"])


def wait_done(client: httpx.Client, run_id: str, poll: float, timeout: float = 900) -> float:
    """Wait until the run is terminal; returns when (perf_counter) it was seen so."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if status(client, run_id) in TERMINAL:
            return time.perf_counter()
        time.sleep(poll)
    raise RuntimeError(f"run {run_id} did not finish within {timeout:.0f} s")


def companion(server: _serve.Server) -> dict[str, Any]:
    """Submit a 5-step run and time it from submission to completion (5 ms polls)."""
    with httpx.Client(
        base_url=server.url, headers=server.headers, timeout=120, trust_env=False
    ) as c:
        t0 = time.perf_counter()
        run_id = submit(c, "steps", {"n": 5})
        done = wait_done(c, run_id, poll=0.005)
        return {"id": run_id, "seconds": done - t0, "done_at": done}


def scenario_hot(server: _serve.Server, probes: list[Probe], args: argparse.Namespace) -> Any:
    with httpx.Client(
        base_url=server.url, headers=server.headers, timeout=120, trust_env=False
    ) as c:
        t0 = time.perf_counter()
        hot = submit(c, "steps", {"n": args.hot_steps})
        for p in probes:
            p.record(True)
        time.sleep(1.0)
        with ThreadPoolExecutor(1) as pool:
            side = pool.submit(companion, server)
            hot_done = wait_done(c, hot, poll=0.05)
            side_result = side.result()
            side_id = side_result["id"]
        for p in probes:
            p.record(False)
        # Which finished first, by the server's own completion times.
        finished = {
            r: datetime.fromisoformat(c.get(f"/v1/runs/{r}").json()["updated_at"])
            for r in (hot, side_id)
        }
        return {
            "hot_run_s": hot_done - t0,
            "hot_steps_per_s": args.hot_steps / (hot_done - t0),
            "companion_s": side_result["seconds"],
            "companion_before_hot": finished[side_id] < finished[hot],
        }


def scenario_many(server: _serve.Server, probes: list[Probe], args: argparse.Namespace) -> Any:
    companions: list[float] = []
    rounds = 0
    with httpx.Client(
        base_url=server.url, headers=server.headers, timeout=120, trust_env=False
    ) as c:
        started = time.perf_counter()
        busy = 0.0
        while busy < args.many_seconds:
            rounds += 1
            t0 = time.perf_counter()
            for p in probes:
                p.record(True)
            ids = [submit(c, "steps", {"n": args.steps}) for _ in range(args.runs)]
            companions.append(companion(server)["seconds"])
            for run_id in ids:
                wait_done(c, run_id, poll=0.01)
            for p in probes:
                p.record(False)
            busy += time.perf_counter() - t0
        return {
            "rounds": rounds,
            "seconds": time.perf_counter() - started,
            "companion_s_median": statistics.median(companions),
            "companion_s_max": max(companions),
        }


def scenario_idle(server: _serve.Server, probes: list[Probe], args: argparse.Namespace) -> Any:
    for p in probes:
        p.record(True)
    time.sleep(args.idle_seconds)
    for p in probes:
        p.record(False)
    return {}


def latency_summary(values: list[float], errors: int) -> dict[str, Any]:
    ms = sorted(1000 * v for v in values)
    if not ms:
        return {"n": 0, "errors": errors}
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
    return {
        "n": len(ms),
        "errors": errors,
        "p50_ms": statistics.median(ms),
        "p99_ms": p99,
        "max_ms": ms[-1],
    }


SCENARIOS = [("hot", scenario_hot), ("many", scenario_many), ("idle", scenario_idle)]
LABELS = {
    "hot": "(a) 1 run x {hot_steps} steps",
    "many": "(b) {runs} runs x {steps} steps",
    "idle": "(c) idle",
}


def measure(server: _serve.Server, args: argparse.Namespace) -> dict[str, Any]:
    probes = [Probe(server, kind, args.interval) for kind in ("healthz", "post")]
    for p in probes:
        p.start()
    results: dict[str, Any] = {}
    try:
        for name, scenario in SCENARIOS:
            outcome = scenario(server, probes, args)
            for p in probes:
                outcome[p.kind] = latency_summary(*p.take())
            results[name] = outcome
            print(f"{name}: {json.dumps(outcome)}", file=sys.stderr)
    finally:
        for p in probes:
            p.stop()
    return results


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    m = result["machine"]
    print(f"machine: {m['nproc']} cpu, kernel {m['kernel']}, {m['disk']['fstype']}")
    print(f"commit {m['git_commit']}; probes every {args.interval * 1000:g} ms\n")
    head = f"  {'scenario':<28} {'endpoint':<9} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>9}"
    print(head)
    sizes = {"hot_steps": args.hot_steps, "runs": args.runs, "steps": args.steps}
    for name, outcome in result["scenarios"].items():
        for kind in ("healthz", "post"):
            s = outcome[kind]
            if not s["n"]:
                continue
            print(
                f"  {LABELS[name].format(**sizes):<28} {kind:<9} {s['n']:>6} "
                f"{s['p50_ms']:>8.2f} {s['p99_ms']:>8.2f} {s['max_ms']:>9.1f}"
                + (f"  ({s['errors']} errors)" if s["errors"] else "")
            )
    hot, many = result["scenarios"]["hot"], result["scenarios"]["many"]
    print(
        f"\n  (a) hot run {hot['hot_run_s']:.1f} s ({hot['hot_steps_per_s']:,.0f} steps/s); "
        f"companion run done in {hot['companion_s'] * 1000:.0f} ms, "
        f"before the hot run: {hot['companion_before_hot']}"
    )
    print(
        f"  (b) {many['rounds']} rounds; companion run done in "
        f"{many['companion_s_median'] * 1000:.0f} ms median, "
        f"{many['companion_s_max'] * 1000:.0f} ms max"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shown_args = argv if argv is not None else sys.argv[1:]
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    base = args.dir or REPO / "build"
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-resp-", dir=base))
    try:
        with _serve.serving(tmp / "api.db", tmp / "serve.log", extra=args.serve_arg) as server:
            scenarios = measure(server, args)
        result = {
            "command": " ".join(["python", "bench/responsiveness_bench.py", *shown_args]),
            "started": started,
            "load_average": os.getloadavg(),
            "machine": _machine.describe(tmp, REPO),
            "scenarios": scenarios,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(result, args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
