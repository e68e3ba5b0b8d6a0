"""The fleet's firewall on an engine's host: applies every tenant's egress rules there, keeps
them applied, and re-applies them when the host comes back.

It runs inside the container ``litefleet-firewall`` that fleet/engine/network.py keeps on each
engine (the fleet's tenant image, in the host's network namespace with NET_ADMIN, the host's
root filesystem read-only at /host, restart policy ``always``, its records in the volume
``litefleet-firewall``), as ``python3 -I -m fleet.engine.firewall serve | apply RECORD |
remove CONTAINER | prune LIVE_NAMES | list``. Standard library only. iptables is the host's
own binary (``chroot /host``), so the rules go where the engine's own go (nf_tables or legacy
backend), and the image needs no iptables of its own.

- ``apply`` (``docker exec`` by the fleet, before the tenant's container exists): record the
  tenant, install its chain and dispatch rule. ``remove`` (after the container is gone):
  take them out; ``prune`` (after a removal) forgets containers removed behind the fleet's
  back (`docker rm`, an older fleet). All hold the records' lock: parallel commands queue.
- ``serve`` (the container's main process): at start, apply every record. That is what
  restores the rules after a reboot, which empties the kernel's tables: the engine starts this
  container with the tenants (restart policy), and a tenant starts nothing before its rules
  are in place (fleet/supervisor/egress.py), so the order does not matter. Then, every
  REFRESH_S seconds: put back any hook or dispatch rule someone removed, and resolve the DNS
  names of each policy again, replacing a tenant's chain (atomically) when they changed.

Records are keyed by container name (one per name on an engine): a create that crashed
before its container existed leaves one stale record, replaced by the next create of that name
or pruned after the next removal. Stale rules are harmless: they match no container's MAC.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .egress import parse_egress
from .egress_rules import (
    DISPATCH,
    HOOKS,
    HOOKS6,
    Allowed,
    Source,
    chain_rules,
    dispatch_rule,
    dispatch_rule6,
    hook_rule,
    resolve,
    restore_text,
)

STATE = Path(os.environ.get("LITEFLEET_FIREWALL_STATE", "/state"))
REFRESH_S = float(os.environ.get("LITEFLEET_FIREWALL_REFRESH", "30"))
HOST_TOOLS = ["chroot", "/host"]  # the host's binaries (and xtables lock, when mounted)
RESOLV_CONF = "/etc/resolv.conf"  # host network: Docker's copy of what its DNS forwards to
PRUNE_AFTER_S = 600.0


@dataclass(frozen=True)
class Record:
    """One tenant container on this engine and what its egress allows."""

    container: str  # its name on the engine: one record per name
    tenant: str
    egress: str  # the policy's canonical text
    endpoints: tuple[str, ...] = ()  # HOST:PORT its own processes reach: store, database
    mac: str | None = None
    address: str | None = None
    subnet: str | None = None  # the tenants' network on this engine
    created: float = field(default_factory=time.time)

    @property
    def source(self) -> Source:
        return Source(self.mac, self.address)

    @property
    def comment(self) -> str:
        return f"litefleet:{self.container}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Record:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}  # a newer fleet's extra fields are not ours
        data = {k: v for k, v in data.items() if k in known}
        data["endpoints"] = tuple(data.get("endpoints") or ())
        record = cls(**data)
        parse_egress(record.egress)  # refuse what the rules could not express
        record.source.match()
        if not record.container.replace("-", "").isalnum():
            raise ValueError(f"bad container name {record.container!r}")
        return record


class Netfilter:
    """The host's iptables/ip6tables, run through ``prefix`` (chroot into the host's root)."""

    def __init__(self, prefix: list[str] | None = None) -> None:
        self.prefix = HOST_TOOLS if prefix is None else prefix
        self._ipv6: bool | None = None
        self.last_error = ""

    def output(self, tool: str, args: list[str], *, stdin: str | None = None) -> str | None:
        """stdout of ``tool args`` on the host; None when it failed (``last_error`` says why)."""
        # -w: wait for the xtables lock (legacy backend) instead of failing next to dockerd
        options = ["--noflush"] if tool.endswith("-restore") else ["-w"]
        proc = subprocess.run(
            [*self.prefix, tool, *options, *args],
            input=stdin, capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("#")]
            self.last_error = lines[-1] if lines else f"exit status {proc.returncode}"
            return None
        return proc.stdout

    def run(self, tool: str, args: list[str], *, stdin: str | None = None) -> bool:
        return self.output(tool, args, stdin=stdin) is not None

    def must(self, tool: str, args: list[str], *, stdin: str | None = None) -> None:
        if not self.run(tool, args, stdin=stdin):
            raise RuntimeError(f"{tool} {' '.join(args[:3])}: {self.last_error}")

    @property
    def ipv6(self) -> bool:
        """Whether the host has IPv6 netfilter at all (a kernel without IPv6 needs nothing)."""
        if self._ipv6 is None:
            self._ipv6 = self.run("ip6tables", ["-S", "INPUT"])
        return self._ipv6

    def ensure_hooks(self) -> None:
        """LITEFLEET-EGRESS and the jumps to it (never flushed: other engines on this host
        keep their tenants' dispatch rules in it too)."""
        families = [("iptables", HOOKS)] + ([("ip6tables", HOOKS6)] if self.ipv6 else [])
        for tool, hooks in families:
            self.run(tool, ["-N", DISPATCH])  # exists already: fine
            for chain, position in hooks:
                if not self.run(tool, ["-C", chain, *hook_rule()]):
                    self.must(tool, ["-I", chain, str(position), *hook_rule()])

    def install(self, record: Record, text: str) -> None:
        """Fill the tenant's chain (one transaction), then make sure packets go there."""
        self.must("iptables-restore", [], stdin=text)
        self._ensure(record, "iptables", dispatch_rule(record.source, record.comment))
        if self.ipv6 and record.mac:
            self._ensure(record, "ip6tables", dispatch_rule6(record.source, record.comment))

    def _ensure(self, record: Record, tool: str, rule: list[str]) -> None:
        if not self.run(tool, ["-C", DISPATCH, *rule]):
            self.must(tool, ["-A", DISPATCH, *rule])

    def uninstall(self, record: Record) -> None:
        rules = [("iptables", dispatch_rule(record.source, record.comment))]
        if self.ipv6 and record.mac:
            rules.append(("ip6tables", dispatch_rule6(record.source, record.comment)))
        for tool, rule in rules:
            for _ in range(8):  # duplicates, should a crash have left any
                if not self.run(tool, ["-D", DISPATCH, *rule]):
                    break
        self.run("iptables", ["-F", record.source.chain])
        self.run("iptables", ["-X", record.source.chain])

    def dispatched_chains(self) -> str:
        """``iptables -S LITEFLEET-EGRESS`` (to notice rules someone removed)."""
        return self.output("iptables", ["-S", DISPATCH]) or ""


def resolvers(path: str = RESOLV_CONF) -> list[str]:
    """The IPv4 resolvers the engine's DNS forwards tenants' lookups to. A loopback resolver
    (systemd-resolved's 127.0.0.53) is queried from the host's namespace: no rule sees it."""
    found = []
    with contextlib.suppress(OSError), open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 2 or parts[0] != "nameserver" or "." not in parts[1]:
                continue
            if not parts[1].startswith("127."):
                found.append(parts[1])
    return found


def lookup(name: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return []
    return sorted({str(info[4][0]) for info in infos})


def allowed(record: Record) -> Allowed:
    endpoints = []
    for item in record.endpoints:
        host, _, port = item.rpartition(":")
        endpoints.append((host, int(port)))
    return resolve(parse_egress(record.egress), endpoints, resolvers(), lookup)


def chain_text(record: Record, allow: Allowed) -> str:
    rules = chain_rules(parse_egress(record.egress), allow, record.subnet)
    return restore_text(record.source.chain, rules)


# -- the records (one JSON file per container name in STATE)


@contextlib.contextmanager
def locked() -> Iterator[None]:
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _path(container: str) -> Path:
    return STATE / f"{container}.json"


def load(container: str) -> Record | None:
    try:
        return Record.from_json(_path(container).read_text())
    except FileNotFoundError:
        return None


def load_all() -> list[Record]:
    records = []
    for path in sorted(STATE.glob("*.json")):
        try:
            records.append(Record.from_json(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            log("unreadable record", file=path.name, error=str(exc))
    return records


def save(record: Record) -> None:
    tmp = _path(record.container).with_suffix(".tmp")
    tmp.write_text(record.to_json())
    os.replace(tmp, _path(record.container))


# -- operations


def apply(net: Netfilter, record: Record) -> dict[str, object]:
    """Install ``record``'s rules (replacing an older container's of the same name)."""
    with locked():
        net.ensure_hooks()
        old = load(record.container)
        if old is not None and old.source != record.source:
            net.uninstall(old)  # its container is gone: a name exists once on an engine
        allow = allowed(record)
        net.install(record, chain_text(record, allow))
        save(record)
    return {"chain": record.source.chain, "unresolved": list(allow.unresolved)}


def remove(net: Netfilter, container: str) -> bool:
    with locked():
        record = load(container)
        if record is None:
            return False
        net.uninstall(record)
        _path(container).unlink(missing_ok=True)
    return True


def prune(net: Netfilter, live: set[str], older_than: float = PRUNE_AFTER_S) -> list[str]:
    """Forget records of containers that no longer exist (``live``: the names the engine
    has), e.g. removed by `docker rm` or an older fleet. A record younger than
    ``older_than`` may belong to a create in progress, whose container does not exist yet."""
    gone = []
    with locked():
        for record in load_all():
            if record.container in live or time.time() - record.created < older_than:
                continue
            net.uninstall(record)
            _path(record.container).unlink(missing_ok=True)
            gone.append(record.container)
    return gone


def refresh(net: Netfilter, applied: dict[str, str]) -> None:
    """One pass of ``serve``: hooks, then each record whose rules are missing or stale."""
    with locked():
        net.ensure_hooks()
        present = net.dispatched_chains()
        for record in load_all():
            text = chain_text(record, allowed(record))
            if applied.get(record.container) == text and record.source.chain in present:
                continue
            try:
                net.install(record, text)
            except RuntimeError as exc:
                log("apply failed", container=record.container, error=str(exc))
                continue
            applied[record.container] = text
            log("applied", container=record.container, tenant=record.tenant)


def serve(net: Netfilter) -> int:
    applied: dict[str, str] = {}
    log("firewall started", records=len(load_all()), refresh_s=REFRESH_S)
    while True:
        try:
            refresh(net, applied)
        except RuntimeError as exc:  # e.g. no DOCKER-USER yet while the engine starts
            log("refresh failed", error=str(exc))
        time.sleep(REFRESH_S)


def log(event: str, **fields: object) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    net = Netfilter()
    command = argv[0] if argv else ""
    if command == "serve":
        return serve(net)
    if command == "apply" and len(argv) == 2:
        print(json.dumps(apply(net, Record.from_json(argv[1]))))
        return 0
    if command == "remove" and len(argv) == 2:
        print(json.dumps({"removed": remove(net, argv[1])}))
        return 0
    if command == "prune" and len(argv) == 2:
        print(json.dumps({"pruned": prune(net, set(json.loads(argv[1])))}))
        return 0
    if command == "list":
        print(json.dumps([json.loads(r.to_json()) for r in load_all()]))
        return 0
    sys.stderr.write(
        "usage: firewall serve | apply RECORD | remove CONTAINER | prune LIVE_NAMES | list\n"
    )
    return 64


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (RuntimeError, ValueError, TypeError) as exc:
        sys.stderr.write(f"firewall: {exc}\n")
        sys.exit(1)
