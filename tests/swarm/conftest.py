"""Fixtures of the Swarm tests (marker ``swarm``): a two-node swarm on this machine.

The swarm lives for this package only (scope ``package``): node 1 is the engine every other test
uses, and it leaves the swarm as soon as the last Swarm test ends (tests/swarm_cluster.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

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
