"""`fleet hosts` and where a new tenant goes: the reachable host with the most free memory.

"Free" is the engine's total memory minus the memory limits of its running containers (what
is reserved, the way a scheduler counts), not the kernel's momentary free figure: every tenant
container has a hard limit, and two engines on one machine would otherwise see the same pool.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fleet.core.context import Fleet
from fleet.core.errors import EngineUnavailable

from .container_spec import LABEL_ROLE, ROLE_TENANT
from .hosts import Host, pick


@dataclass(frozen=True)
class HostInfo:
    name: str
    url: str
    reachable: bool
    tenants: int | None = None  # tenant containers (any state)
    running: int | None = None
    mem_total: int | None = None  # bytes
    mem_reserved: int | None = None  # memory limits of running containers
    images: bool | None = None  # has the fleet's tenant image
    version: str | None = None
    error: str | None = None

    @property
    def mem_free(self) -> int | None:
        if self.mem_total is None or self.mem_reserved is None:
            return None
        return max(0, self.mem_total - self.mem_reserved)

    def as_dict(self) -> dict[str, object]:
        return {
            "host": self.name,
            "url": self.url,
            "reachable": self.reachable,
            "tenants": self.tenants,
            "running": self.running,
            "mem_free": self.mem_free,
            "mem_total": self.mem_total,
            "tenant_image": self.images,
            "engine": self.version,
            "error": self.error,
        }


def host_info(host: Host, image: str) -> HostInfo:
    url = host.url or "(DOCKER_HOST / default socket)"
    if not host.reachable():
        return HostInfo(host.name, url, False, error="engine does not answer")
    import docker.errors

    client = host.client
    try:
        info = client.info()
        tenants = client.containers.list(all=True, filters={"label": f"{LABEL_ROLE}={ROLE_TENANT}"})
        running = [c for c in client.containers.list()]  # every running container reserves
        reserved = sum(int(c.attrs["HostConfig"].get("Memory") or 0) for c in running)
        try:
            client.images.get(image)
            has_image = True
        except docker.errors.ImageNotFound:
            has_image = False
    except docker.errors.DockerException as exc:
        return HostInfo(host.name, url, False, error=str(exc).splitlines()[0][:120])
    return HostInfo(
        name=host.name,
        url=url,
        reachable=True,
        tenants=len(tenants),
        running=sum(1 for c in tenants if c.status == "running"),
        mem_total=int(info.get("MemTotal") or 0),
        mem_reserved=reserved,
        images=has_image,
        version=str(info.get("ServerVersion", "?")),
    )


def hosts(fleet: Fleet) -> list[HostInfo]:
    """Every configured host, probed in parallel (an unreachable one is reported, not raised)."""
    with ThreadPoolExecutor(max_workers=min(8, len(fleet.hosts))) as pool:
        return list(pool.map(lambda h: host_info(h, fleet.settings.image), fleet.hosts))


def place(fleet: Fleet, name: str | None = None) -> Host:
    """The named host, else the reachable host with the most free memory."""
    if name is not None or len(fleet.hosts) == 1:
        return pick(fleet.hosts, name)
    infos = [i for i in hosts(fleet) if i.reachable and i.mem_free is not None]
    if not infos:
        raise EngineUnavailable("no host of FLEET_HOSTS answers")
    # max() keeps the first of equals: FLEET_HOSTS order breaks ties.
    best = max(infos, key=lambda i: i.mem_free or 0)
    return pick(fleet.hosts, best.name)
