"""Would a tenant's recorded runs still resume on a template's code? `fleet deploy`'s check.

It runs ``agent-runtime replay --json`` inside the new image, in a sandbox on the tenant's
host (fleet/engine/sandbox.py: no network, no secrets, the tenant's limits), never against
the live database:

- SQLite: a copy restored from the tenant's backup in object storage on this machine (as
  `fleet pull` does: consistent, whatever the tenant is doing), put into the sandbox's empty
  /data. The copy is as recent as the last replication (about a second); `deploy` checks
  again after the final sync when the backup moved on meanwhile.
- PostgreSQL: the tenant's own DSN and password, on the tenants' network, in read-only
  transactions (the reader's snapshot, and ``default_transaction_read_only`` for the whole
  session). The new code is imported with the tenant's credentials, as it will be once
  deployed; no step runs.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet.core import names
from fleet.core.context import Fleet
from fleet.core.errors import FleetError, InvalidArgument
from fleet.core.hosting import Sandbox, Tenant
from fleet.core.templates import Template
from fleet.storage.backups import backup_state
from fleet.storage.litestream import restore_copy

REPLAY_TIMEOUT_S = 300.0
_COPY = "tenant.db"


@dataclass(frozen=True)
class Replayed:
    """One run as `agent-runtime replay --json` reports it."""

    run: str
    workflow: str
    ok: bool
    position: int | None = None
    recorded: str | None = None
    called: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class TenantCheck:
    tenant: Tenant
    template: Template
    runs: list[Replayed] = field(default_factory=list)  # every unfinished run, replayed
    txid: int | None = None  # SQLite: the backup's txid the copy has at least

    @property
    def failing(self) -> list[Replayed]:
        return [r for r in self.runs if not r.ok]


def check(fleet: Fleet, t: Tenant, template: Template) -> TenantCheck:
    """Replay the tenant's unfinished runs against ``template`` (already on ``t.host``)."""
    if t.backend == names.BACKEND_POSTGRES:
        return _check_postgres(fleet, t, template)
    s3 = fleet.storage.for_fleet(start=True)
    txid = backup_state(s3, t.name).txid  # read first: the copy has at least this
    if txid == 0:  # nothing replicated yet: no recorded run to break
        return TenantCheck(t, template, [], 0)
    with tempfile.TemporaryDirectory(prefix="fleet-deploy-") as tmp:
        copy = Path(tmp) / _COPY
        restore_copy(s3, t.name, copy)
        job = Sandbox(
            image=template.ref,
            argv=_replay_argv(f"{names.DATA_DIR}/{_COPY}", template),
            files={_COPY: copy},
            timeout=REPLAY_TIMEOUT_S,
        )
        ran = fleet.hosting.run_sandboxed(t.host, job)
    return TenantCheck(t, template, _parse(t, ran.exit_code, ran.stdout, ran.stderr), txid)


def _check_postgres(fleet: Fleet, t: Tenant, template: Template) -> TenantCheck:
    spec = fleet.hosting.spec_of(t)
    if spec.db_url is None:
        raise FleetError(f"tenant {t.name!r}: its PostgreSQL DSN is not on its container")
    env = {"PGOPTIONS": "-c default_transaction_read_only=on"}
    if spec.db_password is not None:
        env[names.ENV_PGPASSWORD] = spec.db_password
    job = Sandbox(
        image=template.ref,
        argv=_replay_argv(spec.db_url, template),
        environment=env,
        network=True,
        timeout=REPLAY_TIMEOUT_S,
    )
    ran = fleet.hosting.run_sandboxed(t.host, job)
    return TenantCheck(t, template, _parse(t, ran.exit_code, ran.stdout, ran.stderr))


def _replay_argv(db: str, template: Template) -> list[str]:
    return ["agent-runtime", "replay", "--db", db, "--app", template.app_path, "--json"]


def _parse(t: Tenant, exit_code: int, stdout: str, stderr: str) -> list[Replayed]:
    """The replay's report; exit 0 (all replay) and 9 (some do not) carry one."""
    if exit_code not in (0, 9):
        lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
        last = (lines or [f"exit status {exit_code}"])[-1]
        error = InvalidArgument if exit_code == 2 else FleetError
        raise error(
            f"the replay check of tenant {t.name!r} failed: "
            f"{last.removeprefix('agent-runtime: error: ')}"
        )
    try:
        rows: list[dict[str, Any]] = json.loads(stdout)
        return [_replayed(row) for row in rows]
    except (ValueError, TypeError, KeyError):
        raise FleetError(
            f"the replay check of tenant {t.name!r} printed no report",
            "the new code may write to stdout while it is imported",
        ) from None


def _replayed(row: dict[str, Any]) -> Replayed:
    def text(key: str) -> str | None:
        value = row.get(key)
        return None if value is None else str(value)

    position = row.get("position")
    return Replayed(
        run=str(row["run"]),
        workflow=str(row["workflow"]),
        ok=row["ok"] is True,
        position=position if isinstance(position, int) else None,
        recorded=text("recorded"),
        called=text("called"),
        error=text("error"),
    )
