"""agent_runtime vs raw SQLite and DBOS Transact, in one run on one disk.

Parts (each measured in a fresh process, on a fresh database in a temp dir under build/,
which is on the repository's filesystem):
  a       raw SQLite (APSW, WAL, synchronous=FULL), one INSERT + COMMIT per iteration
  b       agent_runtime, one workflow of 2,000 no-op steps
  c       agent_runtime, 200 concurrent workflows x 50 no-op steps
  http    c submitted over HTTP to `agent-runtime serve` by --http-clients keep-alive
          clients; then the latency of a submission to an idle server (see _http_parts.py)
  d       DBOS Transact (SQLite system database) doing b and c (parts dbos_b, dbos_c)
  rss     idle RSS of `agent-runtime serve --app agent_runtime.examples` after /healthz
  pg      b and c on PostgreSQL (parts pg_b, pg_c), only with --pg-dsn / LITEFLEET_BENCH_PG

Figures are medians over --repeat rounds; rounds interleave the parts so that a noisy
neighbour hits all of them alike. Compare the ratios, not the absolute figures.

    python bench/runtime_bench.py [--quick] [--only a,b,c,http,d,rss,pg] [--repeat N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import _machine  # noqa: E402

PART_GROUPS = {
    "a": ["a"],
    "b": ["b"],
    "c": ["c"],
    "http": ["http"],
    "d": ["dbos_b", "dbos_c"],
    "rss": ["rss"],
    "pg": ["pg_b", "pg_c"],
}
ORDER = ["a", "b", "c", "http", "dbos_b", "dbos_c", "pg_b", "pg_c", "rss"]
LABELS = {
    "a": "(a) raw SQLite, INSERT+COMMIT",
    "b": "(b) agent_runtime, 1 workflow x {steps_b} steps",
    "c": "(c) agent_runtime, {workflows_c} workflows x {steps_c} steps",
    "http": "(http) (c) submitted over HTTP",
    "http_submit": "(http) submit p50, idle server",
    "dbos_b": "(d) DBOS, 1 workflow x {steps_b} steps",
    "dbos_c": "(d) DBOS, {workflows_c} workflows x {steps_c} steps",
    "pg_b": "(b) agent_runtime on PostgreSQL, 1 x {steps_b}",
    "pg_c": "(c) agent_runtime on PostgreSQL, {workflows_c} x {steps_c}",
    "rss": "idle RSS, agent-runtime serve",
}


@dataclass(frozen=True)
class Target:
    name: str
    num: str
    den: str | None  # None: an absolute figure
    goal: float
    higher_is_better: bool = True


TARGETS = [
    Target("(b)/(a)", "b", "a", 0.7),
    Target("(b)/DBOS(b)", "b", "dbos_b", 8.0),
    Target("(c) steps/s", "c", None, 10_000.0),
    Target("(c)/DBOS(c)", "c", "dbos_c", 30.0),
    Target("(http)/DBOS(c)", "http", "dbos_c", 30.0),
    Target("(http)/(c)", "http", "c", 0.0),
    Target("submit p50 ms", "http_submit", None, 1.0, higher_is_better=False),
    Target("idle RSS MiB", "rss", None, 40.0, higher_is_better=False),
    Target("PG (b)/(b)", "pg_b", "b", 0.0),
    Target("PG (c)/(c)", "pg_c", "c", 0.0),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: small sizes, one round")
    p.add_argument("--only", default="a,b,c,http,d,rss,pg", help="parts to run (default: all)")
    p.add_argument("--repeat", type=int, help="rounds; the median is reported (default 5)")
    p.add_argument("--dbos-repeat", type=int, help="rounds that include DBOS (default 3)")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    p.add_argument("--pg-dsn", help="PostgreSQL DSN for part pg (default: $LITEFLEET_BENCH_PG)")
    p.add_argument("--commits", type=int, help="part a iterations (default: --steps-b)")
    p.add_argument("--steps-b", type=int, help="steps of the single workflow (default 2000)")
    p.add_argument("--workflows-c", type=int, help="concurrent workflows (default 200)")
    p.add_argument("--steps-c", type=int, help="steps per concurrent workflow (default 50)")
    p.add_argument("--http-clients", type=int, help="part http: concurrent clients (default 8)")
    p.add_argument("--idle-submits", type=int, help="part http: idle submissions (default 200)")
    p.add_argument("--settle", type=float, help="idle seconds before reading RSS (default 2)")
    p.add_argument("--timeout", type=float, default=900.0, help="per measurement, seconds")
    p.add_argument(
        "--dir",
        type=Path,
        help="where the databases go (default: build/ in the repository, on its disk);\n"
        "a tmpfs such as /dev/shm takes fsync out and shows the CPU cost alone",
    )
    p.add_argument("--keep", action="store_true", help="keep the temp dir with the databases")
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {
        "repeat": 1 if quick else 5,
        "dbos_repeat": 1 if quick else 3,
        "steps_b": 200 if quick else 2000,
        "workflows_c": 20 if quick else 200,
        "steps_c": 10 if quick else 50,
        "http_clients": 8,
        "idle_submits": 20 if quick else 200,
        "settle": 0.5 if quick else 2.0,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    # As many commits as (b) has steps, on an equally fresh file: same WAL growth.
    args.commits = args.commits or args.steps_b
    args.pg_dsn = args.pg_dsn or os.environ.get("LITEFLEET_BENCH_PG") or None
    return args


def select_parts(only: str, have_pg: bool) -> list[str]:
    chosen: set[str] = set()
    for name in (s.strip() for s in only.split(",") if s.strip()):
        if name not in PART_GROUPS:
            raise SystemExit(f"error: unknown part {name!r} (choose from {', '.join(PART_GROUPS)})")
        chosen.update(PART_GROUPS[name])
    if not have_pg:
        chosen -= {"pg_b", "pg_c"}
    return [p for p in ORDER if p in chosen]


def dbos_problem() -> str | None:
    """Why DBOS cannot run here, or None. Checked in a subprocess: importing it is slow."""
    probe = subprocess.run(
        [sys.executable, "-c", "import dbos"], capture_output=True, text=True, timeout=120
    )
    if probe.returncode == 0:
        return None
    last = (probe.stderr.strip().splitlines() or ["import failed"])[-1]
    return f"dbos unavailable ({last}); install it with: pip install -e '.[bench]'"


def measure(part: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True)
    out = workdir / "result.json"
    params = {
        "workdir": str(workdir),
        "commits": args.commits,
        "steps": args.steps_b if part.endswith("b") else args.steps_c,
        "workflows": 1 if part.endswith("b") else args.workflows_c,
        "settle_s": args.settle,
        "clients": args.http_clients,
        "idle_submits": args.idle_submits,
    }
    env = dict(os.environ)
    env.pop("LITEFLEET_BENCH_PG", None)
    if part.startswith("pg_") and args.pg_dsn:
        env["LITEFLEET_BENCH_PG"] = args.pg_dsn
    cmd = [sys.executable, str(HERE / "_worker.py"), part, str(out), json.dumps(params)]
    try:
        proc = subprocess.run(
            cmd, cwd=HERE, env=env, capture_output=True, text=True, timeout=args.timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout:.0f} s"}
    if proc.returncode != 0 or not out.exists():
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"exit status {proc.returncode}"
        if args.pg_dsn:
            reason = reason.replace(args.pg_dsn, "<dsn>")
        return {"error": reason[:300]}
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[-1]["error"] if runs else "not run", "runs": runs}
    values = [r["value"] for r in ok]
    summary: dict[str, Any] = {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "unit": ok[0]["unit"],
        "runs": runs,
    }
    if len(ok) < len(runs):
        summary["failed_rounds"] = len(runs) - len(ok)
    split = [r for r in ok if "writer" in r]
    if split:
        # Where a step's time goes: inside the writer's transactions (fsync included)
        # versus everything else (engine Python, thread hand-offs, event loop).
        summary["split"] = {
            "txn_us_per_step": statistics.median(
                1e6 * r["writer"]["commit_s"] / r["steps"] for r in split
            ),
            "other_us_per_step": statistics.median(
                1e6 * (r["elapsed_s"] - r["writer"]["commit_s"]) / r["steps"] for r in split
            ),
            "mean_batch": statistics.median(r["writer"]["mean_batch"] for r in split),
        }
    return summary


def submit_latencies(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Part http's idle submission latency, as a figure of its own."""
    return [
        {"round": r["round"], "value": r["submit_p50_ms"], "unit": "ms"} if "value" in r else r
        for r in runs
    ]


