"""Fixtures of the Swarm tests (marker ``swarm``): a two-node swarm on this machine.

The swarm lives for this package only (scope ``package``): node 1 is the engine every other test
uses, and it leaves the swarm as soon as the last Swarm test ends (tests/swarm_cluster.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fleet_support import fleet
from tests.swarm.tenants import BUCKET, NODE_NAMES, SwarmTenants
from tests.swarm_cluster import SwarmCluster, SwarmUnavailable, running_swarm


@pytest.fixture(scope="package")
def swarm(docker_client: Any, tenant_image: str) -> Iterator[SwarmCluster]:
    """A two-node swarm (node 1: this engine, the manager; node 2: a second dockerd in its
    own network namespace) with the tenant image on both nodes; skipped where it cannot run."""
    try:
        with running_swarm() as cluster:
            yield cluster
    except SwarmUnavailable as exc:
        pytest.skip(f"no two-node swarm here: {exc}")


@pytest.fixture(scope="package")
def swarm_env(swarm: SwarmCluster, tenant_image: str) -> dict[str, str]:
    """Environment for the `fleet` CLI with FLEET_BACKEND=swarm on the test swarm; both
    nodes' engines are in FLEET_HOSTS under their node names."""
    SwarmTenants(swarm, tenant_image).close()  # the test bucket and node labels, nothing else
    return {
        "FLEET_BACKEND": "swarm",
        "FLEET_HOSTS": f"{NODE_NAMES[0]}={swarm.manager_url},{NODE_NAMES[1]}={swarm.node2_url}",
        "FLEET_IMAGE": tenant_image,
        "FLEET_S3_ENDPOINT": swarm.s3_endpoint,
        "FLEET_S3_BUCKET": BUCKET,
        "FLEET_S3_ACCESS_KEY_ID": "litefleet",
        "FLEET_S3_SECRET_ACCESS_KEY": "litefleet-test",
        "FLEET_HEALTH_TIMEOUT": "120",
        "FLEET_CONFIG": "",
        "COLUMNS": "250",
    }


@pytest.fixture
def new_tenant(swarm_env: dict[str, str]) -> Iterator[Callable[[], str]]:
    """``new_tenant()`` -> a fresh tenant name; at the end of the test each name it gave is
    removed with its backup. Only those: node 1 is an engine other sessions share, and a
    test removes nothing it did not make."""
    made: list[str] = []

    def new() -> str:
        made.append(f"s-{uuid.uuid4().hex[:8]}")
        return made[-1]

    yield new
    for name in made:
        fleet("rm", name, "--purge", "--yes", env=swarm_env)
