"""A tenant's egress policy (`fleet up T --egress public|none|LIST`): what it is and how it is
written down.

- ``public`` (the default): public addresses, never private ranges, link-local (the cloud
  metadata address), the host's own addresses or other tenants;
- ``none``: nothing;
- a LIST, ``HOST[:PORT],...`` with IPv4 addresses or DNS names: exactly those (any port when
  none is given).

Whatever the policy, a tenant still reaches its own object store and PostgreSQL endpoints.
The policy travels as its canonical text (a container label, LITEFLEET_EGRESS, the firewall's
records); fleet/engine/egress_rules.py turns it into netfilter rules. Standard library only:
the firewall container (fleet/engine/firewall.py) parses it too.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from fleet.core.errors import InvalidArgument

PUBLIC = "public"
NONE = "none"
MAX_ENTRIES = 64  # each entry is a few rules every new connection of the tenant walks
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_HINT = "use public, none, or HOST[:PORT],... with IPv4 addresses or DNS names"


@dataclass(frozen=True)
class Destination:
    """One LIST entry: an IPv4 address or a DNS name, and a port (None: every port)."""

    host: str
    port: int | None = None

    @property
    def is_name(self) -> bool:
        return not _is_ipv4(self.host)

    def __str__(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class EgressPolicy:
    kind: str  # PUBLIC, NONE, or "list"
    destinations: tuple[Destination, ...] = ()

    @property
    def needs_dns(self) -> bool:
        """Whether the tenant's own lookups may reach the engine's resolvers: under
        ``public``, and under a LIST naming a host (so the tenant can resolve it)."""
        return self.kind == PUBLIC or any(d.is_name for d in self.destinations)

    def __str__(self) -> str:
        if self.kind != "list":
            return self.kind
        return ",".join(str(d) for d in self.destinations)


def parse_egress(text: str) -> EgressPolicy:
    """The policy ``text`` names; InvalidArgument (one line) when it names none."""
    spec = text.strip().lower()
    if spec in (PUBLIC, NONE):
        return EgressPolicy(spec)
    if not spec:
        raise InvalidArgument("--egress is empty", _HINT)
    entries = [e.strip() for e in spec.split(",")]
    if "" in entries:
        raise InvalidArgument(f"--egress {text.strip()!r} has an empty entry", _HINT)
    if len(entries) > MAX_ENTRIES:
        raise InvalidArgument(f"--egress lists {len(entries)} entries, at most {MAX_ENTRIES}")
    found: dict[Destination, None] = {}  # ordered, without duplicates
    for entry in entries:
        found[_destination(entry)] = None
    return EgressPolicy("list", tuple(found))


def _destination(entry: str) -> Destination:
    if entry in (PUBLIC, NONE):
        raise InvalidArgument(f"--egress: {entry!r} cannot be part of a list", _HINT)
    if entry.startswith("[") or entry.count(":") > 1:
        raise InvalidArgument(
            f"--egress entry {entry!r}: IPv6 is not supported (tenants have IPv4 only)"
        )
    host, sep, port_text = entry.partition(":")
    port = _port(entry, port_text) if sep else None
    host = host.rstrip(".")
    if "/" in host:
        raise InvalidArgument(f"--egress entry {entry!r}: give one address, not a network")
    if _is_ipv4(host):
        if ipaddress.IPv4Address(host).is_unspecified:
            raise InvalidArgument(f"--egress entry {entry!r}: 0.0.0.0 is no destination")
    elif not _is_dns_name(host):
        raise InvalidArgument(f"--egress entry {entry!r}: not an IPv4 address or DNS name", _HINT)
    return Destination(host, port)


def _port(entry: str, text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise InvalidArgument(f"--egress entry {entry!r}: the port must be 1-65535")
    return int(text)


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _is_dns_name(host: str) -> bool:
    labels = host.split(".")
    return (
        0 < len(host) <= 253
        and all(_LABEL.fullmatch(label) for label in labels)
        # all-numeric names ("1.2.3") are mistyped addresses, not names
        and not all(label.isdigit() for label in labels)
    )
