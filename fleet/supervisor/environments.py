"""Which variables each process of a tenant container gets, decided from the container's own.

- The keeper and Litestream (SUPERVISOR_UID) get an explicit environment: only the variables
  named below, so a stray AWS_CA_BUNDLE, AWS_* credential or user --env cannot change how they
  talk to S3. Their HOME and TMPDIR are the keeper's own directory (layout.SUPERVISOR_HOME),
  which agent code can neither write nor fill: Litestream's S3 client reads ~/.aws/config,
  which could otherwise point it at another endpoint or run a credential_process as its uid.
- The runtime (AGENT_UID) gets the container's environment minus everything that is the
  supervisor's (the replica's credentials and settings, LITEFLEET_*, AWS_*) and minus what
  changes how programs load (LD_*, BASH_ENV, ENV); PATH and HOME are set here. So it holds:
  the app's own variables, TENANT, the API token and app, the PostgreSQL URL and password of a
  PostgreSQL tenant, and the image's PYTHON* (ignored: every Python runs with -I). Since it
  runs under a uid of its own, agent code cannot read the others' environments either.
"""

from __future__ import annotations

import sys

from .layout import (
    DEFAULT_APP,
    DEFAULT_REGION,
    ENV_APP,
    ENV_CONTROL_FD,
    ENV_DB,
    ENV_EGRESS,
    ENV_HOST,
    ENV_LEASE_RENEW,
    ENV_LEASE_TTL,
    ENV_LEASE_WAIT,
    ENV_RUNNER_PID,
    ENV_S3_BUCKET,
    ENV_S3_ENDPOINT,
    ENV_S3_REGION,
    ENV_S3_SECRET_ACCESS_KEY,
    ENV_S3_SECRET_ACCESS_KEY_FILE,
    ENV_TENANT,
    LEASE_GATE_FILE,
    POSTGRES_SCHEMES,
    RUNTIME_PORT,
    S3_CREDENTIALS,
    SUPERVISOR_HOME,
    TENANT_RULE,
    valid_tenant,
)

PATH = "/opt/litefleet/bin:/usr/local/bin:/usr/bin:/bin"
RUNTIME_HOME = "/tmp"

LITESTREAM_VARS = (
    ENV_TENANT,
    ENV_S3_ENDPOINT,
    ENV_S3_BUCKET,
    ENV_S3_REGION,
    *S3_CREDENTIALS,
)
KEEPER_VARS = (
    *LITESTREAM_VARS,
    ENV_HOST,
    ENV_LEASE_TTL,
    ENV_LEASE_RENEW,
    ENV_LEASE_WAIT,
    ENV_RUNNER_PID,
    ENV_CONTROL_FD,
    ENV_EGRESS,  # the keeper waits until the host enforces it (egress.py)
    ENV_S3_SECRET_ACCESS_KEY_FILE,  # read by the keeper (with_key_file), this uid's file
)
REQUIRED = (ENV_TENANT, ENV_S3_ENDPOINT, ENV_S3_BUCKET)
# Never passed to the runtime: the supervisor's own, and what changes how programs load.
_NOT_FOR_RUNTIME_PREFIXES = ("LITEFLEET_", "LITESTREAM_", "AWS_", "LD_")
_NOT_FOR_RUNTIME = frozenset({*S3_CREDENTIALS, "BASH_ENV", "ENV", "PATH", "HOME"})


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


def _supervisor_base() -> dict[str, str]:
    return {"PATH": PATH, "HOME": SUPERVISOR_HOME, "TMPDIR": SUPERVISOR_HOME}


def keeper_env(env: dict[str, str]) -> dict[str, str]:
    return {**_supervisor_base(), **only(env, KEEPER_VARS)}


def litestream_env(env: dict[str, str]) -> dict[str, str]:
    return {**_supervisor_base(), **only(env, LITESTREAM_VARS)}


def for_runtime(name: str) -> bool:
    if name in _NOT_FOR_RUNTIME:
        return False
    return not name.startswith(_NOT_FOR_RUNTIME_PREFIXES)


def runtime_env(env: dict[str, str]) -> dict[str, str]:
    """The runtime's environment (see the module doc)."""
    out = {k: v for k, v in env.items() if for_runtime(k)}
    out.update({"PATH": PATH, "HOME": RUNTIME_HOME})
    return out


def serve_command(env: dict[str, str], db: str, lease_file: str | None) -> list[str]:
    """The runtime, serving the tenant's app on the published port; ``-I``: nothing from the
    working directory (/data, which agent code writes) or PYTHON* variables on its path."""
    app = env.get(ENV_APP) or DEFAULT_APP
    argv = [sys.executable, "-I", "-u", "-m", "agent_runtime", "serve", "--db", db,
            "--app", app, "--host", "0.0.0.0", "--port", str(RUNTIME_PORT)]  # fmt: skip
    if lease_file is not None:
        argv += ["--lease-file", lease_file]
    return argv


def sqlite_serve_command(env: dict[str, str], db: str) -> list[str]:
    return serve_command(env, db, LEASE_GATE_FILE)
