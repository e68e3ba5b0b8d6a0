"""The tenant container's stages, each ending in ``exec``: what images/tenant/entrypoint.sh
runs (``python3 -I -m fleet.supervisor``; -I: never import from the working directory, /data,
or PYTHON* variables).

- ``start``: first waits until the host enforces the tenant's egress policy (egress.py: a
  tenant the fleet gave a policy runs nothing without its rules). PostgreSQL tenants exec the
  runtime alone. SQLite tenants: check the settings,
  write the runtime's environment to APP_ENV_FILE, then exec the keeper (``keep``, in a
  trimmed environment), which takes the lease and forks the child that runs ``replicate``.
- ``replicate`` (the keeper's child, under the lease): restore if empty or behind the replica
  (volume.py), then exec ``litestream replicate -exec "... serve-app"``: Litestream ships
  every commit, forwards SIGTERM to the runtime (which drains and exits 0) and does a final
  sync before exiting.
- ``serve-app`` (started by Litestream inside its trimmed environment): exec the runtime with
  the environment ``start`` saved.
"""

from __future__ import annotations

import json
import os
import sys

from .environments import (
    keeper_env,
    litestream_env,
    problem,
    runtime_env,
    serve_command,
    uses_postgres,
    with_defaults,
    with_key_file,
)
from .layout import APP_ENV_FILE, DB_PATH, ENV_DB, ENV_TENANT
from .litestream import replicate_command

EXIT_USAGE = 64


def log(msg: str) -> None:
    sys.stderr.write(f"litefleet-entrypoint: {msg}\n")
    sys.stderr.flush()


def _self(*args: str) -> list[str]:
    return [sys.executable, "-I", "-m", "fleet.supervisor", *args]


def start(environ: dict[str, str]) -> int:
    from .egress import wait_until_enforced

    wait_until_enforced(environ, log)
    if uses_postgres(environ):
        env = runtime_env(environ)
        os.execvpe("agent-runtime", serve_command(env, environ[ENV_DB]), env)
    try:
        environ = with_key_file(environ)
    except OSError as exc:
        log(f"cannot read the S3 key file: {exc.strerror}")
        return EXIT_USAGE
    why = problem(environ)
    if why is not None:
        log(why)
        return EXIT_USAGE
    env = with_defaults(environ)
    save_app_env(runtime_env(env))
    os.execve(sys.executable, _self("keep"), keeper_env(env))
    return 0  # not reached


def replicate(environ: dict[str, str]) -> int:
    from .volume import RestoreFailed, prepare

    env = litestream_env(environ)
    try:
        prepare(env, environ[ENV_TENANT], log)
    except RestoreFailed as exc:
        log(str(exc))
        return EXIT_USAGE
    argv = replicate_command(_self("serve-app"))
    os.execvpe(argv[0], argv, env)
    return 0  # not reached


def serve_app() -> int:
    env = load_app_env()
    os.execvpe("agent-runtime", serve_command(env, DB_PATH), env)
    return 0  # not reached


def save_app_env(env: dict[str, str]) -> None:
    """Readable by this uid only (umask 077 in the old shell entrypoint)."""
    fd = os.open(APP_ENV_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(env, f)


def load_app_env() -> dict[str, str]:
    with open(APP_ENV_FILE) as f:
        env: dict[str, str] = json.load(f)
    return env
