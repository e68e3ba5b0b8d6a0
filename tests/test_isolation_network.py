"""A tenant's egress policy, probed from inside the tenant as agent code would (a workflow
opening sockets; never `docker exec`, see environment.md), against a real engine, the
embedded store, the host's netfilter and PostgreSQL.

What the probes aim at:
- tenant B's API: its container address on the tenants' network, and its published port
  (bound on 127.0.0.1 of the host; from a tenant, the host is the bridge gateway);
- a host service: a listener of this test process on every host address (0.0.0.0), tried at
  the bridge gateway and at the host's own eth0 address;
- the cloud metadata address 169.254.169.254;
- "outside": a network namespace behind a veth pair holding a public-looking address
  (198.51.100.x, routed like any Internet host, through Docker's masquerade) and a private
  one (10.x), each listening on two ports. The real Internet is not reachable here.
A denied connection fails at once with EHOSTUNREACH (the tenant's chain answers "prohibited"),
which is not what Docker alone would answer (a timeout, or a refusal from the host), so each
denial shown is the policy's doing.

Only this module's tenants carry rules (their chains match their containers' MAC addresses);
every tenant is removed at the end, with its rules, and the namespace with its routes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shlex
import socket
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from fleet.core.names import FIREWALL_CONTAINER, LABEL_TENANT, volume_name
from fleet.engine.egress_rules import DISPATCH
from fleet.storage.embedded import EmbeddedStore as ObjectStore
from tests.docker_fixtures import TEST_BUCKET
from tests.pg_fixtures import pg_dsn, pg_server  # noqa: F401  (fixtures)
from tests.second_engine import running_second_engine

from .fleet_support import Result, fleet, free_port, one_line_error

pytestmark = [pytest.mark.docker, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

PROBE_APP = """
import errno
import socket

from agent_runtime import step, workflow


@step
def connect(host: str, port: int) -> str:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(3.0)
            s.connect((host, port))
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))
    return "ok"


@step
def lookup(name: str) -> str:
    try:
        socket.getaddrinfo(name, 80, socket.AF_INET)
    except socket.gaierror as exc:
        return {socket.EAI_NONAME: "EAI_NONAME", socket.EAI_AGAIN: "EAI_AGAIN"}.get(
            exc.errno, str(exc.errno)
        )
    return "ok"


@workflow
async def probe(targets: list, names: list) -> dict:
    found = {}
    for host, port in targets:
        found[f"{host}:{port}"] = await connect(host, port)
    for name in names:
        found[name] = await lookup(name)
    return found
"""
DENIED = "EHOSTUNREACH"  # the tenant's chain: REJECT with icmp-admin-prohibited
NXNAME = "litefleet-egress-probe.invalid"  # answered NXDOMAIN when a resolver is reached


def _ip(*args: str, ns: str | None = None) -> None:
    argv = ["ip", *args] if ns is None else ["ip", "netns", "exec", ns, "ip", *args]
    subprocess.run(argv, check=True, capture_output=True, text=True)


def _routes() -> str:
    return subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout + (
        subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True).stdout
    )


LISTENER = """
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    while True:
        c, _ = s.accept(); c.close()
