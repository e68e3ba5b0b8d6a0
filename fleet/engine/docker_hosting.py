"""Tenants as containers on the Docker engines of FLEET_HOSTS: the Hosting of fleet/core.

A tenant is one container plus one named volume on one engine, found by labels; the fleet
keeps no database. The per-tenant API token lives in the container's environment (the runtime
reads it from there), so it is read back from the engine and never printed.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from fleet.core import names
from fleet.core.errors import FleetError
from fleet.core.hosting import (
    HostInfo,
    OneOff,
    Sandbox,
    SandboxResult,
    Stopped,
    Tenant,
    TenantSpec,
    Transfer,
    TransferProgress,
    settings_labels,
)
from fleet.core.log import log
from fleet.core.names import NETWORK as NETWORK_NAME
from fleet.supervisor.s3 import S3Settings

from .container_spec import (
    container_config,
    container_mac,
    oneoff_config,
    published_port,
    reader_config,
)
from .firewall import Record
from .hosts import Host, pick, reachable
from .image_transfer import ensure_image_on
from .network import (
    Firewall,
    egress_record,
    ensure_tenant_network,
    network_gateway,
    network_subnet,
    random_mac,
)
from .placement import host_infos, place
from .sandbox import run_sandboxed

# A Swarm task's container carries its service's labels, tenant role included: on an engine
# that is also a Swarm node it is FLEET_BACKEND=swarm's tenant, never this backend's.
_SWARM_TASK = "com.docker.swarm.service.id"


class DockerHosting:
    """``image``: the fleet's tenant image (what `fleet hosts` looks for); ``registry``: where
    a host lacking an image pulls it from (else it is copied from another host)."""

    def __init__(self, hosts: list[Host], image: str, registry: str | None = None) -> None:
        self.engines = hosts
        self.image = image
        self.registry = registry

    def engine(self, host: str) -> Host:
        return pick(self.engines, host)

    # -- hosts

    def host_names(self) -> list[str]:
        return [h.name for h in self.engines]

    def hosts(self) -> list[HostInfo]:
        return host_infos(self.engines, self.image)

    def place(self, host: str | None) -> str:
        return place(self.engines, self.image, host).name

    def ensure_image(
        self, host: str, image: str, progress: TransferProgress | None = None
    ) -> Transfer:
        return ensure_image_on(self.engines, self.engine(host), image, self.registry, progress)

    def gateway(self, host: str) -> str:
        client = self.engine(host).client
        return network_gateway(client, ensure_tenant_network(client))

    # -- tenants

    def tenants(
        self, *, labels: dict[str, str] | None = None, name: str | None = None
    ) -> list[Tenant]:
        wanted = [f"{names.LABEL_ROLE}={names.ROLE_TENANT}"]
        wanted += [f"{k}={v}" for k, v in names.engine_labels(labels or {}).items()]
        if name is not None:
            wanted.append(f"{names.LABEL_TENANT}={name}")
        found = [
            tenant_of(h.name, c)
            for h in reachable(self.engines)
            for c in _containers(h.client, {"label": wanted})
            if _SWARM_TASK not in (c.labels or {})  # FLEET_BACKEND=swarm's, on an engine it shares
        ]
        return sorted(found, key=lambda t: (t.name, t.host))

    def create(self, spec: TenantSpec, host: str) -> Tenant:
        """The tenant's egress rules go in before its container exists: a crash at any point
        leaves no container without them (at worst rules that match nothing)."""
        client = self.engine(host).client
        network = ensure_tenant_network(client)
        _refuse_existing(client, spec.container_name)
        new_volume = spec.db_url is None and not self.has_volume(spec.tenant, host)
        if new_volume:
            self.create_volume(spec.tenant, host)
        log.info("creating tenant", tenant=spec.tenant, host=host, image=spec.image)
        firewall, mac = self.firewall(host), random_mac()
        try:
            firewall.apply(
                egress_record(
                    spec.container_name,
                    spec.tenant,
                    spec.egress,
                    spec.environment(),
                    mac,
                    network_subnet(client, network),
                )
            )
            container = client.containers.create(**container_config(spec, network, mac))
        except Exception:
            # leave nothing half-made behind
            with contextlib.suppress(FleetError):
                firewall.remove(spec.container_name)
            if new_volume:
                self.remove_volume(spec.tenant, host)
            raise
        container.start()
        container.reload()
        return tenant_of(host, container)

    def firewall(self, host: str) -> Firewall:
        """The host's ``litefleet-firewall`` (runs the fleet's image, copied there if missing)."""
        ensure_image_on(self.engines, self.engine(host), self.image, self.registry)
        return Firewall(self.engine(host).client, self.image, host)

    def start(self, t: Tenant) -> None:
        record = _egress_record_of(t)
        if record is not None:  # again: the host may have lost them (a reboot, a firewall reset)
            self.firewall(t.host).apply(record)
        t.handle.start()

    def stop(self, t: Tenant, timeout: int) -> Stopped:
        """Stop for good: the down signal first (the supervisor then exits 0 and the restart
        policy leaves it stopped), then the engine's stop (SIGTERM, SIGKILL after
        ``timeout``), which also keeps the engine from restarting it now."""
        import docker.errors

        since = int(time.time()) - 1
        down = (t.handle.attrs["Config"].get("Labels") or {}).get(names.LABEL_DOWN_SIGNAL)
        if down and t.running:
            with contextlib.suppress(docker.errors.APIError):  # it stopped meanwhile
                t.handle.kill(signal=down)
        t.handle.stop(timeout=timeout)
        try:
            logs = t.handle.logs(since=since, stdout=True, stderr=True).decode(errors="replace")
            t.handle.reload()
        except docker.errors.APIError:  # removed meanwhile (another fleet process's rm)
            return Stopped(None, "")
        return Stopped(t.handle.attrs.get("State", {}).get("ExitCode"), logs)

    def remove(self, t: Tenant) -> None:
        t.handle.remove(force=True)
        if t.egress is not None:
            try:
                firewall = self.firewall(t.host)
                firewall.remove(t.handle.name)
                firewall.prune()
            except FleetError as exc:  # the rules match no container any more: harmless
                log.warning("egress rules left behind", tenant=t.name, error=exc.message)

    def refresh(self, t: Tenant) -> Tenant:
        t.handle.reload()
        return tenant_of(t.host, t.handle)

    def logs(self, t: Tenant, *, follow: bool = False, tail: int | None = None) -> Iterator[bytes]:
        kw: dict[str, Any] = {"stream": True, "follow": follow}
        if tail is not None:
            kw["tail"] = tail
        yield from t.handle.logs(**kw)

    def exec(self, t: Tenant, argv: list[str]) -> str | None:
        """As the keeper's uid (the container's own user is root, for its supervisor)."""
        user = f"{names.SUPERVISOR_UID}:{names.SUPERVISOR_GID}"
        try:
            _code, out = t.handle.exec_run(argv, demux=False, user=user)
        except Exception as exc:  # the container may have stopped since it was listed
            log.debug("exec failed", tenant=t.name, error=type(exc).__name__)
            return None
        return (out or b"").decode(errors="replace")

    def spec_of(self, t: Tenant) -> TenantSpec:
        attrs = t.handle.attrs
        env = _env(attrs["Config"].get("Env"))
        image_env = set(_env(t.handle.image.attrs["Config"].get("Env")))
        host_cfg = attrs["HostConfig"]
        memory = int(host_cfg.get("Memory") or 0)
        nano = int(host_cfg.get("NanoCpus") or 0)
        s3 = S3Settings.from_env(env) if names.ENV_S3_ENDPOINT in env else None
        return TenantSpec(
            tenant=t.name,
            image=t.image,
            token=env.get(names.ENV_TOKEN, ""),
            s3=s3,  # its key: what one-off jobs on its volume use (a new container gets a new one)
            app=t.app,
            memory=f"{memory // (1 << 20)}m" if memory else names.DEFAULT_MEMORY,
            cpus=nano / 1e9 if nano else names.DEFAULT_CPUS,
            env={k: v for k, v in env.items() if not names.reserved_env(k) and k not in image_env},
            labels=settings_labels(attrs["Config"].get("Labels") or {}),
            db_url=env.get(names.ENV_DB) if t.backend == names.BACKEND_POSTGRES else None,
            db_password=env.get(names.ENV_PGPASSWORD),
            template=t.template,
            template_version=t.template_version,
            egress=t.egress or names.DEFAULT_EGRESS,
        )

    # -- volumes

    def has_volume(self, tenant: str, host: str) -> bool:
        import docker.errors

        try:
            self.engine(host).client.volumes.get(names.volume_name(tenant))
        except docker.errors.NotFound:
            return False
        return True

    def create_volume(self, tenant: str, host: str) -> None:
        self.engine(host).client.volumes.create(
            name=names.volume_name(tenant), labels={names.LABEL_TENANT: tenant}
        )

    def remove_volume(self, tenant: str, host: str) -> bool:
        import docker.errors

        volume = names.volume_name(tenant)
        try:
            self.engine(host).client.volumes.get(volume).remove(force=True)
        except docker.errors.NotFound:
            return False
        except docker.errors.APIError as exc:
            raise FleetError(f"could not remove volume {volume}: {exc.explanation}") from None
        return True

    def run_sandboxed(self, host: str, job: Sandbox) -> SandboxResult:
        return run_sandboxed(self.engine(host).client, job)

    def run_oneoff(self, host: str, job: OneOff) -> str:
        client = self.engine(host).client
        name = names.oneoff_name(job.tenant, int(time.time() * 1000) % 10**8)
        container = client.containers.create(
            **oneoff_config(job, name, ensure_tenant_network(client))
        )
        try:
            container.start()
            status = container.wait(timeout=job.timeout)
            stdout = str(container.logs(stdout=True, stderr=False).decode(errors="replace"))
            if int(status.get("StatusCode", 1)) != 0:
                err = container.logs(stdout=False, stderr=True).decode(errors="replace")
                last = next((ln for ln in reversed(err.splitlines()) if ln.strip()), "no output")
                raise FleetError(f"{' '.join(job.argv[:2])} on host {host!r} failed: {last}")
            return stdout
        finally:
            container.remove(force=True)

    def read_volume(
        self, tenant: str, host: str, image: str, files: list[str], dest: Path
    ) -> list[Path]:
        """Through a container of ``image`` that is created but never started: nothing runs
        on the volume while it is read."""
        import docker.errors

        client = self.engine(host).client
        name = names.oneoff_name(tenant, int(time.time() * 1000) % 10**8)
        reader = client.containers.create(**reader_config(tenant, image, name))
        copied = []
        try:
            for name in files:
                try:
                    stream, _ = reader.get_archive(f"{names.DATA_DIR}/{name}")
                except docker.errors.NotFound:
                    continue
                with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                    tar.extractall(dest, filter="data")
                copied.append(dest / name)
        finally:
            reader.remove(force=True)
        return copied

    def close(self) -> None:
        for h in self.engines:
            h.close()


def _containers(client: Any, filters: dict[str, Any]) -> list[Any]:
    """The matching containers, inspected; one removed between the listing and its inspection
    is left out (docker-py's list() would fail on it)."""
    import docker.errors

    found = []
    for c in client.containers.list(all=True, filters=filters, sparse=True):
        with contextlib.suppress(docker.errors.NotFound):
            found.append(client.containers.get(c.id))
    return found


def tenant_of(host: str, c: Any) -> Tenant:
    """A tenant from its container (``c.attrs`` as the engine reported it)."""
    attrs = c.attrs
    labels: dict[str, str] = attrs["Config"].get("Labels") or {}
    state = attrs["State"]
    expires = labels.get(names.LABEL_EXPIRES)
    running = state.get("Status") == "running"
    return Tenant(
        name=labels.get(names.LABEL_TENANT, c.name),
        host=host,
        state=str(state.get("Status", "unknown")),
        # A stopped container keeps its last health status: only show it while running.
        health=str((state.get("Health") or {}).get("Status", "-")) if running else "-",
        created_at=epoch_of(attrs["Created"]),
        labels=names.user_labels(labels),
        ttl=labels.get(names.LABEL_TTL),
        expires_at=float(expires) if expires else None,
        app=labels.get(names.LABEL_APP, "?"),
        backend=labels.get(names.LABEL_BACKEND, names.BACKEND_SQLITE),
        image=str(attrs["Config"].get("Image", "?")),
        database=labels.get(names.LABEL_DATABASE),
        template=labels.get(names.LABEL_TEMPLATE),
        template_version=labels.get(names.LABEL_TEMPLATE_VERSION),
        port=published_port(attrs) if running else None,
        exit_code=state.get("ExitCode"),
        oom_killed=bool(state.get("OOMKilled")),
        restart_count=int(attrs.get("RestartCount") or 0),
        egress=labels.get(names.LABEL_EGRESS),
        token=_env(attrs["Config"].get("Env")).get(names.ENV_TOKEN),
        id=str(getattr(c, "id", "")),
        idle_park=labels.get(names.LABEL_IDLE_PARK),
        started_at=epoch_of(state["StartedAt"]) if running and state.get("StartedAt") else None,
        handle=c,
    )


def _refuse_existing(client: Any, name: str) -> None:
    """Docker refuses a second container of a name; refuse before its egress record (keyed
    by name) would replace the live one's."""
    import docker.errors

    try:
        client.containers.get(name)
    except docker.errors.NotFound:
        return
    raise FleetError(f"a container named {name!r} exists already", "`fleet ls` shows it")


def _egress_record_of(t: Tenant) -> Record | None:
    """The egress record of an existing tenant container, from what it was created with."""
    attrs = t.handle.attrs
    mac = container_mac(attrs)
    if t.egress is None or mac is None:
        return None  # made without enforced egress
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    client = t.handle.client
    subnet = network_subnet(client, NETWORK_NAME) if NETWORK_NAME in networks else None
    env = _env(attrs["Config"].get("Env"))
    return egress_record(t.handle.name, t.name, t.egress, env, mac, subnet)


def _env(items: list[str] | None) -> dict[str, str]:
    return dict(e.partition("=")[::2] for e in items or [])


def epoch_of(docker_time: str) -> float:
    """Seconds since the epoch of a time the engine reports."""
    # Docker prints nanoseconds ("2026-11-26T06:20:01.123456789Z"); Python takes micro.
    head, _, frac = docker_time.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + (frac or "0"))
