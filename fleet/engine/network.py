"""The tenants' bridge network on each engine.

Tenants of every engine join a user-defined bridge network ``litefleet`` on that engine,
created with ``com.docker.network.bridge.enable_icc=false``: tenants cannot reach each other
(nor the embedded store's container address) over the bridge. Its gateway IP is a host
address: tenants reach the host's own services there (the embedded store, a local
PostgreSQL; see fleet/storage/embedded.py and images/postgres.sh, which creates the same
network when it is missing).

Per-tenant egress rules (which addresses a tenant may reach) belong here, next to the network
they apply to.
"""

from __future__ import annotations

from typing import Any

from fleet.core.errors import FleetError
from fleet.core.names import LABEL_MANAGED, NETWORK

ICC_OPTION = "com.docker.network.bridge.enable_icc"


def ensure_tenant_network(client: Any) -> str:
    """Create (or reuse) the tenants' bridge network on this engine; returns its name."""
    import docker.errors

    try:
        net = client.networks.get(NETWORK)
    except docker.errors.NotFound:
        net = client.networks.create(
            NETWORK,
            driver="bridge",
            options={ICC_OPTION: "false"},
            labels={LABEL_MANAGED: "true"},
            check_duplicate=True,
        )
    opts = net.attrs.get("Options") or {}
    if opts.get(ICC_OPTION) != "false":
        raise FleetError(
            f"network {NETWORK!r} exists but lets containers talk to each other",
            f"remove it (docker network rm {NETWORK}) so litefleet can recreate it",
        )
    return str(net.name)


def network_gateway(client: Any, network: str = NETWORK) -> str:
    net = client.networks.get(network)
    for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
        if cfg.get("Gateway"):
            return str(cfg["Gateway"]).split("/")[0]
    raise FleetError(f"network {network!r} has no gateway address")