def _by_round(summary: dict[str, Any]) -> dict[int, float]:
    """A round's value; (a) runs twice a round, around (b): the geometric mean of the two
    stands for the disk as (b) saw it."""
    values: dict[int, list[float]] = {}
    for r in summary.get("runs", []):
        if "value" in r:
            values.setdefault(r["round"], []).append(r["value"])
    return {rnd: statistics.geometric_mean(v) for rnd, v in values.items()}


def ratios(parts: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each ratio is the median of per-round ratios: a round's parts ran minutes apart at
    most, so pairing them cancels much of the machine's drift between rounds."""
    rows = []
    for t in TARGETS:
        if t.num not in parts or (t.den and t.den not in parts):
            continue
        row: dict[str, Any] = {"name": t.name, "target": t.goal or None}
        num, den = parts[t.num], parts[t.den] if t.den else None
        broken = [(p, s) for p, s in ((t.num, num), (t.den, den)) if s and "median" not in s]
        if broken:
            row["error"] = f"{broken[0][0]}: {broken[0][1].get('error', 'no figure')}"
            rows.append(row)
            continue
        if den is None:
            row["value"] = num["median"]
        else:
            nums, dens = _by_round(num), _by_round(den)
            paired = [nums[r] / dens[r] for r in sorted(nums) if r in dens]
            row["per_round"] = paired
            row["of_medians"] = num["median"] / den["median"]
            row["value"] = statistics.median(paired) if paired else row["of_medians"]
        if t.goal:
            ok = row["value"] >= t.goal if t.higher_is_better else row["value"] <= t.goal
            row["met"] = ok
        rows.append(row)
    return rows


def http_detail(runs: list[dict[str, Any]]) -> str:
    ok = [r for r in runs if "value" in r]

    def med(key: str) -> float:
        return statistics.median(r[key] for r in ok)

    return (
        f"{med('posts_per_s'):,.0f} POST/s while runs execute "
        f"(p50 {med('post_p50_ms'):.1f} ms, p99 {med('post_p99_ms'):.1f} ms, "
        f"{ok[0]['clients']} clients); idle submit p99 {med('submit_p99_ms'):.2f} ms"
    )


def fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    m = result["machine"]
    disk = m["disk"]
    print(
        f"machine: {m['nproc']} cpu ({m['cpu']}), {m['ram_gib']} GiB RAM, "
        f"kernel {m['kernel']}, {disk['fstype']} on {disk['device']}"
    )
    print(
        f"python {m['python']}, SQLite {m['sqlite_apsw']} (apsw) / {m['sqlite_stdlib']} "
        f"(stdlib, used by DBOS), dbos {m['dbos']}, commit {m['git_commit']}"
    )
    with_dbos = any(p.startswith("dbos_") for p in result["parts"])
    dbos_rounds = f" ({min(args.dbos_repeat, args.repeat)} with DBOS)" if with_dbos else ""
    print(
        f"rounds: {args.repeat}{dbos_rounds}; medians, min..max in brackets; "
        "ratios are medians of per-round ratios\n"
    )
    sizes = {"steps_b": args.steps_b, "workflows_c": args.workflows_c, "steps_c": args.steps_c}
    for part, s in result["parts"].items():
        label = LABELS[part].format(**sizes)
        if "median" in s:
            spread = f"[{fmt(s['min'])}..{fmt(s['max'])}]" if len(s["runs"]) > 1 else ""
            failed = f" ({s['failed_rounds']} rounds failed)" if "failed_rounds" in s else ""
            print(f"  {label:<48} {fmt(s['median']):>10} {s['unit']:<10}{spread}{failed}".rstrip())
            if "split" in s:
                sp = s["split"]
                print(
                    f"  {'':<48} {'':>10} per step: {sp['txn_us_per_step']:.0f} us in commit "
                    f"transactions, {sp['other_us_per_step']:.0f} us elsewhere; "
                    f"{sp['mean_batch']:.1f} ops/transaction"
                )
            if part == "http":
                print(f"  {'':<48} {'':>10} {http_detail(s['runs'])}")
        else:
            print(f"  {label:<48} {'FAILED':>10}  {s['error']}")
    print()
    for r in result["ratios"]:
        target = r.get("target")
        if "error" in r:
            print(f"  {r['name']:<16} {'n/a':>10}   ({r['error']})")
            continue
        op = ">=" if r["name"] not in ("idle RSS MiB", "submit p50 ms") else "<="
        verdict = "" if target is None else ("  met" if r["met"] else "  MISSED")
        goal = "" if target is None else f"target {op} {fmt(target)}"
        print(f"  {r['name']:<16} {fmt(r['value']):>10}   {goal}{verdict}")


def command_line(argv: list[str], dsn: str | None) -> str:
    """The command as run, with the DSN (it may hold a password) masked."""
    shown = [a.replace(dsn, "<dsn>") if dsn else a for a in argv]
    return " ".join(["python", "bench/runtime_bench.py", *shown])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    parts = select_parts(args.only, bool(args.pg_dsn))
    base = args.dir or REPO / "build"
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-", dir=base))
    skipped: dict[str, str] = {}
    if any(p.startswith("dbos_") for p in parts):
        problem = dbos_problem()
        if problem:
            print(f"warning: {problem}", file=sys.stderr)
            skipped.update({p: problem for p in parts if p.startswith("dbos_")})
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in parts}
    started = time.time()
    try:
        order = list(parts)
        if "a" in parts and "b" in parts:
            # (a) again right after (b): on a shared disk the fsync cost drifts in seconds.
            order.insert(order.index("b") + 1, "a")
        for rnd in range(args.repeat):
            for slot, part in enumerate(order):
                if part in skipped or (part.startswith("dbos_") and rnd >= args.dbos_repeat):
                    continue
                res = {"round": rnd, **measure(part, args, tmp / f"r{rnd}-{slot}-{part}")}
                runs[part].append(res)
                shown = f"{fmt(res['value'])} {res['unit']}" if "value" in res else res["error"]
                print(f"round {rnd + 1}/{args.repeat} {part}: {shown}", file=sys.stderr)
        summary = {p: summarize(runs[p]) for p in parts if p not in skipped}
        if "http" in summary:
            parts.insert(parts.index("http") + 1, "http_submit")
            summary["http_submit"] = summarize(submit_latencies(runs["http"]))
        summary.update({p: {"error": why, "runs": []} for p, why in skipped.items()})
        summary = {p: summary[p] for p in parts}
        result: dict[str, Any] = {
            "command": command_line(argv if argv is not None else sys.argv[1:], args.pg_dsn),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "duration_s": round(time.time() - started, 1),
            "machine": _machine.describe(tmp, REPO),
            "config": {
                "repeat": args.repeat,
                "dbos_repeat": min(args.dbos_repeat, args.repeat),
                "commits": args.commits,
                "steps_b": args.steps_b,
                "workflows_c": args.workflows_c,
                "steps_c": args.steps_c,
                "settle_s": args.settle,
                "http_clients": args.http_clients,
                "idle_submits": args.idle_submits,
            },
            "parts": summary,
            "ratios": ratios(summary),
        }
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    report(result, args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    # DBOS is only the yardstick: without it the run still succeeds (with a warning).
    failed = any("error" in s for p, s in result["parts"].items() if not p.startswith("dbos_"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
