"""Tenant names, labels, env pairs and durations (no Docker)."""

from __future__ import annotations

import pytest

from fleet.core.durations import format_duration, parse_duration
from fleet.core.errors import InvalidArgument
from fleet.core.names import (
    check_tenant,
    container_name,
    engine_labels,
    parse_env,
    parse_labels,
    user_labels,
    volume_name,
)


@pytest.mark.parametrize("name", ["a", "acme", "acme-42", "0", "a" * 63, "a-b-c"])
def test_valid_tenant_names(name: str) -> None:
    assert check_tenant(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "-a", "a-", "A", "acme_1", "a.b", "a/b", "a" * 64, "ümlaut", "a b", "../x", "a\n"],
)
def test_invalid_tenant_names(name: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        check_tenant(name)
    assert info.value.exit_code == 2
    assert "\n" not in info.value.line()


def test_engine_object_names() -> None:
    assert container_name("acme") == "litefleet-acme"
    assert volume_name("acme") == "litefleet-acme-data"


def test_labels_round_trip_through_their_namespace() -> None:
    labels = parse_labels(["team=ml", "env=", "x.y-z=1=2"])
    assert labels == {"team": "ml", "env": "", "x.y-z": "1=2"}
    stored = engine_labels(labels)
    assert all(k.startswith("litefleet.label.") for k in stored)
    assert user_labels({**stored, "litefleet.tenant": "t", "other": "o"}) == labels


@pytest.mark.parametrize("bad", ["team", "=v", "a b=c", "-x=1"])
def test_bad_labels(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_labels([bad])


def test_env_pairs() -> None:
    assert parse_env(["A=1", "B_2=x=y", "C="]) == {"A": "1", "B_2": "x=y", "C": ""}
    for bad in ["1A=x", "A", "A-B=1"]:
        with pytest.raises(InvalidArgument):
            parse_env([bad])


@pytest.mark.parametrize(
    "name",
    ["LD_PRELOAD", "LD_LIBRARY_PATH", "BASH_ENV", "ENV", "PYTHONPATH", "PYTHONSTARTUP", "PATH",
     "HOME", "PGHOST", "PGPASSWORD", "LITESTREAM_ACCESS_KEY_ID", "AWS_CA_BUNDLE", "TENANT",
     "AGENT_RUNTIME_TOKEN", "AGENT_RUNTIME_LEASE_FILE", "LITEFLEET_HOST"],
)  # fmt: skip
def test_reserved_env_is_refused_in_one_line(name: str) -> None:
    with pytest.raises(InvalidArgument, match=f"--env {name} is reserved"):
        parse_env([f"{name}=x"])


def test_app_env_passes() -> None:
    ok = ["AGENT_RUNTIME_LLM_BASE_URL=http://x", "OPENAI_API_KEY=k", "LITEFLEET_LEASE_TTL=30"]
    assert len(parse_env(ok)) == 3


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400), ("1h30m", 5400)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "0", "0s", "2x", "h", "1.5h", "-1m", "2h 3m", "m5"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_duration(bad)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 45, 60, 200, 3600, 7500, 86400, 90000)] == [
        "0s",
        "45s",
        "1m",
        "3m20s",
        "1h",
        "2h5m",
        "1d",
        "1d1h",
    ]
