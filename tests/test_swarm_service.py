"""The Swarm service spec of a tenant (fleet/engine/swarm_service.py), without a swarm: what
it must hold (hardening, limits, reservations, the token and the S3 key as secret files, the
node constraint, the host-mode port) and what it must not (either in the environment).
The swarm itself runs it in tests/swarm/."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fleet.core.errors import ConfigError
from fleet.core.hosting import TenantSpec
from fleet.engine.swarm_service import (
    Placement,
    SecretRef,
    allocate_port,
    constraints,
    current_task,
    service_args,
    task_place,
)
from fleet.supervisor.s3 import S3Settings

TOKEN = "tok-0123456789abcdef-not-in-env"
S3_SECRET = "s3-secret-key"


KEY = SecretRef("key-id", "key-name")


def _args(node: str | None = "edge-1", key: SecretRef | None = KEY, **kw: Any) -> dict[str, Any]:
    spec = TenantSpec(
        tenant="alice",
        image="litefleet/tenant:0.1.0",
        token=TOKEN,
        memory="512m",
        cpus=1.5,
        pids=128,
        env={"APP_SETTING": "x"},
        labels={"litefleet.label.team": "red"},
        s3=S3Settings("http://s3.internal:9000", "b", "us-east-1", "key-id", S3_SECRET),
        **kw,
    )
    where = Placement("sha256:" + "a" * 64, "sec-id", "sec-name", 30007, node, key)
    return service_args(spec, where)


def test_one_replica_restart_any_stop_first_host_mode_port() -> None:
    args = _args()
    assert args["name"] == "litefleet-alice"
    assert args["mode"] == {"Replicated": {"Replicas": 1}}
    assert args["update_config"]["Order"] == "stop-first"
    tmpl = args["task_template"]
    assert tmpl["RestartPolicy"]["Condition"] == "any"
    assert tmpl["Placement"]["Constraints"] == ["node.labels.litefleet.host==edge-1"]
    assert args["endpoint_spec"]["Ports"] == [
        {"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": 30007, "PublishMode": "host"}
    ]
    assert args["labels"]["litefleet.port"] == "30007"
    assert args["labels"]["litefleet.tenant"] == "alice"
    assert args["labels"]["litefleet.label.team"] == "red"
    assert _args(node=None)["task_template"]["Placement"]["Constraints"] == []


def test_hardening_limits_and_reservation() -> None:
    tmpl = _args()["task_template"]
    c = tmpl["ContainerSpec"]
    assert c["Image"].startswith("sha256:")  # by id: no registry lookup on the nodes
    assert c["User"] == "0:0" and c["ReadOnly"] is True and c["Init"] is False
    assert c["CapabilityDrop"] == ["ALL"]
    assert c["CapabilityAdd"] == ["SETUID", "SETGID", "SETPCAP"]  # the supervisor drops them
    limits, reserved = tmpl["Resources"]["Limits"], tmpl["Resources"]["Reservations"]
    assert limits == {"NanoCPUs": 1_500_000_000, "MemoryBytes": 512 << 20, "Pids": 128}
    assert reserved == {"MemoryBytes": 512 << 20}
    volume, tmp, run = c["Mounts"]
    assert run["Target"] == "/run/litefleet" and run["TmpfsOptions"]["Mode"] == 0o1777
    assert volume["Source"] == "litefleet-alice-data" and volume["Target"] == "/data"
    assert tmp["Type"] == "tmpfs" and tmp["Target"] == "/tmp"


def test_the_token_and_the_s3_key_are_secret_files_never_in_the_environment() -> None:
    args = _args()
    c = args["task_template"]["ContainerSpec"]
    assert TOKEN not in json.dumps(args) and S3_SECRET not in json.dumps(args)
    env = dict(e.split("=", 1) for e in c["Env"])
    assert "AGENT_RUNTIME_TOKEN" not in env and "LITESTREAM_SECRET_ACCESS_KEY" not in env
    assert env["AGENT_RUNTIME_TOKEN_FILE"] == "/run/secrets/litefleet-token"
    assert env["LITESTREAM_SECRET_ACCESS_KEY_FILE"] == "/run/secrets/litefleet-s3-key"
    assert env["LITESTREAM_ACCESS_KEY_ID"] == "key-id"  # an id, not a secret
    assert env["LITEFLEET_HOST"] == "{{.Node.ID}}"  # the lease names the node
    assert env["APP_SETTING"] == "x"
    token, key = c["Secrets"]
    assert (token["SecretID"], key["SecretID"]) == ("sec-id", KEY.id)
    # The token for the runtime's uid, the key for the keeper's (and Litestream's).
    for secret, name, uid in (
        (token, "litefleet-token", "10002"),
        (key, "litefleet-s3-key", "10001"),
    ):
        assert secret["File"] == {"Name": name, "UID": uid, "GID": uid, "Mode": 0o400}


def test_a_sqlite_tenant_without_its_key_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="S3 key as a secret"):
        _args(key=None)
    pg = _args(key=None, db_url="postgresql://u@db:5432/t")  # no S3 key: only the token
    c = pg["task_template"]["ContainerSpec"]
    assert [s["File"]["Name"] for s in c["Secrets"]] == ["litefleet-token"]
    assert not any(e.startswith("LITESTREAM_SECRET_ACCESS_KEY") for e in c["Env"])


def test_ports_and_constraints() -> None:
    assert allocate_port([], 30000, 30002) in {30000, 30001, 30002}
    assert allocate_port([30000, 30002], 30000, 30002) == 30001
    with pytest.raises(ConfigError, match="taken"):
        allocate_port([30000, 30001], 30000, 30001)
    assert constraints("n") == ["node.labels.litefleet.host==n"]


def test_where_a_task_runs() -> None:
    tasks = [
        {"ID": "old", "DesiredState": "shutdown", "NodeID": "n2", "UpdatedAt": "2",
         "Status": {"State": "failed"}},
        {"ID": "new", "DesiredState": "running", "NodeID": "n1", "UpdatedAt": "3",
         "Status": {"State": "running"}},
    ]  # fmt: skip
    nodes = {"n1": {"Spec": {"Labels": {"litefleet.host": "one"}}, "Status": {"Addr": "10.0.0.1"}}}
    task = current_task(tasks)
    assert task is not None and task["ID"] == "new"
    place = task_place(task, nodes)
    assert (place.node, place.address, place.state) == ("one", "10.0.0.1", "running")
    assert current_task([tasks[0]]) is None


def test_a_service_gives_back_the_spec_it_was_made_from() -> None:
    """What wake, fork, deploy and migrate make a new service from: every setting label (TTL,
    idle park, app, user labels), the app's environment, limits, template; nothing of the
    placement's own and no secret."""
    from fleet.core import names
    from fleet.core.hosting import Tenant
    from fleet.engine.swarm_hosting import spec_of_service

    labels = {
        "litefleet.label.team": "red",
        names.LABEL_TTL: "2h",
        names.LABEL_IDLE_PARK: "10m",
        names.LABEL_APP: "my_agent",
    }
    spec = TenantSpec(
        tenant="alice",
        image="litefleet/tenant:0.1.0",
        token=TOKEN,
        app="my_agent",
        memory="512m",
        cpus=1.5,
        env={"APP_SETTING": "x"},
        labels=labels,
        s3=S3Settings("http://s3.internal:9000", "b", "us-east-1", "key-id", S3_SECRET),
        template="research",
        template_version="3",
    )
    args = service_args(spec, Placement("sha256:" + "a" * 64, "s", "s", 30007, "edge-1", KEY))
    handle = {"Spec": {"Labels": args["labels"], "TaskTemplate": args["task_template"]}}
    t = Tenant(
        name="alice", host="edge-1", state="running", health="healthy", created_at=0.0,
        labels={"team": "red"}, ttl="2h", expires_at=None, app="my_agent",
        backend=names.BACKEND_SQLITE, image=spec.image, template="research",
        template_version="3", handle=handle,
    )  # fmt: skip
    back = spec_of_service(t, TOKEN)
    assert dict(back.labels) == labels
    assert dict(back.env) == {"APP_SETTING": "x"}
    assert (back.memory, back.cpus, back.app) == ("512m", 1.5, "my_agent")
    assert (back.template, back.template_version, back.token) == ("research", "3", TOKEN)
    assert back.s3 is None and back.db_url is None
    assert back.engine_labels().items() <= args["labels"].items()  # the same service again


def test_a_service_reads_as_a_tenant_with_its_settings() -> None:
    """`fleet ls` and the gateway read a Swarm tenant from its service: the TTL, the idle park
    (what the gateway parks by) and the user labels come from the service's labels."""
    from fleet.core import names
    from fleet.engine.swarm_hosting import tenant_of

    labels = {names.LABEL_TTL: "2h", names.LABEL_IDLE_PARK: "10m", "litefleet.label.team": "red"}
    spec = TenantSpec(tenant="alice", image="litefleet/tenant:0.1.0", token=TOKEN, labels=labels)
    args = service_args(spec, Placement("sha256:" + "a" * 64, "s", "s", 30007, None, KEY))
    service = {
        "Spec": {"Name": args["name"], "Labels": args["labels"], "Mode": args["mode"]},
        "CreatedAt": "2026-11-29T06:00:00.5Z",
    }
    t = tenant_of(service, [], {}, {})
    assert (t.name, t.ttl, t.idle_park, t.labels) == ("alice", "2h", "10m", {"team": "red"})
    assert t.state == "restarting" and t.image == "litefleet/tenant:0.1.0"  # no task yet
