"""The tenant container's stages (``python3 -I -m fleet.supervisor STAGE``; images/tenant/
entrypoint.sh runs ``start``). The process tree and who runs as whom: see __init__.py.

- ``start`` (PID 1, root with CAP_SETUID/SETGID/SETPCAP only): check the settings, then
  - SQLite tenant: fork the runner (images/tenant/runner.sh), which drops to AGENT_UID and
    waits on a pipe (fd 3) to become the runtime; then drop to SUPERVISOR_UID and become the
    keeper (``keep``), still PID 1, with the pipe's other end;
  - PostgreSQL tenant: drop to AGENT_UID and become ``run-app`` (runner.py, PID 1), which
    starts the runtime at once.
  Both drops go through ``setpriv`` (identity.py): no capability survives them.
- ``keep`` (PID 1, SUPERVISOR_UID): first waits until the host enforces the tenant's egress
  policy (egress.py: a tenant the fleet gave a policy runs nothing without its rules; the
  runner waits on its pipe meanwhile), then keeper.py, with Litestream and the runner as
  children. ``run-app`` waits the same way before it starts the runtime.
- ``replicate`` (the keeper's child, SUPERVISOR_UID, under the lease): restore the database or
  set a stale one aside (volume.py), set the volume's permissions (permissions.py), say READY,
  then ``exec litestream replicate`` (no ``-exec``: the runtime is not Litestream's child).
- ``run-app`` (AGENT_UID, PID 1 of a PostgreSQL tenant): runner.py.
- ``hold [--run-dir DIR] -- CMD...``: the keeper around any command (tests, no container).

Settings that cannot work stop the container for good (exit 0, see exits.py) with one line.
"""

from __future__ import annotations

import os
import sys

from . import exits
from .environments import (
    keeper_env,
    litestream_env,
    only,
    problem,
    runtime_env,
    sqlite_serve_command,
    uses_postgres,
    with_defaults,
    with_key_file,
)
from .identity import as_agent, as_supervisor, cannot_switch
from .layout import (
    CONTROL_FD,
    DB_PATH,
    ENV_CONTROL_FD,
    ENV_EGRESS,
    ENV_READY_FD,
    ENV_RUNNER_PID,
    ENV_TENANT,
    RUNNER,
)

EXIT_USAGE = 64


def log(msg: str) -> None:
    sys.stderr.write(f"litefleet-supervisor: {msg}\n")
    sys.stderr.flush()


def self_command(*args: str) -> list[str]:
    return [sys.executable, "-I", "-m", "fleet.supervisor", *args]


def stopped(why: str) -> int:
    log(f"{exits.STOPPED_PREFIX}{why}")
    return exits.DOWN


def start(environ: dict[str, str]) -> int:
    with open("/proc/self/status") as f:
        why = cannot_switch(os.geteuid(), f.read())
    if why is not None:
        return stopped(why)
    if uses_postgres(environ):
        argv = as_agent(self_command("run-app"))
        os.execve(argv[0], argv, {**runtime_env(environ), **only(environ, (ENV_EGRESS,))})
    why = problem(environ)
    if why is not None:
        return stopped(why)
    env = with_defaults(environ)
    r, w = os.pipe()
    runner = os.fork()
    if runner == 0:  # pragma: no cover - child
        try:
            os.close(w)
            if r == CONTROL_FD:
                os.set_inheritable(r, True)
            else:
                os.dup2(r, CONTROL_FD)  # inheritable
            app_env = runtime_env(env)
            argv = as_agent([RUNNER, *sqlite_serve_command(app_env, DB_PATH)])
            os.execve(argv[0], argv, app_env)
        finally:
            os._exit(127)
    os.close(r)
    os.set_inheritable(w, True)
    argv = as_supervisor(self_command("keep"))
    extra = {ENV_RUNNER_PID: str(runner), ENV_CONTROL_FD: str(w)}
    os.execve(argv[0], argv, {**keeper_env(env), **extra})
    return 0  # not reached


