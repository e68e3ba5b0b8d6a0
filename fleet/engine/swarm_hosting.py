"""Tenants as Docker Swarm services: the Hosting of fleet/core with FLEET_BACKEND=swarm.

Each tenant is service ``litefleet-<tenant>`` (swarm_service.py) on the swarm of
FLEET_SWARM_MANAGER; Swarm places it and starts it on another node when its node dies. Host
names are the nodes' ``litefleet.host`` labels (`fleet hosts label NODE NAME`), else their ids.
Everything is read from the manager's API; the fleet keeps no database. The token lives twice:
as a Swarm secret the task mounts, and as a Swarm config no task mounts, which is how the
fleet reads it back (a secret cannot be read through the API). The S3 secret key is a Swarm
secret the task mounts, never read back (each service made gets the key of its spec).

What the manager's API cannot reach: a worker's volumes and processes. Volumes are removed
through the node's own engine when FLEET_HOSTS lists it under the node's name; `exec`, one-off
containers and reading a volume are not offered (docs/swarm.md says what replaces them).
"""

from __future__ import annotations

import base64
import contextlib
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from fleet.core import names
from fleet.core.errors import FleetError, FleetTimeout, InvalidArgument
from fleet.core.hosting import (
    HostInfo,
    OneOff,
    Sandbox,
    SandboxResult,
    Stopped,
    SwarmNode,
    Tenant,
    TenantSpec,
    Transfer,
    TransferProgress,
    settings_labels,
)
from fleet.core.log import log

from .hosts import Host
from .image_transfer import ensure_image_on
from .sandbox import run_sandboxed
from .swarm_service import (
    HOST_LABEL,
    LABEL_IMAGE,
    LABEL_PORT,
    Placement,
    SecretRef,
    allocate_port,
    constraints,
    current_task,
    service_args,
    task_place,
)

# On a tenant's secrets (token, S3 key) and its token's config: removed with the tenant.
LABEL_TOKEN_OF = names.LABEL_PREFIX + "token-of"
_RUNNING = ("starting", "running")
_VOLUME_RELEASE_S = 30.0
_ENDED = ("complete", "shutdown", "failed", "rejected", "orphaned", "remove")


