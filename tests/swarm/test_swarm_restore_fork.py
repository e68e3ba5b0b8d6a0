"""`fleet restore` and `fleet fork` with FLEET_BACKEND=swarm, on the two-node test swarm.

No one-off container runs on a node: a restored tenant's task restores its empty volume as it
starts; a fork's backup is seeded from a copy of SRC's restored on this machine, and NEW's
task restores that. `restore --at` is refused in one line naming `fleet fork --at`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from tests.fleet_support import Result, fleet, one_line_error
from tests.swarm.tenants import NODE_NAMES

pytestmark = [pytest.mark.docker, pytest.mark.swarm]


def _ok(r: Result) -> Result:
    assert r.code == 0, f"exit {r.code}\nstdout: {r.out}\nstderr: {r.err}"
    return r


def _echo(env: dict[str, str], tenant: str, run_id: str) -> None:
    _ok(fleet("run", tenant, "echo", "-i", json.dumps({"message": run_id}), "--id", run_id,
              "--wait", env=env))  # fmt: skip


def _run_ids(env: dict[str, str], tenant: str) -> set[str]:
    return {r["id"] for r in json.loads(_ok(fleet("runs", tenant, "--json", env=env)).out)}


def _row(env: dict[str, str], tenant: str) -> dict[str, object]:
    rows = json.loads(_ok(fleet("ls", "--json", env=env)).out)
    return next(r for r in rows if r["tenant"] == tenant)


def test_restore_on_another_node_and_fork_as_of_a_time(
    swarm_env: dict[str, str], new_tenant: Callable[[], str]
) -> None:
    env = swarm_env
    src = new_tenant()
    _ok(fleet("up", src, "--host", NODE_NAMES[1], env=env))
    _echo(env, src, "early")
    time.sleep(2.0)  # replicated (about a second after its commit) before `at`
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    time.sleep(2.0)
    _echo(env, src, "late")

    # Gone from the swarm (backup kept): restored on the other node by its own task.
    _ok(fleet("down", src, env=env))
    _ok(fleet("rm", src, env=env))
    r = _ok(fleet("restore", src, "--host", NODE_NAMES[0], env=env))
    assert f"restored on {NODE_NAMES[0]} from object storage" in r.out, r.out
    assert "restored by its task as it started" in r.out and "txid 0x" in r.out, r.out
    assert _row(env, src)["host"] == NODE_NAMES[0]
    assert _run_ids(env, src) == {"early", "late"}
    again = fleet("restore", src, "--host", NODE_NAMES[1], env=env)
    assert again.code == 2 and "fleet migrate" in one_line_error(again)
    rewind = fleet("restore", src, "--at", at, env=env)
    err = one_line_error(rewind)
    assert rewind.code == 2 and "not available on Swarm" in err and "fleet fork" in err, err

    # A fork as of `at`: only the early run; SRC keeps both and keeps running.
    new = new_tenant()
    out = _ok(fleet("fork", src, new, "--at", at, "--label", "purpose=try", env=env)).out
    assert f"forked {src} at {at} (txid " in out and f"into {new}" in out, out
    assert _run_ids(env, new) == {"early"}
    assert _run_ids(env, src) == {"early", "late"}
    assert _row(env, new)["labels"] == {"purpose": "try", "litefleet.forked-from": src}
    _echo(env, new, "in-fork")
    assert "in-fork" not in _run_ids(env, src)
    taken = fleet("fork", src, new, env=env)
    assert taken.code == 2 and "exists" in one_line_error(taken)


def test_egress_other_than_public_is_refused_before_anything_is_made(
    swarm_env: dict[str, str], new_tenant: Callable[[], str]
) -> None:
    tenant = new_tenant()
    for policy in ("none", "api.example.com:443"):
        r = fleet("up", tenant, "--egress", policy, env=swarm_env)
        err = one_line_error(r)
        assert r.code == 2 and f"--egress {policy}: egress policies are not enforced" in err, err
        assert "FLEET_BACKEND=engines" in err
    rows = json.loads(_ok(fleet("ls", "--json", env=swarm_env)).out)
    assert tenant not in {row["tenant"] for row in rows}