for p in sys.argv[1:]:
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
threading.Event().wait()
"""


@dataclass
class Outside:
    public: str
    private: str
    ports: tuple[int, int]


@contextlib.contextmanager
def outside_world() -> Iterator[Outside]:
    """A namespace with a public-looking and a private address, routed from the host."""
    tag = uuid.uuid4().hex[:6]
    ns, host_if, ns_if = f"lfeg-{tag}", f"lfeg{tag}h", f"lfeg{tag}n"
    used = _routes()
    block = next(b for b in random.sample(range(1, 63), 62) if f"198.51.100.{4 * b}/" not in used)
    host_ip, ns_ip = f"198.51.100.{4 * block + 1}", f"198.51.100.{4 * block + 2}"
    private = next(
        f"10.{a}.{b}.2"
        for a, b in ((random.randint(200, 250), random.randint(0, 255)) for _ in range(100))
        if f"10.{a}.{b}." not in used
    )
    ports = (free_port(), free_port())
    server = None
    try:
        _ip("netns", "add", ns)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("addr", "add", f"{ns_ip}/30", "dev", ns_if, ns=ns)
        _ip("addr", "add", f"{private}/32", "dev", ns_if, ns=ns)
        _ip("link", "set", ns_if, "up", ns=ns)
        _ip("link", "set", "lo", "up", ns=ns)
        _ip("route", "add", "default", "via", host_ip, ns=ns)
        _ip("route", "add", f"{private}/32", "via", ns_ip, "dev", host_if)
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", LISTENER, *map(str, ports)]
        )
        _wait_listening(ns_ip, ports[0])
        yield Outside(ns_ip, private, ports)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)  # takes both veths
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)


def _wait_listening(host: str, port: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {host}:{port}"
            time.sleep(0.2)


@contextlib.contextmanager
def host_listener() -> Iterator[int]:
    """A TCP service of this host on every address (so also on the bridge gateway)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", 0))
    srv.listen(64)
    stop = threading.Event()

    def loop() -> None:
        srv.settimeout(0.5)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = srv.accept()
                conn.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield int(srv.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        srv.close()


def _host_address() -> str:
    """This host's own address on its uplink (eth0 here)."""
    out = subprocess.run(
        ["ip", "-4", "route", "get", "1.1.1.1"], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[out.index("src") + 1]


# -- the fleet


@dataclass
class World:
    env: dict[str, str]
    docker: Any
    image: str
    outside: Outside
    host_port: int  # the host listener
    host_ip: str
    gateway: str
    gateway6: str  # the bridge's IPv6 link-local address
    b_ip: str  # tenant B on the tenants' network
    b_port: int  # tenant B's published port (127.0.0.1 of the host)
    tenants: list[str]

    def run(self, *args: str, **kw: Any) -> Result:
        if args and args[0] == "up":
            self.tenants.append(args[1])
        return fleet(*args, env={**self.env, **kw.pop("env", {})}, **kw)

    def up_with_probe(self, name: str, *args: str) -> None:
        """The probe app goes into the tenant's volume before `fleet up` creates the tenant
        on it (as a template would put it into the image)."""
        volume = volume_name(name)
        self.docker.volumes.create(name=volume, labels={LABEL_TENANT: name})
        helper = self.docker.containers.create(
            self.image,
            entrypoint=["true"],
            volumes={volume: {"bind": "/data", "mode": "rw"}},
            network_disabled=True,
        )
        try:
            helper.put_archive("/data", _tar("probe.py", PROBE_APP.encode()))
        finally:
            helper.remove(force=True)
        # --image: /data/probe.py is a path in the container (without it, --app PATH is a
        # file on this machine, built as a template).
        _ok(self.run("up", name, "--image", self.image, "--app", "/data/probe.py", *args))

    def probe(
        self, tenant: str, targets: list[tuple[str, int]], names: list[str]
    ) -> dict[str, str]:
        body = json.dumps({"targets": targets, "names": names})
        r = _ok(self.run("run", tenant, "probe", "--input", body, "--wait", "--json"))
        result: dict[str, str] = json.loads(r.out)["result"]
        return result

    def container(self, tenant: str) -> Any:
        return self.docker.containers.get(f"litefleet-{tenant}")

    def ls(self) -> dict[str, dict[str, Any]]:
        return {t["tenant"]: t for t in json.loads(_ok(self.run("ls", "--json")).out)}


def _tar(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.uid, info.gid = len(data), 0o644, 10001, 10001
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _ok(r: Result) -> Result:
    assert r.code == 0, f"exit {r.code}\nstdout: {r.out}\nstderr: {r.err}"
    return r


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def world(docker_client: Any, tenant_image: str, object_store: ObjectStore) -> Iterator[World]:
    env = {
        "FLEET_IMAGE": tenant_image,
        "FLEET_S3_BUCKET": TEST_BUCKET,
        "FLEET_HEALTH_TIMEOUT": "120",
        "FLEET_CONFIG": "",
    }
    with outside_world() as outside, host_listener() as host_port:
        w = World(env, docker_client, tenant_image, outside, host_port, _host_address(),
                  "", "", "", 0, [])  # fmt: skip
        try:
            b = _name("eg-b")
            _ok(w.run("up", b))
            net = next(iter(w.container(b).attrs["NetworkSettings"]["Networks"].values()))
            w.b_ip, w.gateway = net["IPAddress"], net["Gateway"]
            w.b_port = int(w.ls()[b]["url"].rsplit(":", 1)[1])
            w.gateway6 = _link_local(docker_client, net["NetworkID"])
            yield w
        finally:
            for t in w.tenants:
                fleet("rm", t, "--purge", "--yes", env=env)
            _assert_no_rules_left(docker_client, w.tenants)


def _link_local(docker_client: Any, network_id: str) -> str:
    bridge = "br-" + network_id[:12]
    out = subprocess.run(
        ["ip", "-6", "-o", "addr", "show", "dev", bridge, "scope", "link"],
        capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    return out[out.index("inet6") + 1].split("/")[0] if "inet6" in out else "fe80::1"


def _dispatch() -> str:
    return subprocess.run(
        ["iptables", "-w", "-S", DISPATCH], capture_output=True, text=True, check=False
    ).stdout


def _records(docker_client: Any) -> list[dict[str, Any]]:
    fw = docker_client.containers.get(FIREWALL_CONTAINER)
    code, out = fw.exec_run(["python3", "-I", "-m", "fleet.engine.firewall", "list"], user="0:0")
    assert code == 0, out
    records: list[dict[str, Any]] = json.loads(out.decode().strip().splitlines()[-1])
    return records


def _assert_no_rules_left(docker_client: Any, tenants: list[str]) -> None:
    containers = {f"litefleet-{t}" for t in tenants}
    assert not [r for r in _records(docker_client) if r["container"] in containers]
    left = _dispatch()
    assert not [c for c in containers if f"litefleet:{c}" in left]


def _rules_of(w: World, tenant: str) -> tuple[str, str]:
    """(the dispatch rule as ``iptables -S`` prints it, the tenant's chain)."""
    mac = w.container(tenant).attrs["Config"]["MacAddress"].lower()
    rule = next((ln for ln in _dispatch().splitlines() if mac in ln.lower()), "")
    return rule, (rule.rsplit("-j ", 1)[-1].strip() if rule else "")


# -- the policies


def _common_targets(w: World) -> list[tuple[str, int]]:
    o = w.outside
    return [
        (o.public, o.ports[0]),
        (o.public, o.ports[1]),
        (o.private, o.ports[0]),
        (o.private, o.ports[1]),
        (w.b_ip, 8080),  # tenant B's API on the tenants' network
        (w.gateway, w.b_port),  # tenant B's published port, as a tenant can address the host
        (w.gateway, w.host_port),  # a host service on the bridge gateway
        (w.host_ip, w.host_port),  # the same service on the host's own uplink address
        ("169.254.169.254", 80),  # the cloud metadata address
        ("192.0.0.8", 9),  # the sentinel: only the tenant's own chain answers it
        (f"{w.gateway6}%eth0", w.host_port),  # IPv6 to the bridge (tenants have none)
    ]


def _key(host: str, port: int) -> str:
    return f"{host}:{port}"


def test_public_reaches_public_addresses_only(world: World) -> None:
    w, o = world, world.outside
    a = _name("eg-public")
    w.up_with_probe(a)  # public is the default
    got = w.probe(a, _common_targets(w), [NXNAME])
    assert got[_key(o.public, o.ports[0])] == "ok"
    assert got[_key(o.public, o.ports[1])] == "ok"
    for target in _common_targets(w)[2:9]:
        assert got[_key(*target)] == DENIED, (target, got)
    assert got[_key("192.0.0.8", 9)] == "ECONNREFUSED"
    assert got[_key(f"{w.gateway6}%eth0", w.host_port)] != "ok"
    assert got[NXNAME] == "EAI_NONAME"  # its lookups reach the engine's resolver
    assert w.ls()[a]["egress"] == "public"


def test_none_reaches_nothing(world: World) -> None:
    w = world
    a = _name("eg-none")
    w.up_with_probe(a, "--egress", "none")
    got = w.probe(a, _common_targets(w), [NXNAME])
    for target in _common_targets(w)[:9]:
        assert got[_key(*target)] == DENIED, (target, got)
    assert got[_key("192.0.0.8", 9)] == "ECONNREFUSED"
    assert got[NXNAME] == "EAI_AGAIN"  # not even DNS: the resolver is out of reach
    assert w.ls()[a]["egress"] == "none"


def test_a_list_reaches_exactly_those(world: World) -> None:
    w, o = world, world.outside
    a = _name("eg-list")
    listed = f"{o.public}:{o.ports[0]},{o.private},{w.gateway}:{w.host_port},localhost:1"
    w.up_with_probe(a, "--egress", listed)
    got = w.probe(a, _common_targets(w), [NXNAME])
    allowed = {
        _key(o.public, o.ports[0]),  # that port only
        _key(o.private, o.ports[0]),  # every port
        _key(o.private, o.ports[1]),
        _key(w.gateway, w.host_port),  # listed, though a host address
    }
    for target in _common_targets(w)[:9]:
        want = "ok" if _key(*target) in allowed else DENIED
        assert got[_key(*target)] == want, (target, got)
    assert got[NXNAME] == "EAI_NONAME"  # it names a host, so it may look names up
    assert w.ls()[a]["egress"] == listed
    # the name was resolved on the host, into a rule for its address
    _, chain = _rules_of(w, a)
    rules = subprocess.run(["iptables", "-w", "-S", chain], capture_output=True, text=True)
    assert "--ctorigdst 127.0.0.1 --ctorigdstport 1 -j RETURN" in rules.stdout


def test_own_replication_works_under_every_policy(world: World) -> None:
    """The tenants above ran their probes and replicated them to the store (a private
    address at the bridge gateway) whatever their policy."""
    w = world
    tenants = [t for t in w.tenants if t.startswith(("eg-public", "eg-none", "eg-list"))]
    assert len(tenants) == 3
    deadline = time.monotonic() + 60
    for t in tenants:
        while True:
            rep = w.ls()[t]["replication"]
            if rep["local_txid"] and rep["replicated_txid"] == rep["local_txid"]:
                break
            assert time.monotonic() < deadline, (t, rep)
            time.sleep(0.5)


@pytest.mark.postgres
@pytest.mark.parametrize("policy", ["none", "203.0.113.9:443"])
def test_postgres_tenants_reach_their_database_under_any_policy(
    world: World,
    pg_dsn: str,  # noqa: F811
    policy: str,
) -> None:
    w = world
    t = _name("eg-pg")
    try:
        _ok(w.run("up", t, "--db-url", pg_dsn, "--egress", policy))
        r = _ok(w.run("run", t, "echo", "--input", '{"message": "hi"}', "--wait", "--json"))
        assert json.loads(r.out)["status"] == "completed"
        assert w.ls()[t]["egress"] == policy
    finally:  # before its database goes
        _ok(w.run("rm", t))


# -- keeping the rules


def _wait_healthy(w: World, tenant: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = w.container(tenant)
        if (c.attrs["State"].get("Health") or {}).get("Status") == "healthy" or _api_ok(w, tenant):
            return True
        time.sleep(0.5)
    return False


def _api_ok(w: World, tenant: str) -> bool:
    return w.run("runs", tenant, "--json").code == 0


def test_a_stopped_tenant_keeps_its_policy(world: World) -> None:
    w, o = world, world.outside
    a = next(t for t in w.tenants if t.startswith("eg-none"))
    _ok(w.run("down", a))
    r = w.run("up", a, "--egress", "public")
    assert r.code == 2 and "--egress" in one_line_error(r)
    _ok(w.run("up", a, "--egress", "NONE"))  # the same policy, written differently
    assert w.ls()[a]["egress"] == "none"
    got = w.probe(a, [(o.public, o.ports[0])], [])
    assert got[_key(o.public, o.ports[0])] == DENIED


def test_rules_survive_a_container_restart_and_an_engine_start(world: World) -> None:
    """`docker restart` is what the engine's restart policy does; a dockerd starting on this
    host rewrites Docker's own chains, which is what an engine restart does to netfilter."""
    w, o = world, world.outside
    a = next(t for t in w.tenants if t.startswith("eg-none"))
    before = _rules_of(w, a)
    w.container(a).restart(timeout=30)
    assert _wait_healthy(w, a, 90)
    with running_second_engine():
        assert _rules_of(w, a) == before and before[0]
        hooks = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True).stdout
        assert f"-A DOCKER-USER -m conntrack ! --ctstate RELATED,ESTABLISHED -j {DISPATCH}" in hooks
        assert f"-A INPUT -m conntrack ! --ctstate RELATED,ESTABLISHED -j {DISPATCH}" in hooks
        got = w.probe(a, [(o.public, o.ports[0]), (w.gateway, w.host_port)], [])
        assert set(got.values()) == {DENIED}


def test_a_host_without_the_rules_holds_the_tenant_until_they_are_back(world: World) -> None:
    """A reboot empties netfilter and the engine restarts both the tenant and the firewall
    container, in any order. Here: the firewall stopped, the tenant's rules deleted (exactly
    its own), the tenant restarted: it runs nothing; the firewall starts: the tenant runs,
    under its policy."""
    w, o = world, world.outside
    a = next(t for t in w.tenants if t.startswith("eg-list"))
    firewall = w.docker.containers.get(FIREWALL_CONTAINER)
    rule, chain = _rules_of(w, a)
    firewall.stop(timeout=5)
    try:
        delete = shlex.split(rule.replace("-A ", "-D ", 1))
        subprocess.run(["iptables", "-w", *delete], check=True)
        subprocess.run(["iptables", "-w", "-F", chain], check=True)
        subprocess.run(["iptables", "-w", "-X", chain], check=True)
        restarted = int(time.time())
        w.container(a).restart(timeout=30)
        # Everything since the restart: Litestream's own lines can push the supervisor's out
        # of a short tail. Polled: on a loaded machine the supervisor may take a while to say it.
        said = "egress rules for this tenant are not in place"
        deadline = time.monotonic() + 60
        while said not in w.container(a).logs(since=restarted - 1).decode(errors="replace"):
            assert time.monotonic() < deadline, f"the tenant never said {said!r}"
            time.sleep(1)
        time.sleep(3)  # and it holds: still nothing served a few seconds later
        assert not _api_ok(w, a)
    finally:
        firewall.start()
    assert _wait_healthy(w, a, 90)
    assert _rules_of(w, a)[0]
    got = w.probe(a, [(o.public, o.ports[0]), (o.public, o.ports[1])], [])
    assert got == {_key(o.public, o.ports[0]): "ok", _key(o.public, o.ports[1]): DENIED}


def test_rm_teardown_and_a_failed_create_leave_no_rules(world: World) -> None:
    """(`fleet gc` removes through the same path as teardown; not run here: it would remove
    every expired tenant on this shared engine, other suites' too.)"""
    w = world
    batch = uuid.uuid4().hex[:6]
    doomed = [_name("eg-td"), _name("eg-td")]
    for t in doomed:
        _ok(w.run("up", t, "--label", f"egbatch={batch}", "--egress", "none"))
    assert all(_rules_of(w, t)[0] for t in doomed)
    _ok(w.run("teardown", "--label", f"egbatch={batch}"))
    _assert_no_rules_left(w.docker, doomed)
    single = _name("eg-rm")
    _ok(w.run("up", single))
    assert _rules_of(w, single)[0]
    _ok(w.run("rm", single))
    _assert_no_rules_left(w.docker, [single])
    bad = _name("eg-bad")
    r = w.run("up", bad, "--memory", "1k")  # the engine refuses the container itself
    assert r.code != 0
    _assert_no_rules_left(w.docker, [bad])


def test_the_firewall_replaces_and_prunes_only_its_own_records(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fleet/engine/firewall.py on this host's netfilter, with MACs no container has."""
    from fleet.engine import firewall
    from fleet.engine.network import random_mac

    monkeypatch.setattr(firewall, "STATE", tmp_path)
    net = firewall.Netfilter(prefix=[])  # this host's own iptables, as root

    def record(name: str, age: float = 0.0) -> firewall.Record:
        mac = random_mac()
        return firewall.Record(f"egtest-{name}", name, "none", mac=mac, created=time.time() - age)

    old, young, kept = record("old", age=3600), record("young"), record("kept", age=3600)
    again = record("kept", age=3600)  # the same container name, a new container
    try:
        for r in (old, young, kept):
            firewall.apply(net, r)
        assert all(r.source.chain in _dispatch() for r in (old, young, kept))
        firewall.apply(net, again)
        assert kept.source.chain not in _dispatch() and again.source.chain in _dispatch()
        assert firewall.prune(net, {again.container}) == [old.container]
        assert old.source.chain not in _dispatch()  # gone, and old enough
        assert young.source.chain in _dispatch()  # gone, but it may be a create in progress
        chains = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True).stdout
        assert f"-N {old.source.chain}" not in chains and f"-N {young.source.chain}" in chains
    finally:
        for r in firewall.load_all():
            firewall.remove(net, r.container)
    assert not [r for r in (old, young, kept, again) if r.source.chain in _dispatch()]
