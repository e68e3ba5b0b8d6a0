"""What `fleet doctor` reads from each Docker engine: its version, cgroup version, storage
driver, and the litefleet version of the tenant and template images it holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fleet.core import names

from .hosts import Host
from .images import VERSION_LABEL


@dataclass(frozen=True)
class EngineFacts:
    host: str
    error: str | None = None  # the engine did not answer (then nothing else is known)
    version: str = ""
    cgroup: str = ""
    storage_driver: str = ""
    root_dir: str = ""
    # image -> its litefleet version label ("" when it has none); None: the image is absent
    tenant_image: str | None = None
    template_images: dict[str, str] = field(default_factory=dict)

    def same_as(self) -> tuple[str, str, str]:
        """What every host of one fleet should share."""
        return (self.version, self.cgroup, self.storage_driver)


def _label(image: Any) -> str:
    return str((image.labels or {}).get(VERSION_LABEL, ""))


def engine_facts(host: Host, image: str) -> EngineFacts:
    """Probe ``host``'s engine; an engine that does not answer is reported, not raised."""
    import docker.errors

    if not host.reachable():
        return EngineFacts(host.name, error="engine does not answer")
    client = host.client
    try:
        info = client.info()
        try:
            tenant: str | None = _label(client.images.get(image))
        except docker.errors.ImageNotFound:
            tenant = None
        templates = {
            tag: _label(img)
            for img in client.images.list(filters={"label": names.LABEL_TEMPLATE})
            for tag in img.tags[:1]
        }
    except docker.errors.DockerException as exc:
        return EngineFacts(host.name, error=str(exc).splitlines()[0][:160])
    return EngineFacts(
        host=host.name,
        version=str(info.get("ServerVersion", "?")),
        cgroup=f"cgroup v{info.get('CgroupVersion', '?')}",
        storage_driver=str(info.get("Driver", "?")),
        root_dir=str(info.get("DockerRootDir", "")),
        tenant_image=tenant,
        template_images=templates,
    )
