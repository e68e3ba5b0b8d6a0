"""Parking without Docker: the spec's JSON form, manifests with conditional writes on a real
S3 endpoint (moto), bulk names, which requests the gateway may send twice, its token check."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from fleet.core import names
from fleet.core.errors import InvalidArgument
from fleet.core.hosting import TenantSpec
from fleet.core.spec_json import spec_from_json, spec_to_json
from fleet.gateway.directory import Entry, digest
from fleet.gateway.metrics import Metrics
from fleet.gateway.proxy import replayable
from fleet.ops.bulk import tenant_names
from fleet.storage import manifests
from fleet.supervisor.s3 import S3Settings

from .moto_support import moto_s3


def test_spec_round_trips_with_secrets_apart() -> None:
    s3 = S3Settings("http://s3:9000", "b", "us-east-1", "tenant-key", "tenant-secret")
    spec = TenantSpec(
        tenant="alice",
        image="litefleet/tenant:x",
        token="tok-123",
        memory="512m",
        cpus=0.25,
        env={"A": "1"},
        labels={names.LABEL_APP: "agents", names.LABEL_IDLE_PARK: "10m"},
        s3=s3,
        db_password="pw",
    )
    settings, secrets = spec_to_json(spec)
    assert "tok-123" not in str(settings) and "tenant-secret" not in str(settings)
    assert "pw" not in str(settings.values())
    assert secrets["token"] == "tok-123" and secrets["s3"]["secret_access_key"] == "tenant-secret"
    back = spec_from_json(settings, secrets)
    assert back.s3 is not None and back.s3._key() == s3._key()
    assert dataclasses.replace(back, s3=None) == dataclasses.replace(spec, s3=None)


def test_spec_from_json_ignores_unknown_keys_and_defaults_missing_ones() -> None:
    spec = spec_from_json({"tenant": "bob", "image": "i", "gone_field": 1}, {"token": "t"})
    assert spec.tenant == "bob" and spec.memory == names.DEFAULT_MEMORY and spec.token == "t"


def test_manifest_updates_are_conditional() -> None:
    with moto_s3("park-manifests") as s3:
        assert not manifests.read(s3, "alice").exists
        manifests.update(s3, "alice", lambda doc: {**doc, "a": 1})
        first = manifests.read(s3, "alice")
        assert first.doc == {"a": 1}
        with pytest.raises(manifests.ManifestConflict):
            manifests.write_json(s3, names.manifest_key("alice"), {"x": 1}, None)
        manifests.write_json(s3, names.manifest_key("alice"), {"a": 2}, first.etag)
        with pytest.raises(manifests.ManifestConflict):  # the old ETag no longer matches
            manifests.write_json(s3, names.manifest_key("alice"), {"a": 3}, first.etag)

        def bump(doc: dict[str, object]) -> dict[str, object]:
            return {**doc, "n": int(str(doc.get("n", 0))) + 1}

        threads = [
            threading.Thread(target=lambda: manifests.update(s3, "alice", bump)) for _ in range(6)
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert manifests.read(s3, "alice").doc["n"] == 6  # no increment lost
        manifests.update(s3, "bob", lambda doc: {"b": True})
        assert sorted(m.tenant for m in manifests.list_all(s3)) == ["alice", "bob"]
        manifests.update(s3, "bob", lambda doc: {})  # empty: deleted
        assert [m.tenant for m in manifests.list_all(s3)] == ["alice"]


def test_tenant_names() -> None:
    assert tenant_names(["a"], 3, "t-") == ["a", "t-1", "t-2", "t-3"]
    assert tenant_names([], 10, "x")[-1] == "x10" and tenant_names([], 10, "x")[0] == "x01"
    for given, count, prefix in (([], None, None), (["a", "a"], None, None), ([], 2, None)):
        with pytest.raises(InvalidArgument):
            tenant_names(given, count, prefix)
    with pytest.raises(InvalidArgument):
        tenant_names(["Bad_Name"], None, None)


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("GET", "/v1/runs?status=running", b"", True),
        ("POST", "/v1/runs", b'{"workflow": "w", "id": "r1"}', True),
        ("POST", "/v1/runs", b'{"workflow": "w"}', False),
        ("POST", "/v1/runs", b"not json", False),
        ("POST", "/v1/runs/r1/cancel", b"", True),
        ("POST", "/v1/runs/r1/signals/approve", b"{}", False),
    ],
)
def test_replayable(method: str, path: str, body: bytes, expected: bool) -> None:
    assert replayable(method, path, body) is expected


def test_entry_accepts_only_its_token() -> None:
    e = Entry("alice", "running", token_digest=digest("secret"))
    assert e.accepts("secret")
    assert not e.accepts("secret ") and not e.accepts("") and not e.accepts(None)
    assert not Entry("bob", "unknown").accepts("secret")


def test_metrics_render() -> None:
    m = Metrics()
    m.request(200)
    m.request(401)
    m.woke("request", 1.2)
    text = m.render(["running", "parked", "parked"])
    assert 'litefleet_gateway_tenants{state="parked"} 2' in text
    assert 'litefleet_gateway_wake_seconds_bucket{le="1.0"} 0' in text
    assert 'litefleet_gateway_wake_seconds_bucket{le="1.5"} 1' in text
    assert 'litefleet_gateway_proxied_requests_total{code="4xx"} 1' in text
