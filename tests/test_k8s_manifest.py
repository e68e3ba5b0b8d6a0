"""`fleet k8s manifest T`: the tenant as Kubernetes objects, checked without a cluster.

Every object is validated against the Kubernetes OpenAPI schemas (kubernetes-validate, strict:
unknown fields fail) for the oldest version with native sidecars and for the newest the package
ships; then the shape the design rests on is asserted.
"""

from __future__ import annotations

from typing import Any

import pytest

from fleet.ops.k8s_manifest import (
    NON_PUBLIC,
    K8sTenant,
    quantity_memory,
    render_yaml,
    secret_names,
    tenant_manifest,
)

SECRET_LOOKING = ("token", "secret", "password", "key")


def _tenant(**kw: Any) -> K8sTenant:
    base: dict[str, Any] = {
        "tenant": "alice",
        "image": "registry.example/litefleet/tenant:0.1.0",
        "s3_endpoint": "https://s3.eu-west-1.amazonaws.com",
        "s3_bucket": "fleet-backups",
        "s3_region": "eu-west-1",
        "labels": {"team": "red"},
        "ttl_expires_at": "2026-11-30T12:00:00Z",
        "env": {"AGENT_RUNTIME_LLM_MODEL": "small"},
    }
    return K8sTenant(**{**base, **kw})


def _by_kind(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objs}


@pytest.mark.parametrize("version", ["1.29.0", "latest"])
@pytest.mark.parametrize("egress", ["public", "none", ("api.openai.com:443", "10.0.5.7:5432")])
def test_every_object_validates_against_the_kubernetes_schemas(
    version: str, egress: str | tuple[str, ...]
) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    version = kv.latest_version() if version == "latest" else version
    for obj in tenant_manifest(_tenant(egress=egress)):
        kv.validate(obj, version, strict=True)


def test_a_misspelt_field_fails_validation() -> None:
    """The check above can fail: strict validation rejects a field Kubernetes does not know."""
    kv = pytest.importorskip("kubernetes_validate")
    sts = _by_kind(tenant_manifest(_tenant()))["StatefulSet"]
    sts["spec"]["replica"] = 1
    with pytest.raises(kv.ValidationError):
        kv.validate(sts, kv.latest_version(), strict=True)


def test_one_replica_restore_first_then_the_keeper_beside_the_runtime() -> None:
    sts = _by_kind(tenant_manifest(_tenant()))["StatefulSet"]
    spec = sts["spec"]
    assert sts["metadata"]["name"] == "litefleet-alice"
    assert spec["replicas"] == 1
    pod = spec["template"]["spec"]
    restore, keeper = pod["initContainers"]
    (runtime,) = pod["containers"]
    assert restore["command"][:2] == ["litestream", "restore"]
    assert "-if-db-not-exists" in restore["command"]
    assert "restartPolicy" not in restore  # a plain init container: runs to completion first
    assert keeper["restartPolicy"] == "Always"  # a native sidecar, stopped after the runtime
    assert keeper["command"][-4:] == ["litestream", "replicate", "-config", keeper["command"][-1]]
    assert "hold" in keeper["command"]
    assert runtime["command"][:2] == ["agent-runtime", "serve"]
    volumes = {m["name"] for m in runtime["volumeMounts"]}
    assert volumes == {m["name"] for m in restore["volumeMounts"]} >= {"data", "tmp"}
    assert spec["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_hardening_and_limits_as_on_docker() -> None:
    pod = _by_kind(tenant_manifest(_tenant(memory="512m", cpus=1.5)))["StatefulSet"]["spec"][
        "template"
    ]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # restore, keeper and Litestream
    runtime = pod["containers"][0]
    assert (runtime["securityContext"]["runAsUser"], pod["securityContext"]["fsGroup"]) == (
        10002,  # agent code apart from the S3 key's holders
        10002,  # the database group
    )
    for c in pod["initContainers"] + pod["containers"]:
        sc = {k: v for k, v in c["securityContext"].items() if not k.startswith("runAs")}
        assert sc == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }, c["name"]
    assert runtime["resources"]["limits"] == {"memory": "512Mi", "cpu": "1500m"}
    assert runtime["resources"]["requests"] == runtime["resources"]["limits"]


