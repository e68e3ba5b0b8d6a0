"""A tenant's egress policy as netfilter rules on the host its container runs on.

Pure functions (standard library only): fleet/engine/firewall.py runs them on each engine's
host and hands the text to ``iptables-restore``; a Swarm node can do the same for a task.

Where packets are caught. A tenant's traffic leaves its network namespace through its bridge
and meets the host's netfilter in one of two places: FORWARD (anything routed or bridged
elsewhere: the Internet, other tenants, other containers' published ports, which Docker DNATs)
or INPUT (the host's own addresses: the bridge gateway, eth0, every other bridge). Docker
sends FORWARD through DOCKER-USER first and never touches INPUT, so both get one jump to
LITEFLEET-EGRESS, taken by the first packet of each connection only (replies and later
packets of an allowed connection are ESTABLISHED). LITEFLEET-EGRESS sends each tenant's
packets to the tenant's own chain, recognised by their source (``Source``): the container's
MAC address, which the fleet chooses at creation and Docker keeps across restarts, and which
code inside cannot change (that needs CAP_NET_ADMIN, or CAP_NET_RAW for forged frames).

The tenant's chain only narrows what Docker allows: it ends in REJECT (denied, answered at
once with "administratively prohibited") or RETURN (Docker's own rules still apply, e.g. no
traffic between tenants on the bridge). Destinations are matched as the tenant addressed
them (``--ctorigdst``, before Docker's DNAT), so "the store at the gateway, port 9000" means
exactly that whether docker-proxy or a DNAT rule serves it.

IPv6: Docker gives tenants none (the network has no IPv6; every interface of the container
has disable_ipv6=1 and /proc/sys is read-only inside), and the IPv6 table drops everything
from a tenant's MAC in case an engine is reconfigured.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from fleet.supervisor.layout import EGRESS_SENTINEL

from .egress import NONE, PUBLIC, EgressPolicy

DISPATCH = "LITEFLEET-EGRESS"
CHAIN_PREFIX = "LFE-"
# (chain, where in it): Docker re-creates its own chains on start but keeps DOCKER-USER's rules.
HOOKS = (("DOCKER-USER", 1), ("INPUT", 1))
HOOKS6 = (("FORWARD", 1), ("INPUT", 1))
NEW_ONLY = ["-m", "conntrack", "!", "--ctstate", "ESTABLISHED,RELATED"]
DENY = ["-j", "REJECT", "--reject-with", "icmp-admin-prohibited"]
ALLOW = ["-j", "RETURN"]
# Never reached under `public`: not routed on the Internet, or inside a site, a provider or
# this host (RFC 6890). Documentation ranges (192.0.2/24, 198.51.100/24, 203.0.113/24) count
# as public: labs use them as stand-ins for Internet hosts.
NOT_PUBLIC = (
    "0.0.0.0/8",  # this network
    "10.0.0.0/8",
    "100.64.0.0/10",  # carrier-grade NAT, also cloud-internal services
    "127.0.0.0/8",
    "169.254.0.0/16",  # link-local: the cloud metadata address 169.254.169.254
    "172.16.0.0/12",  # Docker's default bridges live here
    "192.0.0.0/24",  # IETF protocol assignments
    "192.168.0.0/16",
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and the limited broadcast address
)
DNS_PORT = 53


@dataclass(frozen=True)
class Source:
    """How the host recognises a tenant's packets: by the container's MAC address (Docker
    tenants), or by its IPv4 address (for a runtime that cannot fix the MAC; the address must
    then stay the container's for as long as the rules exist)."""

    mac: str | None = None
    address: str | None = None

    def match(self) -> list[str]:
        if self.mac:
            return ["-m", "mac", "--mac-source", self.mac]
        if self.address:
            return ["-s", f"{self.address}/32"]
        raise ValueError("a Source needs a MAC or an address")

    @property
    def chain(self) -> str:
        """The tenant's chain (netfilter allows 28 characters)."""
        key = (self.mac or self.address or "").lower()
        return CHAIN_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Allowed:
    """A policy's destinations, resolved to IPv4 addresses."""

    endpoints: tuple[tuple[str, int], ...] = ()  # the tenant's store and database (TCP)
    resolvers: tuple[str, ...] = ()  # where the engine's DNS forwards the tenant's lookups
    destinations: tuple[tuple[str, int | None], ...] = ()  # a LIST's entries
    unresolved: tuple[str, ...] = field(default=(), compare=False)  # names with no address


def resolve(
    policy: EgressPolicy,
    endpoints: Iterable[tuple[str, int]],
    resolvers: Iterable[str],
    lookup: Callable[[str], list[str]],
) -> Allowed:
    """``lookup(name)`` -> IPv4 addresses (empty when it does not resolve)."""
    missing: list[str] = []

    def addresses(host: str) -> list[str]:
        found = [host] if _is_address(host) else sorted(set(lookup(host)))
        if not found:
            missing.append(host)
        return found

    own = {(ip, port) for host, port in endpoints for ip in addresses(host)}
    dests = {(ip, d.port) for d in policy.destinations for ip in addresses(d.host)}
    dns = sorted(set(resolvers)) if policy.needs_dns else []
    return Allowed(tuple(sorted(own)), tuple(dns), tuple(sorted(dests, key=str)), tuple(missing))


def chain_rules(policy: EgressPolicy, allowed: Allowed, subnet: str | None) -> list[list[str]]:
    """The tenant's chain, in order: the sentinel, its own endpoints, DNS, then the policy."""
    sentinel_ip, sentinel_port = EGRESS_SENTINEL
    sentinel = ["-d", f"{sentinel_ip}/32", "-p", "tcp", "--dport", str(sentinel_port)]
    rules = [[*sentinel, "-j", "REJECT", "--reject-with", "tcp-reset"]]
    rules += [_to(ip, port, "tcp") + ALLOW for ip, port in allowed.endpoints]
    rules += [_to(ip, DNS_PORT, p) + ALLOW for ip in allowed.resolvers for p in ("udp", "tcp")]
    if policy.kind == PUBLIC:
        rules += _public(subnet)
    elif policy.kind == NONE:
        rules.append(DENY)
    else:
        for ip, port in allowed.destinations:
            protocols: Sequence[str | None] = (None,) if port is None else ("tcp", "udp")
            rules += [_to(ip, port, p) + ALLOW for p in protocols]
        rules.append(DENY)
    return rules


def _public(subnet: str | None) -> list[list[str]]:
    rules = [
        # another container's published port, on any address of the host
        ["-m", "conntrack", "--ctstate", "DNAT", *DENY],
        # the host itself: the bridge gateway, eth0, every other bridge
        ["-m", "addrtype", "--dst-type", "LOCAL", *DENY],
    ]
    if subnet:  # the tenants' own network, wherever Docker's address pool put it
        rules.append(["-d", subnet, *DENY])
    rules += [["-d", cidr, *DENY] for cidr in NOT_PUBLIC]
    return [*rules, ALLOW]


def _to(ip: str, port: int | None, protocol: str | None) -> list[str]:
    rule = ["-p", protocol] if protocol else []
    rule += ["-m", "conntrack", "--ctorigdst", f"{ip}/32"]
    if port is not None:
        rule += ["--ctorigdstport", str(port)]
    return rule


def restore_text(chain: str, rules: list[list[str]]) -> str:
    """``iptables-restore --noflush`` input that creates or refills ``chain`` in one
    transaction: the tenant is never without a complete chain while it is replaced."""
    lines = ["*filter", f":{chain} - [0:0]"]
    lines += [" ".join(["-A", chain, *rule]) for rule in rules]
    return "\n".join([*lines, "COMMIT", ""])


def dispatch_rule(source: Source, comment: str) -> list[str]:
    """The rule of LITEFLEET-EGRESS sending ``source``'s packets to its chain (without -A)."""
    return [*source.match(), "-m", "comment", "--comment", comment, "-j", source.chain]


def dispatch_rule6(source: Source, comment: str) -> list[str]:
    """IPv6: a tenant has none; whatever comes from its MAC is dropped."""
    return [*source.match(), "-m", "comment", "--comment", comment, "-j", "DROP"]


def hook_rule() -> list[str]:
    return [*NEW_ONLY, "-j", DISPATCH]


def _is_address(host: str) -> bool:
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)