class SwarmHosting:
    """``manager_url``: a manager's Docker URL (None: the local engine); ``engines``: the
    nodes' own engines from FLEET_HOSTS, by node name (may be empty)."""

    def __init__(
        self,
        manager_url: str | None,
        image: str,
        registry: str | None,
        ports: tuple[int, int],
        engines: list[Host],
    ) -> None:
        self.manager = Host("manager", manager_url)
        self.image = image
        self.registry = registry
        self.ports = ports
        self.engines = engines

    @property
    def api(self) -> Any:
        return self.manager.client.api

    # -- hosts (nodes)

    def _nodes(self) -> dict[str, dict[str, Any]]:
        return {str(n["ID"]): n for n in self.api.nodes()}

    def host_names(self) -> list[str]:
        return sorted(node_name(n) for n in self._nodes().values())

    def hosts(self) -> list[HostInfo]:
        nodes = self._nodes()
        tasks = [t for t in self.api.tasks() if t.get("DesiredState") == "running"]
        tenant_services = {s["ID"] for s in self._services()}
        infos = [
            node_info(n, [t for t in tasks if t.get("NodeID") == nid and t["ServiceID"] in
                          tenant_services])
            for nid, n in nodes.items()
        ]  # fmt: skip
        return sorted(infos, key=lambda h: h.name)

    def place(self, host: str | None) -> str:
        """The node label ``host`` (checked); "" lets Swarm decide (None or "" given: what
        an earlier ``place`` returned is passed on by restore and fork)."""
        if not host:
            return ""
        if not any(node_label(n) == host for n in self._nodes().values()):
            raise InvalidArgument(
                f"no Swarm node is labelled {HOST_LABEL}={host}",
                f"`fleet hosts` lists the nodes; `fleet hosts label NODE {host}` names one",
            )
        return host

    def label(self, node: str, name: str) -> SwarmNode:
        """`fleet hosts label NODE NAME`: NODE is an id (or unique prefix) or a hostname."""
        names.check_tenant(name)  # the same DNS-label rule: it ends up in a constraint
        found = [
            n for nid, n in self._nodes().items()
            if nid.startswith(node) or n["Description"].get("Hostname") == node
        ]  # fmt: skip
        if len(found) != 1:
            raise InvalidArgument(
                f"{'no' if not found else 'more than one'} Swarm node matches {node!r}",
                "give the node id from `fleet hosts`",
            )
        spec = found[0]["Spec"]
        spec["Labels"] = {**(spec.get("Labels") or {}), HOST_LABEL: name}
        self.api.update_node(found[0]["ID"], found[0]["Version"]["Index"], spec)
        return swarm_node(self.api.inspect_node(found[0]["ID"]))

    def ensure_image(
        self, host: str, image: str, progress: TransferProgress | None = None
    ) -> Transfer:
        """The manager must have the image (services name it by id); nodes whose engines
        FLEET_HOSTS lists get it copied (or pulled from FLEET_REGISTRY)."""
        import docker.errors

        try:
            self.manager.client.images.get(image)
        except docker.errors.ImageNotFound:
            raise FleetError(
                f"image {image} is not on the Swarm manager", "build it there (`make images`)"
            ) from None
        for engine in self.engines:
            if engine.reachable():
                ensure_image_on([self.manager, *self.engines], engine, image, self.registry,
                                progress)  # fmt: skip
        return Transfer(image, host or "swarm", None, 0, "present")

    def gateway(self, host: str) -> str:
        raise InvalidArgument(
            "on Swarm, a loopback --db-url cannot be rewritten for a node",
            "give a PostgreSQL address every node reaches",
        )

    # -- tenants

    def _services(self, labels: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        wanted = [f"{names.LABEL_ROLE}={names.ROLE_TENANT}"]
        wanted += [f"{k}={v}" for k, v in (labels or {}).items()]
        return list(self.api.services(filters={"label": wanted}))

    def tenants(
        self, *, labels: dict[str, str] | None = None, name: str | None = None
    ) -> list[Tenant]:
        wanted = dict(names.engine_labels(labels or {}))
        if name is not None:
            wanted[names.LABEL_TENANT] = name
        services = self._services(wanted)
        if not services:
            return []
        nodes = self._nodes()
        tasks = self.api.tasks(filters={"service": [s["ID"] for s in services]})
        tokens = self._tokens(name)
        found = [
            tenant_of(s, [t for t in tasks if t["ServiceID"] == s["ID"]], nodes, tokens)
            for s in services
        ]
        return sorted(found, key=lambda t: t.name)

    def _tokens(self, tenant: str | None = None) -> dict[str, str]:
        """tenant -> token, from the configs that keep them for the fleet (one tenant's, or
        all). A config removed meanwhile (a parallel `rm`) is skipped."""
        import docker.errors

        label = LABEL_TOKEN_OF if tenant is None else f"{LABEL_TOKEN_OF}={tenant}"
        out = {}
        for c in self.api.configs(filters={"label": label}):
            try:
                data = self.api.inspect_config(c["ID"])["Spec"].get("Data") or ""
            except docker.errors.NotFound:
                continue
            out[c["Spec"]["Labels"][LABEL_TOKEN_OF]] = base64.b64decode(data).decode()
        return out

    def create(self, spec: TenantSpec, host: str) -> Tenant:
        if spec.egress != names.DEFAULT_EGRESS:  # nothing on a node would enforce it
            raise InvalidArgument(
                f"--egress {spec.egress}: egress policies are not enforced on Swarm (a Swarm "
                "tenant reaches what its node reaches)",
                "leave --egress out, or run this tenant on Docker hosts (FLEET_BACKEND=engines),"
                " which enforce it",
            )
        image_id = str(self.manager.client.images.get(spec.image).id)
        try:
            where = self._placement(spec, image_id, host)
            log.info("creating swarm service", tenant=spec.tenant, node=host or "any",
                     image=spec.image)  # fmt: skip
            created = self.api.create_service(**service_args(spec, where))
        except Exception:
            self._remove_token(spec.tenant)  # leave nothing half-made behind
            raise
        self._settle_port(str(created["ID"]), where.port)
        return self._one(spec.tenant)

    def _placement(self, spec: TenantSpec, image_id: str, host: str) -> Placement:
        """The tenant's secrets (token, S3 key) and config made, and a port drawn."""
        # Unique and short (Swarm names are at most 64 characters); the label names the tenant.
        token_name = f"litefleet-token-{uuid.uuid4().hex[:16]}"
        labels = {LABEL_TOKEN_OF: spec.tenant, names.LABEL_MANAGED: "true"}
        secrets = self.manager.client.secrets
        token = secrets.create(name=token_name, data=spec.token.encode(), labels=labels)
        self.api.create_config(token_name, spec.token.encode(), labels=labels)
        key = None
        if spec.s3 is not None and spec.db_url is None:
            key_name = f"litefleet-s3-key-{uuid.uuid4().hex[:16]}"
            made = secrets.create(name=key_name, data=spec.s3.secret_access_key.encode(),
                                  labels=labels)  # fmt: skip
            key = SecretRef(made.id, key_name)
        used = [int(s["Spec"]["Labels"].get(LABEL_PORT, 0)) for s in self._services()]
        port = allocate_port(used, *self.ports)
        return Placement(image_id, token.id, token_name, port, host or None, key)

    def _settle_port(self, service_id: str, port: int) -> None:
        """Two services created at once may have drawn the same port; the newer one moves."""
        same = sorted(
            (s["CreatedAt"], s["ID"]) for s in self._services()
            if s["Spec"]["Labels"].get(LABEL_PORT) == str(port)
        )  # fmt: skip
        if len(same) < 2 or same[0][1] == service_id:
            return
        used = [int(s["Spec"]["Labels"].get(LABEL_PORT, 0)) for s in self._services()]
        new = allocate_port(used, *self.ports)
        svc = self.api.inspect_service(service_id)
        labels = {**svc["Spec"]["Labels"], LABEL_PORT: str(new)}
        endpoint = svc["Spec"]["EndpointSpec"]
        endpoint["Ports"][0]["PublishedPort"] = new
        self.api.update_service(
            service_id, svc["Version"]["Index"], labels=labels, endpoint_spec=endpoint,
            fetch_current_spec=True,
        )  # fmt: skip

    def _one(self, tenant: str) -> Tenant:
        found = self.tenants(name=tenant)
        if not found:
            raise FleetError(f"the Swarm service of tenant {tenant!r} disappeared")
        return found[0]

    def start(self, t: Tenant) -> None:
        self._scale(t, 1)

    def constrain(self, t: Tenant, host: str) -> None:
        svc = self.api.inspect_service(t.handle["ID"])
        template = svc["Spec"]["TaskTemplate"]
        template.setdefault("Placement", {})["Constraints"] = constraints(host or None)
        self.api.update_service(
            svc["ID"], svc["Version"]["Index"], task_template=template, fetch_current_spec=True
        )

    def _scale(self, t: Tenant, replicas: int) -> None:
        svc = self.api.inspect_service(t.handle["ID"])
        self.api.update_service(
            svc["ID"], svc["Version"]["Index"], mode={"Replicated": {"Replicas": replicas}},
            fetch_current_spec=True,
        )  # fmt: skip

    def stop(self, t: Tenant, timeout: int) -> Stopped:
        """Scale to 0 (SIGTERM, SIGKILL after the service's grace period) and watch the task
        end: its exit code and what it printed. Swarm deletes a scaled-down task (and its
        container, logs included) ~0.3 s after it ended, so both are caught while it stops."""
        watch = _StopWatch(self.api, t.handle["ID"], since=int(time.time()) - 1)
        running = [x["ID"] for x in watch.tasks() if x["Status"]["State"] in _RUNNING]
        self._scale(t, 0)
        deadline = time.monotonic() + timeout + 15
        while not watch.ended(running):
            if time.monotonic() > deadline:
                raise FleetTimeout(f"tenant {t.name!r} did not stop within {timeout + 15}s")
            time.sleep(0.05)
        return Stopped(watch.exit_code, watch.logs)

    def remove(self, t: Tenant) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            self.api.remove_service(t.handle["ID"])
        self._remove_token(t.name)

    def _remove_token(self, tenant: str) -> None:
        """The tenant's secret and config; a secret stays in use for a moment after its
        service is removed."""
        import docker.errors

        flt = {"label": f"{LABEL_TOKEN_OF}={tenant}"}
        deadline = time.monotonic() + _VOLUME_RELEASE_S
        for s in self.api.secrets(filters=flt):
            while True:
                try:
                    self.api.remove_secret(s["ID"])
                    break
                except docker.errors.NotFound:
                    break
                except docker.errors.APIError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.3)
        for c in self.api.configs(filters=flt):
            with contextlib.suppress(docker.errors.NotFound):
                self.api.remove_config(c["ID"])

    def refresh(self, t: Tenant) -> Tenant:
        return self._one(t.name)

    def logs(self, t: Tenant, *, follow: bool = False, tail: int | None = None) -> Iterator[bytes]:
        yield from self.api.service_logs(
            t.handle["ID"], stdout=True, stderr=True, follow=follow,
            tail="all" if tail is None else tail,
        )  # fmt: skip

    def exec(self, t: Tenant, argv: list[str]) -> str | None:
        return None  # the manager cannot exec on a worker: `fleet ls` shows what it can

    def spec_of(self, t: Tenant) -> TenantSpec:
        return spec_of_service(t, self._tokens(t.name).get(t.name, ""))

    # -- volumes: through the node's own engine, when FLEET_HOSTS lists it

    def _engine(self, host: str) -> Host | None:
        return next((e for e in self.engines if e.name == host and e.reachable()), None)

    def has_volume(self, tenant: str, host: str) -> bool:
        engine = self._engine(host)
        if engine is None:
            return False
        return any(v.name == names.volume_name(tenant) for v in engine.client.volumes.list())

    def create_volume(self, tenant: str, host: str) -> None:
        """Swarm creates the volume with the task's mount; nothing to do ahead of it."""

    def remove_volume(self, tenant: str, host: str) -> bool:
        """On the node's engine; a removed service's container takes a moment to go, and
        its volume is in use until then."""
        import docker.errors

        engine = self._engine(host)
        if engine is None:
            return False
        deadline = time.monotonic() + _VOLUME_RELEASE_S
        while True:
            try:
                engine.client.volumes.get(names.volume_name(tenant)).remove(force=True)
                return True
            except docker.errors.NotFound:
                return False
            except docker.errors.APIError as exc:
                if exc.status_code != 409 or time.monotonic() > deadline:
                    raise FleetError(
                        f"could not remove volume on {host!r}: {exc.explanation}"
                    ) from None
                time.sleep(0.3)

    def run_sandboxed(self, host: str, job: Sandbox) -> SandboxResult:
        """On the node's own engine when FLEET_HOSTS lists it, else on the manager's: a
        sandbox needs no tenant volume, only the image (which the manager has)."""
        return run_sandboxed((self._engine(host) or self.manager).client, job)

    def run_oneoff(self, host: str, job: OneOff) -> str:
        raise _not_on_swarm(" ".join(job.argv[:2]))

    def read_volume(
        self, tenant: str, host: str, image: str, files: list[str], dest: Path
    ) -> list[Path]:
        raise _not_on_swarm("reading a tenant's volume")

    def close(self) -> None:
        self.manager.close()
        for e in self.engines:
            e.close()


