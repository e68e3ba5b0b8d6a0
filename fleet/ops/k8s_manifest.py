"""A tenant as Kubernetes objects: what `fleet k8s manifest T` prints (docs/kubernetes.md).

A pure function of the tenant's settings: no cluster, no Docker, no object store. The tenant
is the same one a Docker engine or Swarm runs (image, hardening, limits, labels, TTL, egress),
shaped for Kubernetes:

- a StatefulSet of one replica: Kubernetes starts a replacement pod only once the old one is
  known to be gone, and the S3 lease stays the fence behind that;
- the restore as an init container (Litestream restores when the volume has no database);
- the lease keeper holding Litestream as a native sidecar (an init container with
  ``restartPolicy: Always``, Kubernetes >= 1.29): it starts before the runtime and stops after
  it, so Litestream's final sync sees the runtime's last commit;
- the runtime as the main container, its token from a Secret;
- a headless Service for the gateway, and a NetworkPolicy for the egress rules.

Secrets are referenced, never written: the manifest holds no token and no S3 key, and a pod
does not start until its Secrets exist (docs/kubernetes.md shows how to create them).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fleet.core import names
from fleet.core.context import Fleet
from fleet.core.errors import ConfigError
from fleet.core.hosting import Tenant, TenantSpec
from fleet.core.names import DATA_DIR, DB_PATH, LITESTREAM_CONFIG, TENANT_UID
from fleet.core.names import RUNTIME_PORT as TENANT_PORT

LEASE_FILE = "/run/litefleet/lease-held"
GATEWAY_SELECTOR = {"litefleet.role": "gateway"}
# What `--egress public` never reaches: private, shared, link-local (cloud metadata) ranges.
NON_PUBLIC = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16")
_MEMORY_RE = re.compile(r"^(\d+)([kmg]?)b?$", re.IGNORECASE)


@dataclass(frozen=True)
class K8sTenant:
    """The settings of one tenant that shape its manifest."""

    tenant: str
    image: str
    s3_endpoint: str
    s3_bucket: str
    s3_region: str = "us-east-1"
    app: str = names.DEFAULT_APP
    memory: str = names.DEFAULT_MEMORY  # Docker notation, as `fleet up --memory`
    cpus: float = names.DEFAULT_CPUS
    labels: Mapping[str, str] = field(default_factory=dict)
    ttl_expires_at: str | None = None  # ISO 8601, as `fleet up --ttl` records it
    env: Mapping[str, str] = field(default_factory=dict)
    egress: str | Sequence[str] = "public"  # "public", "none" or HOST[:PORT] entries
    namespace: str = "litefleet"
    storage: str = "1Gi"
    tmp_size: str = "64Mi"


def quantity_memory(docker_memory: str) -> str:
    """``256m`` (Docker: binary units) -> ``256Mi``."""
    m = _MEMORY_RE.fullmatch(docker_memory.strip())
    if m is None:
        raise ValueError(f"memory must look like 256m or 1g, not {docker_memory!r}")
    unit = {"": "", "k": "Ki", "m": "Mi", "g": "Gi"}[m.group(2).lower()]
    return f"{int(m.group(1))}{unit}"


def quantity_cpu(cpus: float) -> str:
    if cpus <= 0:
        raise ValueError("cpus must be positive")
    return f"{round(cpus * 1000)}m"


def tenant_manifest(t: K8sTenant) -> list[dict[str, Any]]:
    """The tenant's objects, in the order to apply them."""
    name = names.container_name(t.tenant)
    return [
        _service(t, name),
        _network_policy(t, name),
        _stateful_set(t, name),
    ]


def render_yaml(objects: Sequence[Mapping[str, Any]]) -> str:
    """Objects as one YAML stream (``kubectl apply -f -`` reads it)."""
    import yaml

    return "".join(
        "---\n" + yaml.safe_dump(dict(o), sort_keys=False, default_flow_style=False)
        for o in objects
    )


def secret_names(tenant: str) -> dict[str, str]:
    """The Secrets a tenant's pod reads: its API token, and the S3 key of its replica."""
    return {"token": f"litefleet-{tenant}-token", "s3": f"litefleet-{tenant}-s3"}


def _meta(t: K8sTenant, name: str) -> dict[str, Any]:
    annotations = {"litefleet.ttl-expires-at": t.ttl_expires_at} if t.ttl_expires_at else {}
    meta: dict[str, Any] = {"name": name, "namespace": t.namespace, "labels": _labels(t)}
    if annotations:
        meta["annotations"] = annotations
    return meta


def _labels(t: K8sTenant) -> dict[str, str]:
    # User labels first: the fleet's own keys win.
    return {**t.labels, "litefleet.role": "tenant", "litefleet.tenant": t.tenant}


def _selector(t: K8sTenant) -> dict[str, str]:
    return {"litefleet.tenant": t.tenant}


def _service(t: K8sTenant, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(t, name),
        "spec": {
            "clusterIP": "None",  # headless: the StatefulSet's pod, by name
            "selector": _selector(t),
            "ports": [{"name": "api", "port": TENANT_PORT, "targetPort": TENANT_PORT}],
        },
    }


