"""`fleet up | ls | down | rm | teardown | gc | logs`: a tenant's lifecycle."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from fleet.core import names

from .base import (
    AppOption,
    BulkProgress,
    Count,
    Cpus,
    DbUrl,
    Egress,
    EnvVars,
    ForceTakeover,
    Json,
    Labels,
    Memory,
    Prefix,
    Purge,
    TemplateRef,
    Tenant,
    Tenants,
    Yes,
    app,
    confirm,
    fleet_of,
    image_progress,
    labels,
)

Image = Annotated[str | None, typer.Option(help="Tenant image (default: FLEET_IMAGE).")]
Ttl = Annotated[
    str | None, typer.Option(help="Lifetime, e.g. 30m, 2h, 1d; `fleet gc` removes it after.")
]
IdlePark = Annotated[
    str | None,
    typer.Option(
        "--idle-park",
        help="Park it once it has had no API request for this long (e.g. 10m) and no run"
        " is executing; `fleet gateway` does it, and wakes it on the next request.",
        metavar="DURATION",
    ),
]
Host = Annotated[
    str | None,
    typer.Option(help="Host from FLEET_HOSTS (default: the one with the most free memory)."),
]
DbUrlFile = Annotated[
    Path | None,
    typer.Option(
        "--db-url-file",
        help="Read the --db-url DSN from the first line of this file.",
        metavar="FILE",
        dir_okay=False,
    ),
]
Postgres = Annotated[
    bool,
    typer.Option(
        "--postgres",
        help="Run on PostgreSQL with a role and database of its own, lf_TENANT, made on"
        " FLEET_PG_ADMIN_URL's server (`fleet rm --purge` drops them).",
    ),
]


@app.command()
def up(
    ctx: typer.Context,
    tenant: Tenants = None,
    count: Count = None,
    prefix: Prefix = None,
    app_module: AppOption = None,
    template: TemplateRef = None,
    image: Image = None,
    label: Labels = None,
    ttl: Ttl = None,
    idle_park: IdlePark = None,
    memory: Memory = names.DEFAULT_MEMORY,
    cpus: Cpus = names.DEFAULT_CPUS,
    env: EnvVars = None,
    host: Host = None,
    force_takeover: ForceTakeover = False,
    egress: Egress = None,
    db_url: DbUrl = None,
    db_url_file: DbUrlFile = None,
    postgres: Postgres = False,
) -> None:
    """Create and start tenants (or start, or wake, them again); waits until they are healthy."""
    from fleet.core.names import parse_env
    from fleet.ops import bulk, tenants

    from . import output

    if db_url_file is not None:
        db_url = read_db_url(db_url_file, db_url)

    todo = bulk.tenant_names(tenant or [], count, prefix)
    options = tenants.TenantOptions(
        app=app_module,
        image=image,
        template=template,
        labels=labels(label),
        ttl=ttl,
        memory=memory,
        cpus=cpus,
        env=parse_env(env),
        db_url=db_url,
        postgres=postgres,
        idle_park=idle_park,
        egress=egress,
    )
    with BulkProgress("starting", len(todo)) as progress:
        done = bulk.up_many(
            fleet_of(ctx),
            todo,
            options,
            host=host,
            force_takeover=force_takeover,
            progress=image_progress(),
            reporter=progress,
        )
    output.bulk(done, output.up)


def read_db_url(path: Path, given: str | None) -> str:
    """The DSN in the first non-empty line of ``path`` (so no password is on a command
    line); InvalidArgument when unreadable, empty or given twice."""
    from fleet.core.errors import InvalidArgument

    if given is not None:
        raise InvalidArgument("give --db-url or --db-url-file, not both")
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"cannot read --db-url-file {path}: {type(exc).__name__}") from None
    if not lines:
        raise InvalidArgument(f"--db-url-file {path} is empty")
    return lines[0]


@app.command("ls")
def ls(ctx: typer.Context, label: Labels = None, json: Json = False) -> None:
    """List tenants: state, health, age, TTL, database size, replication, labels."""
    import time

    from fleet.ops import status

    from . import output

    rows = status.ls(fleet_of(ctx), labels(label))
    if json:
        now = time.time()
        output.print_json([r.as_dict(now) for r in rows])
    else:
        output.tenants(rows)


@app.command()
def down(ctx: typer.Context, tenant: Tenant) -> None:
    """Stop a tenant after Litestream's final sync; the volume and the backup stay."""
    from fleet.ops import tenants

    from . import output

    t, was_running = tenants.down(fleet_of(ctx), tenant)
    output.out.print(f"tenant {t.name} " + ("stopped" if was_running else f"already {t.state}"))


@app.command()
def rm(ctx: typer.Context, tenant: Tenant, purge: Purge = False, yes: Yes = False) -> None:
    """Remove a tenant's container and volume (with --purge also its backup)."""
    from fleet.core.names import backup_prefix, check_tenant
    from fleet.ops import removal

    from . import output

    check_tenant(tenant)
    if purge and not yes:
        confirm(f"Delete tenant {tenant} AND its backup ({backup_prefix(tenant)})?")
    output.removed(removal.rm(fleet_of(ctx), tenant, purge=purge))


@app.command()
def teardown(
    ctx: typer.Context,
    label: Labels = None,
    all_: Annotated[bool, typer.Option("--all", help="Every tenant.")] = False,
    purge: Purge = False,
    yes: Yes = False,
) -> None:
    """Remove every tenant matching --label (or --all), in parallel."""
    from fleet.ops import removal

    from . import output

    with RemovalProgress(purge and not yes) as progress:
        done = removal.teardown(
            fleet_of(ctx), labels=labels(label), all=all_, purge=purge, reporter=progress
        )
    output.removal(done)


@app.command()
def gc(
    ctx: typer.Context,
    label: Labels = None,
    purge: Purge = False,
    yes: Yes = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list them.")] = False,
) -> None:
    """Remove the tenants whose --ttl has passed (with --label: only those carrying it)."""
    from fleet.ops import removal, tenants

    from . import output

    if dry_run:
        gone = tenants.expired(fleet_of(ctx), labels=labels(label))
        output.out.print("\n".join(gone) if gone else "no expired tenants")
        return
    with RemovalProgress(purge and not yes) as progress:
        done = removal.gc(fleet_of(ctx), labels=labels(label), purge=purge, reporter=progress)
    output.removal(done)


class RemovalProgress:
    """Confirmation prompt and progress bar (on stderr) for bulk removal."""

    def __init__(self, ask: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        from .output import err

        self.ask = ask
        self.bar = Progress(
            TextColumn("removing"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            transient=True,
        )
        self.task: Any = None

    def __enter__(self) -> RemovalProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def confirm(self, tenants: list[str]) -> None:
        if self.ask:
            confirm(f"Delete {len(tenants)} tenant(s) AND their backups: {', '.join(tenants)}?")

    def start(self, total: int) -> None:
        self.task = self.bar.add_task("removing", total=total)
        self.bar.start()

    def done(self, result: object) -> None:
        self.bar.advance(self.task)


@app.command()
def logs(
    ctx: typer.Context,
    tenant: Tenant,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    tail: Annotated[int | None, typer.Option(help="Only the last N lines.")] = None,
) -> None:
    """Print a tenant's container logs (runtime and Litestream)."""
    from fleet.ops import tenants

    try:
        for chunk in tenants.logs(fleet_of(ctx), tenant, follow=follow, tail=tail):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
    except KeyboardInterrupt:
        pass