class _StopWatch:
    """Follows the tasks of one service while it stops: the exit code of the last task seen
    ending, and the newest snapshot of its logs (refreshed every 0.5 s while it runs)."""

    def __init__(self, api: Any, service_id: str, since: int) -> None:
        self.api, self.service_id, self.since = api, service_id, since
        self.exit_code: int | None = None
        self.logs = ""
        self._next_logs = 0.0

    def tasks(self) -> list[dict[str, Any]]:
        return list(self.api.tasks(filters={"service": self.service_id}))

    def ended(self, ids: list[str]) -> bool:
        """Whether every task of ``ids`` ended (or is gone); records what it saw."""
        tasks = {x["ID"]: x for x in self.tasks() if x["ID"] in ids}
        for x in tasks.values():
            code = (x["Status"].get("ContainerStatus") or {}).get("ExitCode")
            if x["Status"]["State"] in _ENDED and code is not None:
                self.exit_code = int(code)
        done = all(x["Status"]["State"] in _ENDED for x in tasks.values())
        if done or time.monotonic() >= self._next_logs:
            self._snapshot_logs()
        return done

    def _snapshot_logs(self) -> None:
        self._next_logs = time.monotonic() + 0.5
        with contextlib.suppress(Exception):  # the container may be gone already
            text = b"".join(
                self.api.service_logs(self.service_id, stdout=True, stderr=True, since=self.since)
            ).decode(errors="replace")
            if len(text) >= len(self.logs):
                self.logs = text


