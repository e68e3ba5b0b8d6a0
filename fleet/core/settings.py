"""Fleet settings: FLEET_* environment variables over an optional TOML file over defaults.

Every field is documented in configs/fleet.example.toml. The file is ``--config PATH``,
else ``$FLEET_CONFIG``, else ``~/.config/litefleet/fleet.toml`` when it exists.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import ConfigError
from .names import DEFAULT_BUCKET, DEFAULT_REGION, STORE_CONTAINER, image_ref

DEFAULT_CONFIG = Path("~/.config/litefleet/fleet.toml")


class FleetSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLEET_", extra="forbid")

    s3_endpoint: str | None = Field(
        None, description="S3 endpoint URL seen from this host; unset = embedded store"
    )
    s3_tenant_endpoint: str | None = Field(
        None, description="S3 endpoint as tenant containers reach it (default: s3_endpoint)"
    )
    s3_bucket: str = DEFAULT_BUCKET
    s3_region: str = DEFAULT_REGION
    s3_access_key_id: str = "litefleet"
    s3_secret_access_key: SecretStr = SecretStr("litefleet")
    s3_port: int = Field(9000, description="host port of the embedded store (127.0.0.1)")
    s3_container: str = Field(STORE_CONTAINER, description="container of the embedded store")
    s3_credentials: Literal["shared", "iam"] | None = Field(
        None,
        description="iam: a key per tenant; shared: the fleet's key; unset: iam where the "
        "store's IAM API answers",
    )
    s3_iam_endpoint: str | None = Field(
        None, description="IAM endpoint (default: AWS IAM for AWS, else s3_endpoint)"
    )
    pg_admin_url: SecretStr | None = Field(
        None, description="postgresql:// DSN with CREATEROLE and CREATEDB for `up --postgres`"
    )
    image: str = Field(default_factory=lambda: image_ref("tenant"))
    hosts: str = Field("", description="name=docker-url,...; empty = one host 'local'")
    registry: str | None = Field(
        None, description="registry hosts pull the tenant image from; unset = copy it over"
    )
    backend: str = Field(
        "engines", description="engines (FLEET_HOSTS) or swarm (a Docker Swarm's services)"
    )
    swarm_manager: str | None = Field(
        None, description="Docker URL of a Swarm manager; unset = the local engine"
    )
    swarm_ports: str = Field(
        "30000-32767", description="ports Swarm tenants publish their API on (host mode)"
    )
    stop_timeout: int = Field(60, description="seconds `down` waits for the final sync")
    health_timeout: float = Field(60.0, description="seconds `up` waits for /healthz")
    log_level: str = "warning"

    @field_validator("backend")
    @classmethod
    def _backend(cls, v: str) -> str:
        if v not in {"engines", "swarm"}:
            raise ValueError("engines or swarm")
        return v

    @field_validator("swarm_ports")
    @classmethod
    def _ports(cls, v: str) -> str:
        lo, sep, hi = v.partition("-")
        if not (sep and lo.isdigit() and hi.isdigit() and 1024 <= int(lo) <= int(hi) < 65536):
            raise ValueError("a range LOW-HIGH of ports 1024-65535")
        return v

    @property
    def swarm_port_range(self) -> tuple[int, int]:
        lo, _, hi = self.swarm_ports.partition("-")
        return int(lo), int(hi)

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        if v.lower() not in {"debug", "info", "warning", "error"}:
            raise ValueError("one of debug, info, warning, error")
        return v.lower()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init kwargs carry the config file's values: the environment overrides them.
        return (env_settings, init_settings)

    @property
    def embedded_s3(self) -> bool:
        return not self.s3_endpoint


def config_path(explicit: Path | None = None) -> Path | None:
    if explicit is not None:
        return explicit
    env = os.environ.get("FLEET_CONFIG")
    if env:
        return Path(env)
    default = DEFAULT_CONFIG.expanduser()
    return default if default.is_file() else None


def load_settings(config: Path | None = None) -> FleetSettings:
    """Settings from the environment and the config file; ConfigError when unusable."""
    path = config_path(config)
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        return FleetSettings(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "?"
        where = f" in {path}" if path and field in values else ""
        raise ConfigError(f"setting {field}{where}: {err['msg']}") from None