def _stateful_set(t: K8sTenant, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(t, name),
        "spec": {
            "replicas": 1,
            "serviceName": name,
            "selector": {"matchLabels": _selector(t)},
            # One pod at a time, replaced only after the old one has stopped (stop-first).
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate"},
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": "Retain",
                "whenScaled": "Retain",
            },
            "template": {"metadata": {"labels": _labels(t)}, "spec": _pod_spec(t)},
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data", "labels": _selector(t)},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": t.storage}},
                    },
                }
            ],
        },
    }


def _pod_spec(t: K8sTenant) -> dict[str, Any]:
    return {
        "automountServiceAccountToken": False,  # no Kubernetes API from inside a tenant
        "enableServiceLinks": False,  # no other services' addresses in the environment
        "terminationGracePeriodSeconds": 30,  # runtime drain + Litestream's final sync
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": TENANT_UID,
            "runAsGroup": TENANT_UID,
            "fsGroup": TENANT_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [_restore_container(t), _replicate_sidecar(t)],
        "containers": [_runtime_container(t)],
        "volumes": [
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": t.tmp_size}},
            {"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        ],
    }


def _hardened(t: K8sTenant, name: str, command: list[str]) -> dict[str, Any]:
    """A container of the tenant image with the hardening every tenant container has."""
    return {
        "name": name,
        "image": t.image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "run", "mountPath": "/run/litefleet"},
        ],
    }


def _s3_env(t: K8sTenant) -> list[dict[str, Any]]:
    s3 = secret_names(t.tenant)["s3"]
    return [
        {"name": "TENANT", "value": t.tenant},
        {"name": "LITEFLEET_S3_ENDPOINT", "value": t.s3_endpoint},
        {"name": "LITEFLEET_S3_BUCKET", "value": t.s3_bucket},
        {"name": "LITEFLEET_S3_REGION", "value": t.s3_region},
        *(
            {"name": var, "valueFrom": {"secretKeyRef": {"name": s3, "key": key}}}
            for var, key in (
                ("LITESTREAM_ACCESS_KEY_ID", "access-key-id"),
                ("LITESTREAM_SECRET_ACCESS_KEY", "secret-access-key"),
            )
        ),
    ]


def _restore_container(t: K8sTenant) -> dict[str, Any]:
    c = _hardened(
        t,
        "restore",
        ["litestream", "restore", "-config", LITESTREAM_CONFIG,
         "-if-db-not-exists", "-if-replica-exists", DB_PATH],
    )  # fmt: skip
    c["env"] = _s3_env(t)
    c["resources"] = _resources(t)
    return c


def _replicate_sidecar(t: K8sTenant) -> dict[str, Any]:
    c = _hardened(
        t,
        "replicate",
        ["python3", "-I", "-m", "fleet.supervisor", "hold", "--",
         "litestream", "replicate", "-config", LITESTREAM_CONFIG],
    )  # fmt: skip
    c["restartPolicy"] = "Always"  # a native sidecar: up before the runtime, down after it
    c["env"] = [
        *_s3_env(t),
        # The lease holder: the node and the pod, as LITEFLEET_HOST/container on Docker.
        {"name": "LITEFLEET_HOST", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "LITEFLEET_LEASE_FILE", "value": LEASE_FILE},
    ]
    # The runtime starts only once the keeper holds the lease (it writes LEASE_FILE then).
    c["startupProbe"] = {
        "exec": {"command": ["test", "-f", LEASE_FILE]},
        "periodSeconds": 1,
        "failureThreshold": 60,
    }
    c["resources"] = {"requests": {"memory": "48Mi"}, "limits": {"memory": "96Mi"}}
    return c


def _runtime_container(t: K8sTenant) -> dict[str, Any]:
    c = _hardened(
        t,
        "runtime",
        ["agent-runtime", "serve", "--db", DB_PATH, "--app", t.app,
         "--host", "0.0.0.0", "--port", str(TENANT_PORT)],
    )  # fmt: skip
    reserved = {"TENANT", "AGENT_RUNTIME_TOKEN", "AGENT_RUNTIME_APP", "AGENT_RUNTIME_DB"}
    c["env"] = [
        *({"name": k, "value": v} for k, v in sorted(t.env.items()) if k not in reserved),
        {"name": "TENANT", "value": t.tenant},
        {
            "name": "AGENT_RUNTIME_TOKEN",
            "valueFrom": {
                "secretKeyRef": {"name": secret_names(t.tenant)["token"], "key": "token"}
            },
        },
    ]
    c["ports"] = [{"name": "api", "containerPort": TENANT_PORT}]
    c["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": TENANT_PORT}, "periodSeconds": 5}
    c["livenessProbe"] = {
        "httpGet": {"path": "/healthz", "port": TENANT_PORT},
        "periodSeconds": 15,
        "failureThreshold": 4,
    }
    c["resources"] = _resources(t)
    return c