def _not_on_swarm(what: str) -> FleetError:
    return FleetError(
        f"{what} needs a one-off container on a node, which the Swarm backend does not offer",
        "on Swarm, `fleet migrate` moves a tenant by its constraint (docs/swarm.md)",
    )


# -- records from the manager's answers


def node_label(node: Mapping[str, Any]) -> str | None:
    label = ((node.get("Spec") or {}).get("Labels") or {}).get(HOST_LABEL)
    return str(label) if label else None


def node_name(node: Mapping[str, Any]) -> str:
    return node_label(node) or str(node["ID"])[:12]


def swarm_node(node: Mapping[str, Any]) -> SwarmNode:
    return SwarmNode(
        id=str(node["ID"]),
        hostname=str(node["Description"].get("Hostname", "?")),
        label=node_label(node),
        state=str(node["Status"].get("State", "unknown")),
        availability=str(node["Spec"].get("Availability", "?")),
    )


def node_info(node: Mapping[str, Any], tasks: list[Mapping[str, Any]]) -> HostInfo:
    res = node["Description"].get("Resources") or {}
    reserved = sum(
        int(((t["Spec"].get("Resources") or {}).get("Reservations") or {}).get("MemoryBytes", 0))
        for t in tasks
    )
    return HostInfo(
        name=node_name(node),
        url=str(node["Status"].get("Addr", "")),
        reachable=node["Status"].get("State") == "ready",
        tenants=len(tasks),
        running=sum(1 for t in tasks if t["Status"]["State"] in _RUNNING),
        mem_total=int(res.get("MemoryBytes", 0)) or None,
        mem_reserved=reserved,
        version=str((node["Description"].get("Engine") or {}).get("EngineVersion", "")) or None,
        node=swarm_node(node),
    )


