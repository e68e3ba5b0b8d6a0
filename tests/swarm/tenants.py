"""Tenant services on the test swarm, made from swarm_staging/swarm_service.py's spec.

``SwarmTenants`` creates tenants (secret, service), finds where each runs, waits for health,
and removes everything it made (services, secrets, and the volumes on both nodes).
"""

from __future__ import annotations

import contextlib
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from fleet.core.hosting import TenantSpec
from fleet.engine.swarm_service import (
    HOST_LABEL,
    LABEL_PORT,
    Placement,
    SecretRef,
    TaskPlace,
    allocate_port,
    current_task,
    service_args,
    task_place,
)
from fleet.supervisor.s3 import S3Settings
from tests.swarm_cluster import SwarmCluster

BUCKET = "litefleet-swarm-test"
NODE_NAMES = ("one", "two")  # litefleet.host labels of node 1 and node 2


@dataclass
class SwarmTenantHandle:
    name: str
    token: str = field(repr=False)
    port: int
    service_id: str
    secret_id: str
    key_secret_id: str


class SwarmTenants:
    def __init__(self, cluster: SwarmCluster, image: str) -> None:
        import docker

        self.cluster = cluster
        self.manager = docker.DockerClient(cluster.manager_url, timeout=60)
        self.node2 = docker.DockerClient(cluster.node2_url, timeout=60)
        self.image = image
        self.image_id = str(self.manager.images.get(image).id)
        self.made: list[SwarmTenantHandle] = []
        self._label_nodes()
        self._ensure_bucket()

    # -- setup

    def _label_nodes(self) -> None:
        for node_id, name in zip(
            (self.cluster.node1_id, self.cluster.node2_id), NODE_NAMES, strict=True
        ):
            node = self.manager.nodes.get(node_id)
            spec = node.attrs["Spec"]
            if (spec.get("Labels") or {}).get(HOST_LABEL) != name:
                node.update({**spec, "Labels": {**(spec.get("Labels") or {}), HOST_LABEL: name}})

    def _ensure_bucket(self) -> None:
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=self.cluster.s3_endpoint,
            aws_access_key_id="litefleet",
            aws_secret_access_key="litefleet-test",
            region_name="us-east-1",
        )
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=BUCKET)

    # -- tenants

    def create(self, host: str | None, *, prefix: str = "sw") -> SwarmTenantHandle:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        token = secrets.token_urlsafe(24)
        secret = self.manager.secrets.create(
            name=f"litefleet-{name}-token-{uuid.uuid4().hex[:6]}",
            data=token.encode(),
            labels={"litefleet.tenant": name},
        )
        used = [
            int(s.attrs["Spec"]["Labels"].get(LABEL_PORT, 0))
            for s in self.manager.services.list(filters={"label": "litefleet.role=tenant"})
        ]
        port = allocate_port(used, 30000, 32767)
        spec = TenantSpec(
            tenant=name,
            image=self.image,
            token=token,
            s3=S3Settings(
                endpoint=self.cluster.s3_endpoint,
                bucket=BUCKET,
                region="us-east-1",
                access_key_id="litefleet",
                secret_access_key="litefleet-test",
            ),
            labels={"litefleet.test": "true"},
        )
        key = self.manager.secrets.create(
            name=f"litefleet-{name}-s3-key-{uuid.uuid4().hex[:6]}",
            data=spec.s3.secret_access_key.encode() if spec.s3 else b"",
            labels={"litefleet.tenant": name},
        )
        where = Placement(self.image_id, secret.id, secret.name, port, host,
                          SecretRef(key.id, key.name))  # fmt: skip
        service = self.manager.api.create_service(**service_args(spec, where))
        handle = SwarmTenantHandle(name, token, port, str(service["ID"]), str(secret.id),
                                   str(key.id))  # fmt: skip
        self.made.append(handle)
        return handle

    def place(self, t: SwarmTenantHandle) -> TaskPlace | None:
        tasks = self.manager.api.tasks(filters={"service": t.service_id})
        task = current_task(tasks)
        if task is None:
            return None
        nodes = {n.id: n.attrs for n in self.manager.nodes.list()}
        return task_place(task, nodes)

    def http(self, t: SwarmTenantHandle, address: str) -> httpx.Client:
        return httpx.Client(
            base_url=f"http://{address}:{t.port}",
            headers={"Authorization": f"Bearer {t.token}"},
            trust_env=False,
            timeout=5.0,
        )

    def wait_healthy(self, t: SwarmTenantHandle, node: str, timeout: float = 120.0) -> TaskPlace:
        """Until the tenant's current task runs on ``node`` and answers /healthz there."""
        deadline = time.monotonic() + timeout
        place = None
        while time.monotonic() < deadline:
            place = self.place(t)
            if place is not None and place.node == node and place.address:
                try:
                    r = httpx.get(
                        f"http://{place.address}:{t.port}/healthz", timeout=1, trust_env=False
                    )
                    if r.status_code == 200:
                        return place
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        tasks = [
            (
                x.get("NodeID", "-")[:8],
                x["DesiredState"],
                x["Status"]["State"],
                x["Status"].get("Err"),
            )
            for x in self.manager.api.tasks(filters={"service": t.service_id})
        ]
        raise AssertionError(f"{t.name} not healthy on {node} after {timeout:g}s: {place} {tasks}")

    def service_attrs(self, t: SwarmTenantHandle) -> dict[str, Any]:
        return dict(self.manager.api.inspect_service(t.service_id))

    def close(self) -> None:
        """Remove every service and secret made, and their volumes on both nodes."""
        import docker.errors

        for t in self.made:
            with contextlib.suppress(docker.errors.NotFound):
                self.manager.api.remove_service(t.service_id)
        for client in (self.manager, self.node2):
            _wait_no_tasks(client, [t.name for t in self.made])
        for t in self.made:
            for secret_id in (t.secret_id, t.key_secret_id):
                with contextlib.suppress(docker.errors.NotFound):
                    self.manager.api.remove_secret(secret_id)
            for client in (self.manager, self.node2):
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    client.volumes.get(f"litefleet-{t.name}").remove(force=True)
        self.manager.close()
        self.node2.close()


def _wait_no_tasks(client: Any, names: list[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            left = [
                c
                for c in client.containers.list(all=True, sparse=True)
                if any(f"litefleet-{n}." in " ".join(c.attrs.get("Names") or []) for n in names)
            ]
            if not left:
                return
        time.sleep(0.3)