def _resources(t: K8sTenant) -> dict[str, Any]:
    # Requests = limits: the scheduler places by what the tenant may use (as Swarm's
    # reservations), and the pod is in the Guaranteed QoS class.
    q = {"memory": quantity_memory(t.memory), "cpu": quantity_cpu(t.cpus)}
    return {"requests": dict(q), "limits": dict(q)}


def _network_policy(t: K8sTenant, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(t, name),
        "spec": {
            "podSelector": {"matchLabels": _selector(t)},
            "policyTypes": ["Ingress", "Egress"],
            # Only the fleet's gateway reaches the API; other tenants do not.
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": dict(GATEWAY_SELECTOR)}}],
                    "ports": [{"protocol": "TCP", "port": TENANT_PORT}],
                }
            ],
            "egress": _egress_rules(t),
        },
    }


def _egress_rules(t: K8sTenant) -> list[dict[str, Any]]:
    rules = [_dns_rule(), _store_rule(t)]
    if t.egress == "none":
        return rules
    if t.egress == "public":
        rules.append({"to": [{"ipBlock": {**PUBLIC_ADDRESSES, "except": list(NON_PUBLIC)}}]})
        return rules
    entries = [t.egress] if isinstance(t.egress, str) else list(t.egress)
    for entry in entries:
        rules.append(_host_rule(entry))
    return rules


def _dns_rule() -> dict[str, Any]:
    return {
        "to": [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                },
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }


def _store_rule(t: K8sTenant) -> dict[str, Any]:
    """Whatever the policy, the tenant's own processes reach the object store (any address
    when the endpoint is a DNS name: it may well resolve to a private one)."""
    return _host_rule(_host_port(t.s3_endpoint), names_reach=ANY_ADDRESS)


def _host_port(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"not a URL with a host: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


ANY_ADDRESS: dict[str, Any] = {"cidr": "0.0.0.0/0"}
PUBLIC_ADDRESSES: dict[str, Any] = {"cidr": "0.0.0.0/0", "except": list(NON_PUBLIC)}


def _host_rule(entry: str, names_reach: dict[str, Any] = PUBLIC_ADDRESSES) -> dict[str, Any]:
    """``HOST[:PORT]`` as an egress rule. An IP is one ipBlock. A NetworkPolicy selects
    addresses, not names, so a DNS name allows its port to ``names_reach`` (public addresses
    by default); a CNI with FQDN policies can narrow it (docs/kubernetes.md)."""
    host, sep, port = entry.rpartition(":")
    if not sep:
        host, port = entry, ""
    try:
        ip = ipaddress.ip_address(host)
        block: dict[str, Any] = {"cidr": f"{ip}/{ip.max_prefixlen}"}
    except ValueError:
        block = {k: (list(v) if isinstance(v, list) else v) for k, v in names_reach.items()}
    rule: dict[str, Any] = {"to": [{"ipBlock": block}]}
    if port:
        rule["ports"] = [{"protocol": "TCP", "port": int(port)}]
    return rule


def manifest_for(fleet: Fleet, tenant: str) -> str:
    """`fleet k8s manifest T`: the tenant as it runs now (its image, app, limits, labels,
    environment), else a new tenant with the defaults; the object store of the settings."""
    from fleet.engine.image_transfer import registry_ref

    from .tenants import find_or_none

    names.check_tenant(tenant)
    settings = fleet.settings
    endpoint = settings.s3_tenant_endpoint or settings.s3_endpoint
    if not endpoint:
        raise ConfigError(
            "a Kubernetes tenant needs an object store its cluster reaches, not the embedded one",
            "set FLEET_S3_ENDPOINT (and FLEET_S3_TENANT_ENDPOINT if pods reach it elsewhere)",
        )
    existing = find_or_none(fleet, tenant)
    spec = fleet.hosting.spec_of(existing) if existing is not None else None
    image = spec.image if spec is not None else settings.image
    k8s = K8sTenant(
        tenant=tenant,
        image=registry_ref(settings.registry, image) if settings.registry else image,
        s3_endpoint=endpoint,
        s3_bucket=settings.s3_bucket,
        s3_region=settings.s3_region,
        **(_from_spec(spec, existing) if spec is not None and existing is not None else {}),
    )
    return render_yaml(tenant_manifest(k8s))


def _from_spec(spec: TenantSpec, t: Tenant) -> dict[str, Any]:
    expires = (
        datetime.fromtimestamp(t.expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if t.expires_at is not None
        else None
    )
    return {
        "app": spec.app,
        "memory": spec.memory,
        "cpus": spec.cpus,
        "labels": dict(t.labels),
        "env": dict(spec.env),
        "ttl_expires_at": expires,
        "egress": _egress_entries(spec.egress),
    }


def _egress_entries(text: str) -> str | list[str]:
    """The tenant's policy (`fleet up --egress`) as K8sTenant takes it."""
    from fleet.engine.egress import parse_egress

    policy = parse_egress(text)
    return str(policy) if policy.kind != "list" else [str(d) for d in policy.destinations]
