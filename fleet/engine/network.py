"""The tenants' bridge network on each engine.

Tenants of every engine join a user-defined bridge network ``litefleet`` on that engine,
created with ``com.docker.network.bridge.enable_icc=false``: tenants cannot reach each other
(nor the embedded store's container address) over the bridge. Its gateway IP is a host
address: tenants reach the host's own services there (the embedded store, a local
PostgreSQL; see fleet/storage/embedded.py and images/postgres.sh, which creates the same
network when it is missing).

Per-tenant egress (which addresses a tenant may reach, `fleet up --egress`): the policy is
egress.py, its netfilter rules egress_rules.py, and the program that applies them on each
engine's host firewall.py, in the container ``litefleet-firewall`` this module keeps there
(``Firewall``). A tenant container gets a MAC address of its own (``random_mac``), its rules
are applied for that MAC before the container exists, and removed after it is gone.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from fleet.core import names
from fleet.core.errors import FirewallError, FleetError
from fleet.core.log import log
from fleet.core.names import LABEL_MANAGED, NETWORK

from .firewall import Record

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


def network_subnet(client: Any, network: str = NETWORK) -> str | None:
    net = client.networks.get(network)
    for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
        if cfg.get("Subnet") and ":" not in cfg["Subnet"]:
            return str(cfg["Subnet"])
    return None


# -- egress


def random_mac() -> str:
    """A locally administered unicast MAC: the key of a container's egress rules."""
    octets = bytearray(secrets.token_bytes(6))
    octets[0] = (octets[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in octets)


def tenant_endpoints(env: Mapping[str, str]) -> tuple[str, ...]:
    """``HOST:PORT`` of the object store and the database a tenant's own processes use, from
    its container's environment: reachable whatever its policy."""
    found = []
    store = env.get(names.ENV_S3_ENDPOINT)
    if store:
        parts = urlsplit(store)
        default = 443 if parts.scheme == "https" else 80
        found.append(f"{parts.hostname}:{parts.port or default}")
    db = env.get(names.ENV_DB, "")
    if db.startswith(names.POSTGRES_SCHEMES):
        parts = urlsplit(db)
        found.append(f"{parts.hostname}:{parts.port or 5432}")
    return tuple(found)


def egress_record(
    container: str, tenant: str, egress: str, env: Mapping[str, str], mac: str, subnet: str | None
) -> Record:
    return Record(
        container=container,
        tenant=tenant,
        egress=egress,
        endpoints=tenant_endpoints(env),
        mac=mac,
        subnet=subnet,
    )


class Firewall:
    """``litefleet-firewall`` on one engine: created on first use (from the fleet's image),
    started if stopped, never replaced behind the user's back (fleets of several versions
    may share an engine). Its records live in a volume and the rules in the host's kernel, so
    removing the container loses nothing: the next fleet command that needs it makes it
    anew, from the fleet's image then, and it re-applies every record."""

    COMMAND = ["python3", "-I", "-m", "fleet.engine.firewall"]

    def __init__(self, client: Any, image: str, host: str) -> None:
        self.client = client
        self.image = image
        self.host = host

    def apply(self, record: Record) -> None:
        out = json.loads(self._exec("apply", record.to_json()))
        if out.get("unresolved"):
            log.warning(
                "egress: names that do not resolve on the host are not reachable",
                tenant=record.tenant,
                names=out["unresolved"],
            )

    def remove(self, container: str) -> None:
        self._exec("remove", container)

    def prune(self) -> None:
        """Forget records of containers the engine no longer has (removed behind the
        fleet's back); one listing, one exec."""
        live = [c.name for c in self.client.containers.list(all=True, sparse=True)]
        self._exec("prune", json.dumps(sorted(n.lstrip("/") for n in live if n)))

    def _exec(self, *args: str) -> str:
        """The last line ``firewall ARGS`` printed (JSON); FirewallError when it failed."""
        container = self.ensure()
        deadline = time.monotonic() + 15
        while True:
            code, out = container.exec_run([*self.COMMAND, *args], user="0:0")
            lines = (out or b"").decode(errors="replace").strip().splitlines()
            if code == 0:
                return lines[-1] if lines else "{}"
            # just (re)started by the engine: exec is refused for a moment
            if "is restarting" not in "".join(lines) or time.monotonic() > deadline:
                raise FirewallError(
                    f"egress rules on host {self.host!r}: "
                    + (lines[-1] if lines else f"exit status {code}"),
                    f"`docker logs {names.FIREWALL_CONTAINER}` on that host",
                )
            time.sleep(0.5)

    def ensure(self) -> Any:
        import docker.errors

        try:
            container = self.client.containers.get(names.FIREWALL_CONTAINER)
        except docker.errors.NotFound:
            container = None
        if container is None:
            container = self._create()
        if container.status != "running":
            container.start()
        return container

    def _create(self) -> Any:
        import docker.errors

        try:
            try:
                return self.client.containers.create(**firewall_config(self.image, XTABLES_LOCK))
            except docker.errors.APIError as exc:
                if "xtables.lock" not in str(exc):
                    raise
                # no lock file: an nf_tables host (only the legacy backend locks)
                return self.client.containers.create(**firewall_config(self.image, None))
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: a parallel command created it
                raise
            return self.client.containers.get(names.FIREWALL_CONTAINER)


XTABLES_LOCK = "/run/xtables.lock"


def firewall_config(image: str, lock: str | None) -> dict[str, Any]:
    """The firewall container: root with NET_ADMIN (and NET_RAW, which the legacy backend
    needs) in the host's network namespace, the host's root read-only at /host to run its
    iptables (``lock``: the host's xtables lock file, shared with the engine's own iptables
    calls), restarted by the engine whenever the engine starts, which is what re-applies the
    rules after a reboot. Not privileged; no listening socket, no secrets."""
    mounts = [] if lock is None else [_bind(lock, f"/host{lock}")]
    return {
        "image": image,
        "name": names.FIREWALL_CONTAINER,
        "entrypoint": [*Firewall.COMMAND, "serve"],
        "user": "0:0",
        "cap_drop": ["ALL"],
        "cap_add": ["NET_ADMIN", "NET_RAW", "SYS_CHROOT"],
        "security_opt": ["no-new-privileges:true"],
        "network_mode": "host",
        "read_only": True,
        "healthcheck": {"test": ["NONE"]},  # the image's is the tenant runtime's
        "restart_policy": {"Name": "always"},
        "volumes": {
            "/": {"bind": "/host", "mode": "ro"},
            names.FIREWALL_VOLUME: {"bind": "/state", "mode": "rw"},
        },
        "mounts": mounts,
        "labels": {LABEL_MANAGED: "true", names.LABEL_ROLE: names.ROLE_FIREWALL},
        "mem_limit": "128m",
        "log_config": {"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}},
        "detach": True,
    }


def _bind(source: str, target: str) -> Any:
    """A bind mount that fails when ``source`` is missing (``volumes`` would create it)."""
    from docker.types import Mount

    return Mount(target, source, type="bind", read_only=False)
