"""What `fleet --help` and `fleet ls` cost before and after a change of the CLI's imports, in
one run: the same interpreter runs the fleet package of a given commit (``git archive`` into
a temp dir on PYTHONPATH) and of this checkout, alternately, --runs times each.

    python bench/cli_bench.py [--before 2d674df] [--runs 20] [--json OUT]

Also prints which heavy libraries each imports and the biggest entries of
``python -X importtime`` (cumulative microseconds) for `fleet --help`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import describe  # noqa: E402

HEAVY = ("docker", "boto3", "botocore", "apsw", "httpx", "rich", "pydantic", "structlog")
# How each version's CLI is entered (the console script's target).
ENTRY = {"before": "fleet._cli", "after": "fleet.cli.app"}


def checkout(commit: str, dest: Path) -> None:
    data = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "fleet"], capture_output=True, check=True
    ).stdout
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.seek(0)
        with tarfile.open(fileobj=f) as tar:
            tar.extractall(dest, filter="data")


def command(which: str, args: list[str]) -> list[str]:
    code = f"import sys; sys.argv[0] = 'fleet'; from {ENTRY[which]} import main; main()"
    return [sys.executable, "-c", code, *args]


def env_for(which: str, before_dir: Path) -> dict[str, str]:
    """PYTHONPATH comes before the editable install's finder: each side imports its own."""
    return {**os.environ, "PYTHONPATH": str(before_dir if which == "before" else ROOT)}


# Every command runs in an empty directory: `python -c` puts the working directory first on
# sys.path, ahead of PYTHONPATH.
NEUTRAL = tempfile.mkdtemp(prefix="cli-bench-cwd-")


def timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=NEUTRAL, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode not in (0, 4):  # 4: no engine answers (ls); still a full start
        raise RuntimeError(f"{argv[2][:60]}... failed: {proc.stderr[-300:]}")
    return elapsed


def loaded(which: str, env: dict[str, str]) -> dict[str, Any]:
    probe = (
        f"import sys, {ENTRY[which]} as m; print(m.__file__); print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=NEUTRAL, capture_output=True, text=True,
        check=True,
    ).stdout.splitlines()  # fmt: skip
    mods = set(out[1].split())
    return {"file": out[0], "modules": len(mods), "heavy": [h for h in HEAVY if h in mods]}


def importtime(which: str, env: dict[str, str], top: int = 8) -> list[tuple[str, int]]:
    err = subprocess.run(
        [sys.executable, "-X", "importtime", *command(which, ["--help"])[1:]],
        env=env, cwd=NEUTRAL, capture_output=True, text=True,
    ).stderr  # fmt: skip
    rows = []
    for line in err.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cum, name = (p.strip() for p in line.split(":", 1)[1].split("|"))
            if cum.isdigit():
                rows.append((name, int(cum)))
    return sorted(rows, key=lambda r: -r[1])[:top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="2d674df", help="commit of the 'before' CLI")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cli-bench-") as tmp:
        before_dir = Path(tmp)
        checkout(args.before, before_dir)
        cases = {"--help": ["--help"], "ls": ["ls", "--label", "cli-bench=none"]}
        times: dict[str, dict[str, list[float]]] = {c: {"before": [], "after": []} for c in cases}
        for which in ("before", "after"):  # warm the page cache and .pyc files
            timed(command(which, ["--help"]), env_for(which, before_dir))
        for _ in range(args.runs):
            for case, argv in cases.items():
                for which in ("before", "after"):
                    t = timed(command(which, argv), env_for(which, before_dir))
                    times[case][which].append(t)
        result: dict[str, Any] = {"machine": describe(Path(tmp), ROOT), "runs": args.runs}
        for case in cases:
            med = {w: statistics.median(times[case][w]) for w in ("before", "after")}
            result[case] = {**med, "ratio": med["after"] / med["before"]}
        for which in ("before", "after"):
            env = env_for(which, before_dir)
            result[f"loaded_{which}"] = loaded(which, env)
            result[f"importtime_{which}"] = importtime(which, env)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
