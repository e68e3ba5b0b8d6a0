"""`make demo` (`python -m fleet.demo`): the fleet story on the embedded object store, driven
through the real CLI.

Launch 3 tenants, run the research agent in each, kill one container mid-run, bring it
back and show the run resumed, pull one tenant's database and show its timeline, run your
own code in a tenant and deploy a new version of it under a waiting run, tear the fleet
down. Every step prints the `fleet` command a user would type.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fleet.core.names import LABEL_TENANT

FLEET = str(Path(sys.executable).parent / "fleet")
TENANTS = ["demo-1", "demo-2", "demo-3"]
LABEL = "litefleet-demo=1"


def fleet(*args: str, show: bool = True, check: bool = True) -> str:
    print(f"\n$ fleet {shlex.join(args)}", flush=True)
    proc = subprocess.run([FLEET, *args], capture_output=True, text=True, timeout=300)
    out = (proc.stdout + proc.stderr).rstrip()
    if show and out:
        print(out, flush=True)
    if check and proc.returncode != 0:
        if not show:
            print(out)
        raise SystemExit(f"demo: `fleet {' '.join(args)}` failed with exit {proc.returncode}")
    return proc.stdout


def run_json(tenant: str, run_id: str) -> dict[str, Any]:
    out = subprocess.run(
        [FLEET, "runs", tenant, "--json"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    runs: list[dict[str, Any]] = json.loads(out)
    return next(r for r in runs if r["id"] == run_id)


def wait_status(tenant: str, run_id: str, *statuses: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = run_json(tenant, run_id)
        if run["status"] in statuses:
            return run
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: {tenant}/{run_id} stuck in {run['status']}")
        time.sleep(0.3)


def step_record(db: str, run_id: str, before: float) -> tuple[int, int, int]:
    """(step results, distinct steps, results recorded before ``before``) in a db copy."""
    from agent_runtime import open_copy

    with open_copy(db) as reader:
        done = [e for e in reader.steps(run_id) if e.kind == "step_completed"]
    early = sum(1 for e in done if e.created_at < before)
    return len(done), len({e.position for e in done}), early


def kill_container(tenant: str) -> None:
    """SIGKILL the tenant's container, as a crash or an OOM kill would."""
    import docker

    client = docker.from_env()
    (container,) = client.containers.list(filters={"label": f"{LABEL_TENANT}={tenant}"})
    container.kill()
    container.wait(timeout=30)


def research_in_each() -> None:
    print("\n== The research agent in each tenant: plan, call tools, wait for approval ==")
    for t in TENANTS:
        fleet(
            "run",
            t,
            "research",
            "--input",
            json.dumps({"topic": f"fleet of agents {t}"}),
            "--id",
            "research-1",
            show=False,
        )
    for t in TENANTS:
        wait_status(t, "research-1", "waiting")
    fleet("runs", TENANTS[0])
    for t in TENANTS:
        fleet("signal", t, "research-1", "approve", "--data", '{"approved": true}', show=False)
    for t in TENANTS:
        done = wait_status(t, "research-1", "completed")
        print(f"  {t}: research-1 {done['status']}: {done['result']['report'][:60]}...")


def kill_and_resume(victim: str) -> float:
    """Returns when the container was killed."""
    print("\n== Kill a container mid-run, bring it back, the run resumes ==")
    fleet("run", victim, "steps", "--input", '{"n": 40, "sleep": 0.1}', "--id", "long-1")
    time.sleep(2.0)
    before = run_json(victim, "long-1")
    print(f"\n$ docker kill <{victim} container>   # SIGKILL: no graceful shutdown")
    killed_at = time.time()
    kill_container(victim)
    fleet("ls", "--label", LABEL)
    fleet("up", victim)
    done = wait_status(victim, "long-1", "completed", timeout=120)
    print(
        f"  long-1 was {before['status']} when killed; after `fleet up` it is "
        f"{done['status']} with result {done['result']}"
    )
    return killed_at


def pull_and_read(victim: str, killed_at: float) -> None:
    print("\n== Pull a tenant's database from object storage and read what its agent did ==")
    with tempfile.TemporaryDirectory(prefix="litefleet-demo-") as tmp:
        copy = str(Path(tmp) / f"{victim}.db")
        time.sleep(1.5)  # replication is asynchronous: ~1 s behind the container
        fleet("pull", victim, "-o", copy)
        fleet("inspect", copy)
        fleet("inspect", copy, "--run", "research-1")
        steps, unique, early = step_record(copy, "long-1", killed_at)
        print(
            f"\n  long-1 in the pulled copy: {steps} step results for {unique} steps "
            f"({early} recorded before the kill and kept; none ran twice)"
        )
        if steps != 40 or unique != 40:
            raise SystemExit("demo: long-1 does not hold exactly one result per step")


OWN_AGENT = """\
from agent_runtime import step, wait_for_signal, workflow

@step
async def draft(topic: str) -> str:
    return f"a short note on {topic}"

@workflow
async def note(topic: str) -> dict:
    text = await draft(topic)
    verdict = await wait_for_signal("approve")   # a human in the loop
    return {"note": text, "verdict": verdict}
"""
ADDED = """
@workflow
async def ping() -> str:
    return "pong from the new version"
"""


def own_agent() -> None:
    """Your own code in a tenant (an implicit template), then a new version deployed while
    a run of the old one waits for a human: it finishes on the new code."""
    print("\n== Your own agent: a directory of code becomes a template and a tenant ==")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "demo-notes"
        src.mkdir()
        (src / "agents.py").write_text(OWN_AGENT)
        print(f"\n  {src}/agents.py:\n" + OWN_AGENT)
        fleet("up", "demo-own", "--app", str(src), "--label", LABEL)
        fleet("run", "demo-own", "note", "--input", '{"topic": "sqlite"}', "--id", "n1")
        wait_status("demo-own", "n1", "waiting")
        (src / "agents.py").write_text(OWN_AGENT + ADDED)
        print("\n  (agents.py gains a workflow `ping`; n1 waits for its signal)")
        fleet("template", "build", str(src), "--name", "demo-notes")
        fleet("deploy", "demo-own", "--template", "demo-notes")
    fleet("signal", "demo-own", "n1", "approve", "--data", '{"ok": true}')
    wait_status("demo-own", "n1", "completed")
    fleet("runs", "demo-own")
    fleet("run", "demo-own", "ping", "--wait")


def main() -> int:
    print("litefleet demo: 3 tenants on the embedded S3 store (in memory: for demos and tests)")
    fleet("s3", "up")
    for t in TENANTS:
        fleet("up", t, "--label", LABEL, "--label", f"team={t[-1]}")
    fleet("ls", "--label", LABEL)
    research_in_each()
    victim = TENANTS[2]
    pull_and_read(victim, kill_and_resume(victim))
    own_agent()
    print("\n== Tear the fleet down (volumes and backups too) ==")
    fleet("teardown", "--label", LABEL, "--purge", "--yes")
    fleet("template", "rm", "demo-notes")
    fleet("ls", "--label", LABEL)
    print("\ndemo complete")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        subprocess.run([FLEET, "teardown", "--label", LABEL, "--purge", "--yes"], check=False)
        subprocess.run([FLEET, "template", "rm", "demo-notes", "--force"], check=False)
        sys.exit(130)
