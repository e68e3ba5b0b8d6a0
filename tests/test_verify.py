"""Restore drills (Docker): `fleet verify` restores a tenant's newest backup on this machine,
checks it and records the result; a tampered backup fails with a clear line and exit 1;
`fleet ls` shows both; `fleet gateway --verify-every` runs them on a schedule."""

from __future__ import annotations

import re
from typing import Any

import pytest

from fleet.storage.embedded import client as s3_client
from tests.docker_fixtures import the_store
from tests.fleet_support import one_line_error
from tests.park_support import (
    Fleet,
    console_pages,
    gateway,
    ls,
    manifest,
    name,
    ok,
    park_env,
    run,
    start_gateway,
    stop_gateway,
    wait_until,
)

pytestmark = pytest.mark.docker

__all__ = ["gateway", "park_env", "run"]  # fixtures

LTX = re.compile(r"/[0-9a-f]{4}/[0-9a-f]{16}-(?P<max>[0-9a-f]{16})\.ltx$")


def _tamper_newest(s3: Any, bucket: str, tenant: str) -> int:
    """Flip bytes in the middle of every LTX object that ends at the newest txid (every
    restore of the newest state reads one of them); how many were changed."""
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"tenants/{tenant}/"
        )
        for o in page.get("Contents", [])
    ]
    ends = {k: int(m["max"], 16) for k in keys if (m := LTX.search(k))}
    newest = max(ends.values())
    changed = 0
    for key, end in ends.items():
        if end != newest:
            continue
        body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        middle = len(body) // 2
        body[middle : middle + 16] = bytes(b ^ 0xFF for b in body[middle : middle + 16])
        s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))
        changed += 1
    return changed


def test_verify_a_good_and_a_tampered_backup(
    run: Fleet,
    park_env: dict[str, str],
    docker_client: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket = park_env["FLEET_S3_BUCKET"]
    good, bad = name("vf"), name("vf")
    for t in (good, bad):
        ok(run("up", t, "--label", "drill=yes"))
        ok(run("run", t, "steps", "--input", '{"n": 5}', "--id", "r1", "--wait"))
    ok(run("park", bad))  # no uploads after the tampering; a parked tenant is verified too

    passed = ok(run("verify", good))
    assert re.search(rf"^verify {good}: passed in [0-9.]+s: integrity ok, ", passed.out, re.M)
    assert "the tenant is at txid" in passed.out  # compared with the running tenant's own

    store = the_store(docker_client, bucket)
    assert _tamper_newest(s3_client(store), bucket, bad) >= 1
    both = run("verify", "--label", "drill=yes")
    assert both.code == 1, both
    assert re.search(rf"^verify {good}: passed ", both.out, re.M)
    failed = [ln for ln in both.err.splitlines() if ln.startswith(f"verify {bad}: FAILED")]
    assert len(failed) == 1 and len(failed[0]) > len(f"verify {bad}: FAILED in 0.0s: "), both
    assert "litestream restore failed: " in failed[0]  # what Litestream said, on one line
    assert both.err.splitlines()[-1].startswith(f"fleet: 1 of 2 restore drill(s) failed: {bad}")

    rows = ls(run)
    assert rows[good]["verified"]["passed"] is True and rows[good]["state"] == "running"
    assert rows[bad]["verified"]["passed"] is False and rows[bad]["state"] == "parked"
    assert rows[bad]["verified"]["detail"] and rows[good]["verified"]["txid"] > 0
    table = ok(run("ls")).out
    assert re.search(rf"^{good} .* passed [0-9smhd]+ ago", table, re.M), table
    assert re.search(rf"^{bad} .* FAILED [0-9smhd]+ ago", table, re.M), table
    listing, _ = console_pages(park_env, tmp_path, monkeypatch, good)  # the web console too
    assert listing.count('<span class="verified passed"') == 1, listing
    assert listing.count('<span class="verified failed"') == 1, listing
    record = manifest(store, bucket, good)  # the fleet's own record, not the tenant's prefix
    assert record is not None and record["verify"]["passed"] is True

    missing = run("verify", name("nobody"))
    assert missing.code == 3 and "nobody" in one_line_error(missing)

    # The gateway runs drills on a schedule: both are verified again, by their records' age.
    before = {t: rows[t]["verified"]["at"] for t in (good, bad)}
    gw = start_gateway(park_env, str(tmp_path), "--verify-every", "2s")
    try:
        wait_until(
            lambda: all(ls(run)[t]["verified"]["at"] > before[t] for t in (good, bad)),
            90,
            "the gateway's drills",
        )
        metrics = gw.metrics()
        assert re.search(r'restore_drills_total\{result="passed"\} [1-9]', metrics), metrics
        assert re.search(r'restore_drills_total\{result="failed"\} [1-9]', metrics), metrics
    finally:
        stop_gateway(gw)
    rows = ls(run)
    assert rows[good]["verified"]["passed"] is True and rows[bad]["verified"]["passed"] is False

    ok(run("rm", bad, "--purge", "--yes"))
    assert manifest(store, bucket, bad) is None  # the record went with the backup
