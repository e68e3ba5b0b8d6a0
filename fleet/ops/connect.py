"""Build the Fleet every command works on: settings, the Docker engines of FLEET_HOSTS, and
object storage. The one place that picks the implementations behind fleet/core's interfaces
(a Swarm placement backend would be chosen here, from the settings)."""

from __future__ import annotations

from typing import Any

from fleet.core.context import Fleet
from fleet.core.settings import FleetSettings
from fleet.engine.docker_hosting import DockerHosting
from fleet.engine.hosts import parse_hosts
from fleet.storage.endpoints import S3Endpoints


def connect(settings: FleetSettings) -> Fleet:
    """Nothing is contacted yet: engines and the object store are reached on first use."""
    hosting = DockerHosting(parse_hosts(settings.hosts), settings.image, settings.registry)

    def store_engine() -> Any:  # the embedded store runs on the first host
        return hosting.engines[0].client

    return Fleet(settings=settings, hosting=hosting, storage=S3Endpoints(settings, store_engine))
