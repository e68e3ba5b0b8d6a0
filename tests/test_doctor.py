"""`fleet doctor` against the real engine and the embedded store: all pass on a working set-up;
a missing bucket or image fails its line with a hint, exit 1, and the other checks still run;
with FLEET_S3_CREDENTIALS=iam, a per-tenant key is made and removed (the store's IAM API)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests import docker_fixtures as _fixtures
from tests.docker_fixtures import TEST_BUCKET

from .fleet_support import fleet

pytestmark = pytest.mark.docker

docker_client = _fixtures.docker_client
tenant_image = _fixtures.tenant_image
object_store = _fixtures.object_store


def _doctor(**env: str) -> tuple[int, dict[str, dict[str, Any]]]:
    r = fleet("doctor", "--json", env={"FLEET_CONFIG": "", **env})
    assert "Traceback" not in r.err, r.err
    report = json.loads(r.out)
    assert report["ok"] == (r.code == 0)
    return r.code, {c["check"]: c for c in report["checks"]}


def test_doctor_passes_on_a_working_set_up(tenant_image: str, object_store: Any) -> None:
    code, checks = _doctor(FLEET_IMAGE=tenant_image, FLEET_S3_BUCKET=TEST_BUCKET)
    assert code == 0, checks
    assert checks["engine local"]["detail"].startswith("Docker ")
    assert "cgroup v" in checks["engine local"]["detail"]
    for name in ("images", "object store", "bucket", "conditional writes", "disk", "memory"):
        assert checks[name]["status"] == "ok", checks[name]
    assert checks["clock"]["status"] in ("ok", "warn")
    assert " s from the store" in checks["clock"]["detail"]
    assert "tenant credentials" not in checks  # only asked for FLEET_S3_CREDENTIALS=iam
    code, checks = _doctor(
        FLEET_IMAGE=tenant_image, FLEET_S3_BUCKET=TEST_BUCKET, FLEET_S3_CREDENTIALS="iam"
    )
    assert code == 0 and checks["tenant credentials"]["status"] == "ok", checks
    # The human form: one line per check.
    r = fleet("doctor", env={"FLEET_CONFIG": "", "FLEET_IMAGE": tenant_image,
                             "FLEET_S3_BUCKET": TEST_BUCKET,
                             "FLEET_S3_CREDENTIALS": "iam"})  # fmt: skip
    assert r.code == 0 and len(r.out.strip().splitlines()) == len(checks)


def test_doctor_names_what_fails_and_how_to_fix_it(tenant_image: str, object_store: Any) -> None:
    missing = f"litefleet/tenant:absent-{uuid.uuid4().hex[:8]}"
    bucket = f"absent-{uuid.uuid4().hex[:8]}"
    code, checks = _doctor(FLEET_IMAGE=missing, FLEET_S3_BUCKET=bucket)
    assert code == 1
    assert checks["images"]["status"] == "fail" and missing in checks["images"]["detail"]
    assert "fleet image build" in checks["images"]["hint"]
    assert checks["bucket"]["status"] == "fail" and bucket in checks["bucket"]["detail"]
    assert checks["bucket"]["hint"]
    assert "conditional writes" not in checks  # nothing to write to
    assert checks["engine local"]["status"] == "ok" and checks["object store"]["status"] == "ok"
    r = fleet("doctor", env={"FLEET_CONFIG": "", "FLEET_IMAGE": missing,
                             "FLEET_S3_BUCKET": bucket})  # fmt: skip
    assert r.code == 1 and "FAIL images:" in r.out and "(hint: " in r.out


def test_doctor_fails_a_store_that_ignores_conditional_writes(tenant_image: str) -> None:
    """The same check `fleet up` makes (preflight): a proxy that drops If-Match and
    If-None-Match in front of a working store."""
    from .moto_support import moto_s3
    from .s3_proxy import ignoring_conditional_writes

    with moto_s3("doctor") as s3, ignoring_conditional_writes(s3.endpoint) as proxy:
        code, checks = _doctor(
            FLEET_IMAGE=tenant_image,
            FLEET_S3_ENDPOINT=proxy,
            FLEET_S3_BUCKET=s3.bucket,
            FLEET_S3_ACCESS_KEY_ID=s3.access_key_id,
            FLEET_S3_SECRET_ACCESS_KEY=s3.secret_access_key,
        )
    assert code == 1
    assert checks["bucket"]["status"] == "ok"
    check = checks["conditional writes"]
    assert check["status"] == "fail" and "does not honour conditional writes" in check["detail"]
    assert "two hosts could both replicate" in check["hint"]
