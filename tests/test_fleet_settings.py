"""Settings precedence, validation and secrecy; FLEET_HOSTS parsing (no Docker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.core.errors import ConfigError, InvalidArgument
from fleet.core.settings import FleetSettings, load_settings
from fleet.engine.hosts import parse_hosts, pick


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("FLEET_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.config/litefleet/fleet.toml


def test_defaults() -> None:
    s = load_settings()
    assert s.embedded_s3
    assert s.s3_bucket == "litefleet"
    assert s.image.startswith("litefleet/tenant:")
    assert s.hosts == ""


def test_env_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "fleet.toml"
    cfg.write_text('s3_bucket = "from-file"\ns3_region = "eu-west-1"\nstop_timeout = 5\n')
    monkeypatch.setenv("FLEET_S3_BUCKET", "from-env")
    s = load_settings(cfg)
    assert (s.s3_bucket, s.s3_region, s.stop_timeout) == ("from-env", "eu-west-1", 5)


def test_config_from_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "f.toml"
    cfg.write_text('s3_endpoint = "http://127.0.0.1:1"\n')
    monkeypatch.setenv("FLEET_CONFIG", str(cfg))
    s = load_settings()
    assert s.s3_endpoint == "http://127.0.0.1:1"
    assert not s.embedded_s3


def test_unknown_key_and_bad_value_are_config_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "f.toml"
    cfg.write_text("bogus = 1\n")
    with pytest.raises(ConfigError, match="bogus"):
        load_settings(cfg)
    cfg.write_text('s3_port = "many"\n')
    with pytest.raises(ConfigError, match="s3_port"):
        load_settings(cfg)
    cfg.write_text("not toml [\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(cfg)
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml")


def test_secret_never_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_S3_SECRET_ACCESS_KEY", "hunter2-very-secret")
    s = FleetSettings()
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())
    assert s.s3_secret_access_key.get_secret_value() == "hunter2-very-secret"


def test_every_setting_is_documented() -> None:
    doc = (Path(__file__).parents[1] / "configs" / "fleet.example.toml").read_text()
    for name in FleetSettings.model_fields:
        assert f"FLEET_{name.upper()}" in doc, name
        assert f"{name} =" in doc, name


def test_hosts() -> None:
    assert [h.name for h in parse_hosts("")] == ["local"]
    hosts = parse_hosts("a=unix:///a.sock, b=tcp://127.0.0.1:2375")
    assert [(h.name, h.url) for h in hosts] == [
        ("a", "unix:///a.sock"),
        ("b", "tcp://127.0.0.1:2375"),
    ]
    assert pick(hosts, None).name == "a" and pick(hosts, "b").name == "b"
    with pytest.raises(InvalidArgument):
        pick(hosts, "c")
    for bad in ["a", "a=", "A=x", "a=x,a=y"]:
        with pytest.raises(ConfigError):
            parse_hosts(bad)