def test_secrets_are_referenced_never_written() -> None:
    objs = tenant_manifest(_tenant())
    text = render_yaml(objs)
    assert "kind: Secret" not in text
    pod = _by_kind(objs)["StatefulSet"]["spec"]["template"]["spec"]
    refs = {}
    for c in pod["initContainers"] + pod["containers"]:
        for e in c.get("env", []):
            if any(word in e["name"].lower() for word in SECRET_LOOKING):
                assert "value" not in e, f"{c['name']}: {e['name']} has a literal value"
                refs[e["name"]] = e["valueFrom"]["secretKeyRef"]["name"]
    names = secret_names("alice")
    assert refs == {
        "AGENT_RUNTIME_TOKEN": names["token"],
        "LITESTREAM_ACCESS_KEY_ID": names["s3"],
        "LITESTREAM_SECRET_ACCESS_KEY": names["s3"],
    }
    runtime_env = {e["name"] for e in pod["containers"][0]["env"]}
    assert not runtime_env & {"LITESTREAM_ACCESS_KEY_ID", "LITESTREAM_SECRET_ACCESS_KEY"}


def test_labels_ttl_and_user_env() -> None:
    objs = tenant_manifest(_tenant(env={"TENANT": "mallory", "X": "1"}))
    for o in objs:
        assert o["metadata"]["labels"]["litefleet.tenant"] == "alice"
        assert o["metadata"]["labels"]["team"] == "red"
        assert o["metadata"]["annotations"]["litefleet.ttl-expires-at"] == "2026-11-30T12:00:00Z"
    env = _by_kind(objs)["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "X", "value": "1"} in env
    assert [e["value"] for e in env if e["name"] == "TENANT"] == ["alice"]


def test_network_policy_only_the_gateway_in_and_the_egress_policy_out() -> None:
    def egress(policy: Any) -> list[dict[str, Any]]:
        netpol = _by_kind(tenant_manifest(_tenant(egress=policy)))["NetworkPolicy"]
        assert netpol["spec"]["policyTypes"] == ["Ingress", "Egress"]
        (ingress,) = netpol["spec"]["ingress"]
        assert ingress["from"] == [{"podSelector": {"matchLabels": {"litefleet.role": "gateway"}}}]
        return list(netpol["spec"]["egress"])

    none = egress("none")
    assert len(none) == 2  # DNS and the object store, nothing else
    assert none[1]["ports"] == [{"protocol": "TCP", "port": 443}]
    public = egress("public")[2]["to"][0]["ipBlock"]
    assert public["cidr"] == "0.0.0.0/0"
    assert set(public["except"]) == set(NON_PUBLIC)
    listed = egress(["10.0.5.7:5432", "api.example.com:443"])[2:]
    assert listed[0] == {
        "to": [{"ipBlock": {"cidr": "10.0.5.7/32"}}],
        "ports": [{"protocol": "TCP", "port": 5432}],
    }
    assert listed[1]["to"][0]["ipBlock"]["except"] == list(NON_PUBLIC)


def test_yaml_round_trips() -> None:
    yaml = pytest.importorskip("yaml")
    objs = tenant_manifest(_tenant())
    assert list(yaml.safe_load_all(render_yaml(objs))) == objs


@pytest.mark.parametrize("bad", ["lots", "12x", "-1m", ""])
def test_bad_memory_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="memory"):
        quantity_memory(bad)


@pytest.mark.docker
def test_fleet_k8s_manifest_prints_a_valid_stream(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, docker_client: object
) -> None:
    """A tenant that does not exist yet (looked up on the engine) gets the defaults."""
    from tests.fleet_support import cli

    yaml = pytest.importorskip("yaml")
    kv = pytest.importorskip("kubernetes_validate")
    monkeypatch.setenv("FLEET_CONFIG", "")
    monkeypatch.setenv("FLEET_S3_ENDPOINT", "https://s3.example.com")
    r = cli(capsys, "k8s", "manifest", "k8s-new-tenant")
    assert r.code == 0, r.err
    objs = list(yaml.safe_load_all(r.out))
    assert [o["kind"] for o in objs] == ["Service", "NetworkPolicy", "StatefulSet"]
    for o in objs:
        kv.validate(o, kv.latest_version(), strict=True)


def test_fleet_k8s_manifest_refuses_the_embedded_store(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fleet_support import cli

    monkeypatch.setenv("FLEET_CONFIG", "")
    monkeypatch.delenv("FLEET_S3_ENDPOINT", raising=False)
    r = cli(capsys, "k8s", "manifest", "alice")
    assert r.code == 2
    assert "FLEET_S3_ENDPOINT" in r.err and len(r.err.strip().splitlines()) == 1
