"""The observer's tools (issue 14): console page load, fork time, watch lag. Real tenants on
the local Docker engine and the embedded store, the `fleet` CLI as a user runs it, Debian's
chromium (headless, through chromium-driver) for the browser's view.

Parts:
  page   a run with 1,000 events (`steps` n=998: submitted + 998 steps + completed) and one
         with 3 events (`echo`): the run page's server time (HTTP GET, keep-alive, --gets
         times) and the browser's load (navigation timing in chromium, --loads times), read
         through the runtime API (tenant running) and from the backup (tenant stopped).
  fork   a tenant of about --fork-mb MB (echo runs with 100 kB inputs), replicated; then
         `fork` into new tenants --forks times (restore, and until the new one is healthy).
  watch  `fleet watch` on a tenant, then --watch-runs runs submitted --watch-gap s apart:
         for each, the time from its commit (the API answered) to its first appearance in
         the followed copy (a reader polling every 20 ms).
  shot   a screenshot of a research run's page (docs/console-run.png).

    LITEFLEET_IMAGE_TAG=... python bench/console_bench.py [--only page,fork,watch,shot]

Tenants are made in bucket litefleet-bench and removed with their backups at the end.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import _machine  # noqa: E402

from tests import browser_support  # noqa: E402
from tests.fleet_support import free_port  # noqa: E402

FLEET = str(Path(sys.executable).parent / "fleet")
PARTS = ["page", "fork", "watch", "shot"]
ENV = {"FLEET_S3_BUCKET": "litefleet-bench", "FLEET_CONFIG": "", "FLEET_HEALTH_TIMEOUT": "120"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", default=",".join(PARTS), help="parts to run (default: all)")
    p.add_argument("--gets", type=int, default=30, help="HTTP GETs per page (30)")
    p.add_argument("--loads", type=int, default=10, help="browser loads per page (10)")
    p.add_argument("--fork-mb", type=float, default=10.0, help="tenant size for fork (10 MB)")
    p.add_argument("--forks", type=int, default=3, help="forks to time (3)")
    p.add_argument("--watch-runs", type=int, default=100, help="runs for watch lag (100)")
    p.add_argument("--watch-gap", type=float, default=0.37, help="seconds between them")
    p.add_argument("--shot", type=Path, default=ROOT / "docs" / "console-run.png")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    args = p.parse_args(argv)
    args.parts = [s.strip() for s in args.only.split(",") if s.strip()]
    return args


def fleet(*args: str, check: bool = True) -> str:
    proc = subprocess.run(
        [FLEET, *args], capture_output=True, text=True, env={**os.environ, **ENV}, timeout=600
    )
    if check and proc.returncode != 0:
        raise SystemExit(f"fleet {' '.join(args)}: exit {proc.returncode}: {proc.stderr}")
    return proc.stdout


@contextmanager
def tenants() -> Iterator[list[str]]:
    made: list[str] = []
    try:
        yield made
    finally:
        for t in made:
            fleet("rm", t, "--purge", "--yes", check=False)


def up(made: list[str], prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    made.append(name)
    fleet("up", name, "--label", "bench=console")
    return name


def quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 4),
        "p95": round(pick(0.95), 4),
        "p99": round(pick(0.99), 4),
        "max": round(ordered[-1], 4),
    }


# -- page


def server_times(link: str, path: str, gets: int) -> dict[str, Any]:
    base = link.split("/?", 1)[0]
    with httpx.Client(base_url=base, trust_env=False, timeout=120) as http:
        http.get(link)  # the cookie
        t0 = time.perf_counter()
        first = http.get(path)
        cold = time.perf_counter() - t0
        times = []
        for _ in range(gets):
            t0 = time.perf_counter()
            resp = http.get(path)
            times.append(time.perf_counter() - t0)
            if resp.status_code != 200:
                why = resp.text.split('id="error">', 1)[-1].split("<", 1)[0]
                raise SystemExit(f"GET {path}: {resp.status_code} {why}")
    return {"first_s": round(cold, 4), "bytes": len(first.content), **quantiles(times)}


def browser_times(driver: Any, link: str, path: str, loads: int) -> dict[str, Any]:
    base = link.split("/?", 1)[0]
    driver.get(link)
    js = (
        "const n = performance.getEntriesByType('navigation')[0];"
        "return [n.responseStart - n.requestStart, n.domContentLoadedEventEnd, n.loadEventEnd];"
    )
    ttfb, dcl, load = [], [], []
    for _ in range(loads):
        driver.get(base + path)
        got = driver.execute_script(js)
        ttfb.append(got[0] / 1000)
        dcl.append(got[1] / 1000)
        load.append(got[2] / 1000)
    return {"ttfb": quantiles(ttfb), "dom_content_loaded": quantiles(dcl), "load": quantiles(load)}


def part_page(args: argparse.Namespace, made: list[str]) -> dict[str, Any]:
    t = up(made, "cbp")
    fleet("run", t, "steps", "-i", '{"n": 998}', "--id", "big", "--wait", "--timeout", "600")
    fleet("run", t, "echo", "-i", '{"message": "hi"}', "--id", "small", "--wait")
    out: dict[str, Any] = {"tenant": t}
    with browser_support.chromium() as driver:
        for where in ("live", "backup"):
            if where == "backup":
                # (another test run on this shared engine may have removed the container: its
                # backup, all this part reads then, stays)
                fleet("down", t, check=False)
            with browser_support.console(FLEET, free_port(), {**ENV}) as link:
                for run in ("big", "small"):
                    path = f"/t/{t}/runs/{run}"
                    out[f"{where}/{run}"] = {
                        "server": server_times(link, path, args.gets),
                        "browser": browser_times(driver, link, path, args.loads),
                    }
                    print(where, run, json.dumps(out[f"{where}/{run}"]), flush=True)
    return out


# -- fork


def part_fork(args: argparse.Namespace, made: list[str]) -> dict[str, Any]:
    from fleet.core.settings import load_settings
    from fleet.ops.connect import connect
    from fleet.ops.fork import fork
    from fleet.ops.status import ls
    from fleet.storage.backups import backup_state

    t = up(made, "cbf")
    runs = max(1, int(args.fork_mb * 1024 * 1024 / 400_000))  # input, result, two events
    for i in range(runs):
        # random text: the backup (compressed LTX files) is about as large as the database
        blob = json.dumps({"message": base64.b64encode(os.urandom(75_000)).decode()})
        fleet("run", t, "echo", "-i", blob, "--id", f"r{i}", "--wait")
    os.environ.update(ENV)
    f = connect(load_settings(None))
    try:
        deadline = time.monotonic() + 60
        while True:
            row = next(r for r in ls(f, {"bench": "console"}) if r.tenant.name == t)
            if row.replication.lag_txns == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        size = row.db_bytes
        backup = backup_state(f.storage.for_fleet(), t).bytes
        results = []
        for i in range(args.forks):
            new = f"{t}-f{i}"
            made.append(new)
            t0 = time.perf_counter()
            res = fork(f, t, new)
            results.append({"restore_s": res.restore_s, "total_s": time.perf_counter() - t0})
            print("fork", json.dumps(results[-1]), flush=True)
            fleet("rm", new, "--purge", "--yes")
    finally:
        f.close()
    return {
        "db_bytes": size,  # database + WAL in the container
        "backup_bytes": backup,
        "runs": runs,
        "restore": quantiles([r["restore_s"] for r in results]),
        "total": quantiles([r["total_s"] for r in results]),
    }


# -- watch


def part_watch(args: argparse.Namespace, made: list[str]) -> dict[str, Any]:
    from agent_runtime import open_copy

    t = up(made, "cbw")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp, "followed.db")
        watch = subprocess.Popen(
            [FLEET, "watch", t, "-o", str(copy)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **ENV},
        )
        try:
            assert watch.stdout is not None
            watch.stdout.readline()
            committed, seen = _submit_and_follow(t, copy, args, open_copy)
        finally:
            watch.terminate()
            watch.wait(20)
    lags = [seen[r] - committed[r] for r in committed if r in seen]
    return {"runs": len(committed), "seen": len(lags), "lag": quantiles(lags)}


def _submit_and_follow(
    t: str, copy: Path, args: argparse.Namespace, open_copy: Any
) -> tuple[dict[str, float], dict[str, float]]:
    from fleet.core.settings import load_settings
    from fleet.ops import runs
    from fleet.ops.connect import connect

    committed: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            with open_copy(copy) as db:
                now = time.time()
                for run in db.statuses():
                    seen.setdefault(run, now)
            time.sleep(0.02)

    reader = threading.Thread(target=poll, daemon=True)
    reader.start()
    os.environ.update(ENV)
    f = connect(load_settings(None))
    try:
        with runs.client(f, t) as api:
            for i in range(args.watch_runs):
                api.submit("echo", {"message": str(i)}, f"w{i}")
                committed[f"w{i}"] = time.time()
                time.sleep(args.watch_gap)
        deadline = time.monotonic() + 30
        while len(seen) < len(committed) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        done.set()
        reader.join(5)
        f.close()
    return committed, seen


# -- screenshot


def part_shot(args: argparse.Namespace, made: list[str]) -> dict[str, Any]:
    t = up(made, "research")
    fleet("run", t, "echo", "-i", '{"message": "hello"}', "--id", "hello", "--wait")
    fleet("run", t, "steps", "-i", '{"n": 2, "sleep": 1}', "--id", "naps", "--wait")
    fleet("run", t, "research", "-i", '{"topic": "durable agents"}', "--id", "ticket-42")
    time.sleep(3)
    fleet("signal", t, "ticket-42", "approve", "--data", '{"approved": true, "by": "alice"}')
    time.sleep(2)
    with (
        browser_support.chromium(1400, 1000) as driver,
        browser_support.console(FLEET, free_port(), {**ENV}) as link,
    ):
        driver.get(link)
        driver.get(link.split("/?", 1)[0] + f"/t/{t}/runs/ticket-42")
        time.sleep(1)
        args.shot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.shot))
    return {"screenshot": str(args.shot)}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results: dict[str, Any] = {"machine": _machine.describe(Path(tempfile.gettempdir()), ROOT)}
    print(json.dumps(results["machine"]), flush=True)
    parts = {"page": part_page, "fork": part_fork, "watch": part_watch, "shot": part_shot}
    with tenants() as made:
        for name in args.parts:
            t0 = time.monotonic()
            results[name] = parts[name](args, made)
            results[name]["part_s"] = round(time.monotonic() - t0, 1)
            print(name, json.dumps(results[name]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