def tenant_of(
    service: Mapping[str, Any],
    tasks: list[Mapping[str, Any]],
    nodes: Mapping[str, Mapping[str, Any]],
    tokens: Mapping[str, str],
) -> Tenant:
    labels: dict[str, str] = dict(service["Spec"].get("Labels") or {})
    name = labels.get(names.LABEL_TENANT, str(service["Spec"]["Name"]))
    replicas = service["Spec"]["Mode"].get("Replicated", {}).get("Replicas", 0)
    task = current_task(tasks)
    place = task_place(task, nodes) if task is not None else None
    last = max(tasks, key=lambda x: str(x.get("UpdatedAt", "")), default=None)
    state, health = _state(replicas, place.state if place else None)
    expires = labels.get(names.LABEL_EXPIRES)
    return Tenant(
        name=name,
        host=place.node if place else "-",
        state=state,
        health=health,
        created_at=_epoch(str(service["CreatedAt"])),
        labels=names.user_labels(labels),
        ttl=labels.get(names.LABEL_TTL),
        expires_at=float(expires) if expires else None,
        app=labels.get(names.LABEL_APP, "?"),
        backend=labels.get(names.LABEL_BACKEND, names.BACKEND_SQLITE),
        image=labels.get(LABEL_IMAGE, "?"),
        database=labels.get(names.LABEL_DATABASE),
        template=labels.get(names.LABEL_TEMPLATE),
        template_version=labels.get(names.LABEL_TEMPLATE_VERSION),
        port=int(labels[LABEL_PORT]) if state == "running" and LABEL_PORT in labels else None,
        exit_code=((last or {}).get("Status", {}).get("ContainerStatus") or {}).get("ExitCode"),
        token=tokens.get(name),
        id=str(
            ((task or {}).get("Status", {}).get("ContainerStatus") or {}).get("ContainerID", "")
        ),
        idle_park=labels.get(names.LABEL_IDLE_PARK),  # the gateway parks it after that long idle
        handle=dict(service),
        address=place.address if place and place.address else "127.0.0.1",
    )


def _state(replicas: int, task_state: str | None) -> tuple[str, str]:
    """(Tenant.state, Tenant.health) from the replica count and the current task's state."""
    if replicas == 0:
        return "exited", "-"
    if task_state == "running":
        return "running", "healthy"
    if task_state == "starting":  # the container runs; its health check has not passed yet
        return "running", "starting"
    return "restarting", "-"  # pending, preparing, or between failed attempts


def spec_of_service(t: Tenant, token: str) -> TenantSpec:
    """What the service was made from, for a new one (wake, fork, deploy, migrate): its limits,
    the app's environment, every setting label (TTL, idle park, app, user labels), its
    template and database. The S3 key stays out: a new task gets a key of its own."""
    spec = t.handle["Spec"]
    container = spec["TaskTemplate"]["ContainerSpec"]
    env = dict(e.partition("=")[::2] for e in container.get("Env") or [])
    limits = (spec["TaskTemplate"].get("Resources") or {}).get("Limits") or {}
    memory = int(limits.get("MemoryBytes") or 0)
    nano = int(limits.get("NanoCPUs") or 0)
    labels = settings_labels(spec.get("Labels") or {})
    return TenantSpec(
        tenant=t.name,
        image=t.image,
        token=token,
        app=t.app,
        memory=f"{memory // (1 << 20)}m" if memory else names.DEFAULT_MEMORY,
        cpus=nano / 1e9 if nano else names.DEFAULT_CPUS,
        env={k: v for k, v in env.items() if not names.reserved_env(k)},
        labels={k: v for k, v in labels.items() if k not in (LABEL_PORT, LABEL_IMAGE)},
        db_url=env.get(names.ENV_DB) if t.backend == names.BACKEND_POSTGRES else None,
        db_password=env.get(names.ENV_PGPASSWORD),
        template=t.template,
        template_version=t.template_version,
    )


def _epoch(docker_time: str) -> float:
    head, _, frac = docker_time.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + (frac or "0"))
