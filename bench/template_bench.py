"""Templates and `fleet deploy`, through the `fleet` CLI as a user runs it, in one run:

- `fleet template build` of a directory with one dependency (inflection): new content each
  round (cold: a new version to build; the first round also fetches the wheel from the
  package index into the host wheelhouse), then the same content again (cached: a no-op);
- `fleet up --app FILE` of a new single-file app (build + start) beside `fleet up` of the
  stock tenant image (start only);
- `fleet deploy` downtime (SIGTERM -> /healthz of the new version, as deploy reports it) of a
  tenant holding a run that waits for a signal, alternating two compatible versions, beside
  a plain restart of the same tenant measured the same way, and `deploy --check` alone.

    LITEFLEET_IMAGE_TAG=... .venv/bin/python bench/template_bench.py [--rounds 5] [--json OUT]
        [--only build|up|deploy ...]

Uses the embedded store and the bucket ``litefleet-bench``; removes what it creates.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import describe  # noqa: E402

FLEET = str(Path(sys.executable).with_name("fleet"))
ENV = {**os.environ, "FLEET_S3_BUCKET": "litefleet-bench", "FLEET_CONFIG": "", "COLUMNS": "250"}
APP = """\
import inflection
from agent_runtime import step, wait_for_signal, workflow

@step
async def titleize(text: str) -> str:
    return inflection.titleize(text)

@workflow
async def triage(text: str) -> dict:
    title = await titleize(text)
    verdict = await wait_for_signal("approve")
    return {"title": title, "verdict": verdict}
"""

HELLO = "from agent_runtime import workflow\n\n@workflow\nasync def hi() -> str:\n    return 'hi'\n"


def fleet(*args: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([FLEET, *args], env=ENV, capture_output=True, text=True, timeout=900)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"fleet {' '.join(args)}: exit {proc.returncode}: {proc.stderr}")
    return took, proc.stdout


def write(directory: Path, extra: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "agents.py").write_text(APP + extra)
    (directory / "requirements.txt").write_text("inflection==0.5.1\n")
    return directory


def builds(tmp: Path, name: str, rounds: int) -> dict[str, list[float]]:
    for wheel in (ROOT / "build" / "wheelhouse").glob("inflection-*.whl"):
        wheel.unlink()  # the first round fetches it from the index
    cold, cached = [], []
    for i in range(rounds):
        src = write(tmp / f"src{i}", f"\n# round {i} {uuid.uuid4().hex}\n")
        cold.append(fleet("template", "build", str(src), "--name", name)[0])
        took, out = fleet("template", "build", str(src), "--name", name)
        assert "unchanged" in out, out
        cached.append(took)
    return {"build_cold_s": cold, "build_cached_s": cached}


def up_app(tmp: Path, _name: str, rounds: int) -> dict[str, list[float]]:
    app_file, stock = [], []
    for i in range(rounds):
        stem = f"bench_{uuid.uuid4().hex[:8]}"
        path = tmp / f"{stem}.py"
        path.write_text(HELLO)
        tenant, plain = f"tb-{i}-{stem[6:]}", f"tp-{i}-{stem[6:]}"
        try:
            app_file.append(fleet("up", tenant, "--app", str(path))[0])
            stock.append(fleet("up", plain)[0])
        finally:
            for t in (tenant, plain):
                subprocess.run([FLEET, "rm", t, "--purge", "--yes"], env=ENV, capture_output=True)
            subprocess.run(
                [FLEET, "template", "rm", stem.replace("_", "-"), "--force"],
                env=ENV,
                capture_output=True,
            )
    return {"up_app_file_cold_s": app_file, "up_stock_s": stock}


def restart(tenant: str) -> float:
    """The same tenant stopped (final sync checked) and started again, measured as deploy
    measures its downtime: from the SIGTERM until /healthz answers."""
    from fleet.core.settings import load_settings
    from fleet.ops import tenants
    from fleet.ops.connect import connect

    os.environ.update({k: ENV[k] for k in ("FLEET_S3_BUCKET", "FLEET_CONFIG")})
    fleet = connect(load_settings())
    try:
        t = tenants.find(fleet, tenant)
        t0 = time.perf_counter()
        tenants.stop(fleet, t)
        fleet.hosting.start(t)
        tenants.wait_healthy(fleet, t)
        return time.perf_counter() - t0
    finally:
        fleet.close()


def deploys(tmp: Path, name: str, rounds: int) -> dict[str, list[float]]:
    versions = []
    for i in range(2):
        src = write(tmp / f"v{i}", f"\n@workflow\nasync def extra_{i}() -> int:\n    return {i}\n")
        fleet("template", "build", str(src), "--name", name)
        rows = json.loads(fleet("template", "ls", "--json")[1])
        versions.append(next(t for t in rows if t["name"] == name)["version"])
    tenant = f"td-{uuid.uuid4().hex[:8]}"
    out: dict[str, list[float]] = {"deploy_downtime_s": [], "deploy_command_s": []}
    out.update({"deploy_check_s": [], "restart_s": []})
    try:
        fleet("up", tenant, "--template", f"{name}:{versions[0]}")
        fleet("run", tenant, "triage", "-i", '{"text": "a b"}', "--id", "r1")
        for i in range(rounds):
            target = f"{name}:{versions[(i + 1) % 2]}"
            out["deploy_check_s"].append(
                fleet("deploy", tenant, "--template", target, "--check")[0]
            )
            took, text = fleet("deploy", tenant, "--template", target)
            m = re.search(r"downtime ([\d.]+)s", text)
            assert m and "1 unfinished run(s) continue" in text, text
            out["deploy_downtime_s"].append(float(m.group(1)))
            out["deploy_command_s"].append(took)
            out["restart_s"].append(restart(tenant))
    finally:
        subprocess.run([FLEET, "rm", tenant, "--purge", "--yes"], env=ENV, capture_output=True)
    return out


PARTS = {"build": builds, "up": up_app, "deploy": deploys}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--only", choices=sorted(PARTS), action="append", help="default: all")
    args = ap.parse_args()
    name = f"bench-{uuid.uuid4().hex[:6]}"
    figures: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="template-bench-") as tmp:
        try:
            for part in args.only or sorted(PARTS):
                figures.update(PARTS[part](Path(tmp), name, args.rounds))
        finally:
            subprocess.run([FLEET, "template", "rm", name, "--force"], env=ENV, capture_output=True)
    machine = describe(Path(tempfile.gettempdir()), ROOT)
    report: dict[str, Any] = {"machine": machine, "rounds": args.rounds, "figures": {}}
    for key, values in figures.items():
        median = statistics.median(values)
        report["figures"][key] = {"median": round(median, 2), "all": [round(v, 2) for v in values]}
        print(f"{key:24} median {median:6.2f}   all {', '.join(f'{v:.2f}' for v in values)}")
    if "deploy_downtime_s" in figures:
        dep, restart = figures["deploy_downtime_s"], figures["restart_s"]
        ratio = statistics.median(dep) / statistics.median(restart)
        print(f"deploy downtime / restart: {ratio:.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
