"""Getting the tenant image onto a host that lacks it, through the engines' APIs only.

No registry (the default): ``docker save`` on a host that has the image is streamed straight
into ``docker load`` on the target (GET /images/{name}/get -> POST /images/load, chunked), so
nothing touches the local disk and remote engines (tcp://, ssh://) work the same way.
With FLEET_REGISTRY set, the target pulls ``<registry>/<image>`` and tags it as ``<image>``.
"""

from __future__ import annotations

from collections.abc import Iterator

from fleet.core.errors import FleetError, ImageMissing
from fleet.core.hosting import Transfer, TransferProgress
from fleet.core.log import log

from .hosts import Host
from .images import check_version, has_image


def registry_ref(registry: str, image: str) -> str:
    """``registry.example:5000/litefleet/tenant:0.1.0`` for registry ``registry.example:5000``."""
    return f"{registry.rstrip('/')}/{image}"


def ensure_image_on(
    hosts: list[Host],
    target: Host,
    image: str,
    registry: str | None = None,
    progress: TransferProgress | None = None,
) -> Transfer:
    """Make sure ``target``'s engine has ``image``: pull from ``registry`` (FLEET_REGISTRY),
    or copy it from another of ``hosts`` that has it."""
    if has_image(target.client, image):
        check_version(target.client, image)
        return Transfer(image, target.name, None, 0, "present")
    if registry:
        transfer = _pull(target, image, registry)
    else:
        source = _source(hosts, target, image)
        check_version(source.client, image)  # before copying an image that would be refused
        transfer = _copy(source, target, image, progress)
    check_version(target.client, image)
    return transfer


def _pull(target: Host, image: str, registry: str) -> Transfer:
    ref = registry_ref(registry, image)
    log.info("pulling image", image=ref, host=target.name)
    repo, _, tag = ref.rpartition(":")
    pulled = target.client.images.pull(repo, tag=tag)
    pulled.tag(*image.rsplit(":", 1))
    return Transfer(image, target.name, None, 0, "pulled")


def _copy(source: Host, target: Host, image: str, progress: TransferProgress | None) -> Transfer:
    total = int(source.client.images.get(image).attrs.get("Size") or 0) or None
    if progress:
        progress.start(image, source.name, target.name, total)
    sent = 0

    def stream() -> Iterator[bytes]:
        nonlocal sent
        for chunk in source.client.api.get_image(image, chunk_size=1 << 20):
            sent += len(chunk)
            if progress:
                progress.advance(len(chunk))
            yield chunk

    log.info("copying image", image=image, source=source.name, target=target.name)
    try:
        target.client.api.load_image(stream())
    finally:
        if progress:
            progress.finish()
    if not has_image(target.client, image):
        raise FleetError(f"copying {image} to host {target.name!r} did not leave it there")
    return Transfer(image, target.name, source.name, sent, "copied")


def _source(hosts: list[Host], target: Host, image: str) -> Host:
    for host in hosts:
        if host is not target and host.reachable() and has_image(host.client, image):
            return host
    raise ImageMissing(
        f"image {image} is on no reachable host (needed on {target.name!r})",
        "build it with `make images` on a host of FLEET_HOSTS, or set FLEET_REGISTRY",
    )