def replicate(environ: dict[str, str]) -> int:
    """The keeper's child: prepare the volume, say READY, become Litestream."""
    from .children import READY, which
    from .litestream import replicate_command
    from .permissions import VolumeNotOurs, prepare_volume
    from .volume import RestoreFailed, prepare

    env = {k: v for k, v in environ.items() if k != ENV_READY_FD}
    try:
        prepare(env, environ[ENV_TENANT], log)
        prepare_volume()
    except (RestoreFailed, VolumeNotOurs, OSError) as exc:
        log(f"cannot prepare the database: {exc}")
        return 1
    ready = int(environ[ENV_READY_FD])
    os.write(ready, READY)
    os.close(ready)
    argv = replicate_command()
    os.execve(which(argv[0], env), argv, env)
    return 0  # not reached


def keep(environ: dict[str, str]) -> int:
    """The keeper of a tenant container (PID 1 after ``start``)."""
    from .children import AppLink, Replicator, which
    from .egress import wait_until_enforced
    from .keeper import from_env
    from .layout import DB_PATH, LEASE_GATE_FILE, STATE_FILE, SUPERVISOR_HOME
    from .lease_gate import GateFile
    from .litestream import replicate_command
    from .permissions import UMASK, VolumeNotOurs, prepare_record_dir, private_dir
    from .report import StateFile
    from .restarts import RestartRecord

    wait_until_enforced(environ, log)
    try:  # as the keeper's uid: the key's file is this uid's alone (a Swarm secret)
        environ = with_key_file(environ)
    except OSError as exc:
        return stopped(f"cannot read the S3 key file: {exc.strerror}")
    os.umask(UMASK)
    try:
        private_dir(SUPERVISOR_HOME)  # before any agent code runs
        record = RestartRecord(prepare_record_dir())
    except (VolumeNotOurs, OSError) as exc:
        return stopped(f"the volume cannot be prepared: {exc}")
    ls_env = litestream_env(environ)
    again = replicate_command()
    again[0] = which(again[0], ls_env)
    replicator = Replicator(self_command("replicate"), again, ls_env, ENV_READY_FD)
    app = AppLink(int(environ[ENV_RUNNER_PID]), int(environ[ENV_CONTROL_FD]))

    def set_aside() -> str:
        from .volume import set_aside

        return set_aside(DB_PATH, "taken-over")

    try:
        keeper = from_env(
            environ,
            replicator,
            app,
            gate=GateFile(LEASE_GATE_FILE),
            state=StateFile(STATE_FILE),
            record=record,
            set_aside=set_aside,
        )
    except KeyError as exc:
        return stopped(f"{exc.args[0]} is not set")
    return keeper.run()


def hold(argv: list[str]) -> int:
    """``hold [--run-dir DIR] -- CMD...``: the keeper with CMD as its replicator."""
    from .children import Replicator, which
    from .keeper import from_env
    from .lease_gate import GateFile
    from .report import StateFile

    run_dir = None
    if argv[:1] == ["--run-dir"] and len(argv) > 1:
        run_dir, argv = argv[1], argv[2:]
    if len(argv) < 2 or argv[0] != "--":
        log("usage: python3 -I -m fleet.supervisor hold [--run-dir DIR] -- CMD [ARGS...]")
        return EXIT_USAGE
    env = dict(os.environ)
    command = [which(argv[1], env), *argv[2:]]
    gate = GateFile(os.path.join(run_dir, "lease.json") if run_dir else None)
    state = StateFile(os.path.join(run_dir, "state.json") if run_dir else None)
    try:
        keeper = from_env(env, Replicator(command, command, env, None), gate=gate, state=state)
    except KeyError as exc:
        log(f"{exc.args[0]} is not set")
        return EXIT_USAGE
    return keeper.run()
