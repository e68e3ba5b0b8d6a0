"""Which variables each process of a tenant container gets, decided from the container's own.

Litestream and the keeper get an explicit environment (only the variables named below): a
stray AWS_CA_BUNDLE or AWS_* credential must not change how they talk to S3. The runtime gets
the container's environment minus the replica credentials. That is hygiene, not isolation:
it runs as the same uid as the keeper and Litestream, whose /proc/PID/environ hold them, so
agent code can read them; they are the tenant's own key, scoped to tenants/<t>/ and
leases/<t>.json (fleet/storage/credentials.py), unless the fleet runs with shared keys.
"""

from __future__ import annotations

from .layout import (
    DEFAULT_APP,
    DEFAULT_REGION,
    ENV_APP,
    ENV_DB,
    ENV_HOST,
    ENV_LEASE_RENEW,
    ENV_LEASE_TTL,
    ENV_LEASE_WAIT,
    ENV_S3_BUCKET,
    ENV_S3_ENDPOINT,
    ENV_S3_REGION,
    ENV_S3_SECRET_ACCESS_KEY,
    ENV_S3_SECRET_ACCESS_KEY_FILE,
    ENV_TENANT,
    POSTGRES_SCHEMES,
    RUNTIME_PORT,
    S3_CREDENTIALS,
    TENANT_RULE,
    valid_tenant,
)

LITESTREAM_VARS = (
    "PATH",
    "HOME",
    ENV_TENANT,
    ENV_S3_ENDPOINT,
    ENV_S3_BUCKET,
    ENV_S3_REGION,
    *S3_CREDENTIALS,
)
KEEPER_VARS = (*LITESTREAM_VARS, ENV_HOST, ENV_LEASE_TTL, ENV_LEASE_RENEW, ENV_LEASE_WAIT)
REQUIRED = (ENV_TENANT, ENV_S3_ENDPOINT, ENV_S3_BUCKET)


def uses_postgres(env: dict[str, str]) -> bool:
    return env.get(ENV_DB, "").startswith(POSTGRES_SCHEMES)


def problem(env: dict[str, str]) -> str | None:
    """Why a SQLite tenant cannot start with ``env`` (one line), or None."""
    for var in REQUIRED:
        if not env.get(var):
            return f"{var} is not set"
    if not valid_tenant(env[ENV_TENANT]):
        return f"invalid TENANT name (want {TENANT_RULE})"
    return None


def with_key_file(env: dict[str, str]) -> dict[str, str]:
    """The S3 secret key read from the file LITESTREAM_SECRET_ACCESS_KEY_FILE names (a Swarm
    secret: the service's spec then holds no key), unless the key itself is set; the file's
    name is dropped. OSError when the file cannot be read."""
    path = env.get(ENV_S3_SECRET_ACCESS_KEY_FILE)
    rest = {k: v for k, v in env.items() if k != ENV_S3_SECRET_ACCESS_KEY_FILE}
    if not path or env.get(ENV_S3_SECRET_ACCESS_KEY):
        return rest
    with open(path) as f:
        return {**rest, ENV_S3_SECRET_ACCESS_KEY: f.read().strip()}


def with_defaults(env: dict[str, str]) -> dict[str, str]:
    return {**env, ENV_S3_REGION: env.get(ENV_S3_REGION) or DEFAULT_REGION}


def only(env: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k in names}


def keeper_env(env: dict[str, str]) -> dict[str, str]:
    return only(env, KEEPER_VARS)


def litestream_env(env: dict[str, str]) -> dict[str, str]:
    return only(env, LITESTREAM_VARS)


def runtime_env(env: dict[str, str]) -> dict[str, str]:
    """Everything the container got, minus the replica credentials."""
    return {k: v for k, v in env.items() if k not in S3_CREDENTIALS}


def serve_command(env: dict[str, str], db: str) -> list[str]:
    """The runtime, serving the tenant's app on the published port."""
    app = env.get(ENV_APP) or DEFAULT_APP
    return ["agent-runtime", "serve", "--db", db, "--app", app, "--host", "0.0.0.0", "--port",
            str(RUNTIME_PORT)]  # fmt: skip
