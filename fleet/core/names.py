"""Tenant names and how they map to engine objects (containers, volumes, labels)."""

from __future__ import annotations

import re

# The labels the container spec sets itself come from there (one source of truth).
from fleet.engine.container_spec import LABEL_PREFIX as PREFIX
from fleet.engine.container_spec import LABEL_ROLE as LABEL_ROLE
from fleet.engine.container_spec import LABEL_TENANT as LABEL_TENANT
from fleet.engine.container_spec import ROLE_TENANT as ROLE_TENANT

from .errors import InvalidArgument

# A DNS label: it ends up in container names, hostnames and S3 prefixes.
_TENANT_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")

LABEL_TTL = PREFIX + "ttl"  # as given by the user, e.g. "2h"
LABEL_EXPIRES = PREFIX + "expires-at"  # epoch seconds
LABEL_APP = PREFIX + "app"
LABEL_BACKEND = PREFIX + "backend"  # "sqlite" (Litestream) or "postgres"
USER_LABEL_PREFIX = PREFIX + "label."  # user labels live in their own namespace


def check_tenant(name: str) -> str:
    """Return ``name`` if it is a valid tenant name, else raise InvalidArgument."""
    if not _TENANT_RE.fullmatch(name):
        raise InvalidArgument(
            f"invalid tenant name {name!r}",
            "use 1-63 characters a-z, 0-9 and '-', not starting or ending with '-'",
        )
    return name


def container_name(tenant: str) -> str:
    return f"litefleet-{tenant}"


def volume_name(tenant: str) -> str:
    return f"litefleet-{tenant}-data"


def archive_prefix(tenant: str) -> str:
    """Where point-in-time restores keep the history they rewound (fleet restore --at)."""
    return f"archive/{check_tenant(tenant)}/"


def backup_prefix(tenant: str) -> str:
    """Where Litestream keeps the tenant's replica inside the bucket."""
    return f"tenants/{tenant}/"


def parse_label(text: str) -> tuple[str, str]:
    """``k=v`` -> (k, v); the key is checked, the value may be empty."""
    key, sep, value = text.partition("=")
    if not sep or not _LABEL_KEY_RE.fullmatch(key):
        raise InvalidArgument(f"invalid label {text!r}", "use key=value, key of [A-Za-z0-9._-]")
    return key, value


def parse_labels(items: list[str] | None) -> dict[str, str]:
    return dict(parse_label(item) for item in items or [])


def parse_env(items: list[str] | None) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise InvalidArgument(f"invalid environment variable {key!r}", "use --env NAME=value")
        env[key] = value
    return env


def user_labels(labels: dict[str, str]) -> dict[str, str]:
    """User labels from an engine object's labels (namespace stripped)."""
    n = len(USER_LABEL_PREFIX)
    return {k[n:]: v for k, v in labels.items() if k.startswith(USER_LABEL_PREFIX)}


def engine_labels(user: dict[str, str]) -> dict[str, str]:
    return {USER_LABEL_PREFIX + k: v for k, v in user.items()}
