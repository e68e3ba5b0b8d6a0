"""`--egress`: the policy's parsing, its netfilter rules, the firewall's records and the
supervisor's wait for its rules (no Docker; the rules on a real host are in
tests/test_isolation_network.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.core.errors import InvalidArgument
from fleet.engine.egress import MAX_ENTRIES, Destination, parse_egress
from fleet.engine.egress_rules import (
    DENY,
    NOT_PUBLIC,
    Source,
    chain_rules,
    dispatch_rule,
    resolve,
    restore_text,
)
from fleet.engine.firewall import Record, resolvers
from fleet.engine.network import random_mac, tenant_endpoints
from fleet.supervisor import egress as supervisor_egress
from fleet.supervisor.layout import EGRESS_SENTINEL, ENV_EGRESS

from .fleet_support import cli, one_line_error


@pytest.mark.parametrize("text", ["public", " PUBLIC ", "none", "None"])
def test_keywords(text: str) -> None:
    policy = parse_egress(text)
    assert str(policy) == text.strip().lower() and not policy.destinations


def test_a_list_is_kept_in_order_without_duplicates() -> None:
    policy = parse_egress(" api.Example.com.:443, 203.0.113.7 ,api.example.com:443,10.1.2.3:5432")
    assert policy.destinations == (
        Destination("api.example.com", 443),
        Destination("203.0.113.7"),
        Destination("10.1.2.3", 5432),
    )
    assert str(policy) == "api.example.com:443,203.0.113.7,10.1.2.3:5432"
    assert parse_egress(str(policy)) == policy  # the canonical text parses to itself
    assert policy.needs_dns  # it names a host: the tenant may look it up
    assert not parse_egress("203.0.113.7:443").needs_dns
    assert parse_egress("public").needs_dns and not parse_egress("none").needs_dns


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("1.2.3.4,,5.6.7.8", "empty entry"),
        ("1.2.3.4:0", "port must be 1-65535"),
        ("1.2.3.4:65536", "port must be 1-65535"),
        ("host:https", "port must be 1-65535"),
        ("[2001:db8::1]:443", "IPv6"),
        ("2001:db8::1", "IPv6"),
        ("10.0.0.0/8", "not a network"),
        ("0.0.0.0:80", "0.0.0.0"),
        ("bad_name.example", "not an IPv4 address or DNS name"),
        ("1.2.3", "not an IPv4 address or DNS name"),
        ("-lead.example", "not an IPv4 address or DNS name"),
        ("public,1.2.3.4", "cannot be part of a list"),
        (",".join(f"10.0.0.{i}" for i in range(MAX_ENTRIES + 1)), f"at most {MAX_ENTRIES}"),
    ],
)
def test_bad_policies_are_one_line(text: str, says: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_egress(text)
    assert says in err.value.line() and "\n" not in err.value.line()


def test_fleet_up_refuses_a_bad_list_before_contacting_anything(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_HOSTS", "x=tcp://192.0.2.1:1")  # would hang if contacted
    r = cli(capsys, "up", "egress-bad", "--egress", "api.example.com:99999")
    assert r.code == 2
    assert "port must be 1-65535" in one_line_error(r)


# -- rules


def _allowed(policy: str, lookup: dict[str, list[str]] | None = None):  # type: ignore[no-untyped-def]
    table = lookup or {}
    return resolve(
        parse_egress(policy),
        [("172.18.0.1", 9000), ("db.internal", 5432)],
        ["10.255.255.53"],
        lambda name: table.get(name, []),
    )


def _text(rules: list[list[str]]) -> list[str]:
    return [" ".join(r) for r in rules]


def test_every_chain_starts_with_the_sentinel_then_the_tenants_own_endpoints() -> None:
    lookup = {"db.internal": ["10.9.9.9"]}
    for policy in ("public", "none", "203.0.113.7:443"):
        rules = _text(chain_rules(parse_egress(policy), _allowed(policy, lookup), None))
        ip, port = EGRESS_SENTINEL
        assert rules[0] == f"-d {ip}/32 -p tcp --dport {port} -j REJECT --reject-with tcp-reset"
        assert {rules[1], rules[2]} == {
            "-p tcp -m conntrack --ctorigdst 172.18.0.1/32 --ctorigdstport 9000 -j RETURN",
            "-p tcp -m conntrack --ctorigdst 10.9.9.9/32 --ctorigdstport 5432 -j RETURN",
        }


def test_public_denies_private_ranges_the_host_and_published_ports() -> None:
    rules = _text(chain_rules(parse_egress("public"), _allowed("public"), "172.18.0.0/16"))
    assert any("10.255.255.53/32 --ctorigdstport 53" in r for r in rules)  # DNS
    deny = " ".join(DENY)
    for cidr in (*NOT_PUBLIC, "172.18.0.0/16"):
        assert f"-d {cidr} {deny}" in rules
    assert f"-m addrtype --dst-type LOCAL {deny}" in rules
    assert f"-m conntrack --ctstate DNAT {deny}" in rules
    assert "169.254.0.0/16" in NOT_PUBLIC and "100.64.0.0/10" in NOT_PUBLIC
    assert rules[-1] == "-j RETURN"  # the rest: Docker's own rules decide


def test_none_denies_everything_but_its_own_endpoints_even_dns() -> None:
    rules = _text(chain_rules(parse_egress("none"), _allowed("none"), None))
    assert not any("--ctorigdstport 53" in r for r in rules)
    assert rules[-1] == " ".join(DENY)
    assert sum("RETURN" in r for r in rules) == 1  # the store; db.internal did not resolve


def test_a_list_allows_exactly_its_entries() -> None:
    policy = "api.example.com:443,203.0.113.7"
    allowed = _allowed(policy, {"api.example.com": ["198.51.100.2", "198.51.100.1"]})
    rules = _text(chain_rules(parse_egress(policy), allowed, None))
    for ip in ("198.51.100.1", "198.51.100.2"):
        for proto in ("tcp", "udp"):
            assert (
                f"-p {proto} -m conntrack --ctorigdst {ip}/32 --ctorigdstport 443 -j RETURN"
                in rules
            )
    assert "-m conntrack --ctorigdst 203.0.113.7/32 -j RETURN" in rules  # any port
    assert any("--ctorigdstport 53" in r for r in rules)  # it names a host
    assert rules[-1] == " ".join(DENY)
    assert allowed.unresolved == ("db.internal",)


def test_restore_text_only_declares_the_tenants_chain() -> None:
    source = Source(mac=random_mac())
    text = restore_text(source.chain, chain_rules(parse_egress("none"), _allowed("none"), None))
    declared = [ln for ln in text.splitlines() if ln.startswith(":")]
    assert declared == [f":{source.chain} - [0:0]"]  # refilled; nothing shared is flushed
    assert text.startswith("*filter\n") and text.endswith("COMMIT\n")
    assert len(source.chain) <= 28
    rule = dispatch_rule(source, "litefleet:x")
    assert rule[:4] == ["-m", "mac", "--mac-source", source.mac] and rule[-1] == source.chain


def test_macs_are_locally_administered_unicast_and_distinct() -> None:
    macs = {random_mac() for _ in range(200)}
    assert len(macs) == 200
    assert all(int(m[:2], 16) & 0x03 == 0x02 for m in macs)


def test_tenant_endpoints_from_the_container_environment() -> None:
    env = {
        "LITEFLEET_S3_ENDPOINT": "http://172.18.0.1:9000",
        "AGENT_RUNTIME_DB": "postgresql://lf@172.18.0.1/agents",
    }
    assert tenant_endpoints(env) == ("172.18.0.1:9000", "172.18.0.1:5432")
    assert tenant_endpoints({"LITEFLEET_S3_ENDPOINT": "https://s3.example.com"}) == (
        "s3.example.com:443",
    )


def test_records_round_trip_and_refuse_what_rules_cannot_express() -> None:
    record = Record("litefleet-a", "a", "public", ("172.18.0.1:9000",), mac=random_mac())
    assert Record.from_json(record.to_json()) == record
    with pytest.raises(InvalidArgument):
        Record.from_json(record.to_json().replace('"public"', '"1.2.3.4:x"'))
    with pytest.raises(ValueError):
        Record.from_json(record.to_json().replace("litefleet-a", "a; rm -rf /"))


def test_resolvers_skip_loopback_and_ipv6(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "# generated\nnameserver 10.255.255.53\nnameserver 127.0.0.53\n"
        "nameserver fd00::1\nsearch example\nnameserver 192.0.2.53\n"
    )
    assert resolvers(str(conf)) == ["10.255.255.53", "192.0.2.53"]


# -- the supervisor's wait


def test_the_supervisor_waits_for_its_rules_only_when_it_has_a_policy() -> None:
    said: list[str] = []
    answers = iter([False, False, True])
    waited = supervisor_egress.wait_until_enforced(
        {ENV_EGRESS: "none"}, said.append, probe=lambda: next(answers), pause=0.01
    )
    assert waited > 0 and len(said) == 1 and "not in place" in said[0]

    def never() -> bool:
        raise AssertionError("probed without a policy")

    assert supervisor_egress.wait_until_enforced({}, said.append, probe=never) == 0.0


def test_without_rules_the_sentinel_does_not_answer_here() -> None:
    """From this host (no tenant chain matches it) the sentinel gives no reset."""
    assert not supervisor_egress.enforced(timeout=0.5)


def test_the_kubernetes_manifest_carries_the_tenants_policy() -> None:
    from fleet.ops.k8s_manifest import _egress_entries

    assert _egress_entries("none") == "none"
    assert _egress_entries("api.example.com:443,203.0.113.7") == [
        "api.example.com:443",
        "203.0.113.7",
    ]
