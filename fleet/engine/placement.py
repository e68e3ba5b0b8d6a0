"""`fleet hosts` and where a new tenant goes: the reachable host with the most free memory.

"Free" is the engine's total memory minus the memory limits of its running containers (what
is reserved, the way a scheduler counts), not the kernel's momentary free figure: every tenant
container has a hard limit, and two engines on one machine would otherwise see the same pool.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from fleet.core.errors import EngineUnavailable
from fleet.core.hosting import HostInfo
from fleet.core.names import LABEL_ROLE, ROLE_TENANT

from .hosts import Host, pick


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


def host_infos(hosts: list[Host], image: str) -> list[HostInfo]:
    """Every host, probed in parallel (an unreachable one is reported, not raised)."""
    with ThreadPoolExecutor(max_workers=min(8, len(hosts))) as pool:
        return list(pool.map(lambda h: host_info(h, image), hosts))


def place(hosts: list[Host], image: str, name: str | None = None) -> Host:
    """The named host, else the reachable host with the most free memory."""
    if name is not None or len(hosts) == 1:
        return pick(hosts, name)
    infos = [i for i in host_infos(hosts, image) if i.reachable and i.mem_free is not None]
    if not infos:
        raise EngineUnavailable("no host of FLEET_HOSTS answers")
    # max() keeps the first of equals: FLEET_HOSTS order breaks ties.
    best = max(infos, key=lambda i: i.mem_free or 0)
    return pick(hosts, best.name)
