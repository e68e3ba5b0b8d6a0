"""Build the Fleet every command works on: settings, the Docker engines of FLEET_HOSTS, and
object storage. The one place that picks the implementations behind fleet/core's interfaces
(FLEET_BACKEND=swarm chooses the Swarm one)."""

from __future__ import annotations

from typing import Any

from fleet.core.context import Fleet
from fleet.core.settings import FleetSettings
from fleet.engine.docker_hosting import DockerHosting
from fleet.engine.hosts import parse_hosts
from fleet.engine.template_build import DockerTemplates
from fleet.storage.endpoints import S3Endpoints


def connect(settings: FleetSettings) -> Fleet:
    """Nothing is contacted yet: engines and the object store are reached on first use."""
    if settings.backend == "swarm":
        return _swarm(settings)
    hosting = DockerHosting(parse_hosts(settings.hosts), settings.image, settings.registry)

    def store_engine() -> Any:  # the embedded store runs on the first host
        return hosting.engines[0].client

    return Fleet(
        settings=settings,
        hosting=hosting,
        storage=S3Endpoints(settings, store_engine),
        templates=DockerTemplates(hosting.engines),
    )


def _swarm(settings: FleetSettings) -> Fleet:
    """Tenants as services of the swarm of FLEET_SWARM_MANAGER; FLEET_HOSTS, when set, names
    the nodes' own engines (image copies, volume removal). Templates are built on the
    manager's engine, which services take their images from."""
    from fleet.engine.swarm_hosting import SwarmHosting

    engines = parse_hosts(settings.hosts) if settings.hosts else []
    hosting = SwarmHosting(
        settings.swarm_manager, settings.image, settings.registry, settings.swarm_port_range,
        engines,
    )  # fmt: skip

    def store_engine() -> Any:  # the embedded store runs on the manager's engine
        return hosting.manager.client

    return Fleet(
        settings=settings,
        hosting=hosting,
        storage=S3Endpoints(settings, store_engine),
        templates=DockerTemplates([hosting.manager, *engines]),
    )
