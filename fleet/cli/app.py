"""The `fleet` command: thin wrappers that build objects from settings and call one library
function each (same names as the commands). Errors are turned into one line in main()."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from fleet.core.context import Fleet
from fleet.core.errors import Aborted, FleetError, RunUnsuccessful, translate
from fleet.core.log import configure, log
from fleet.core.settings import load_settings

from . import output as show

app = typer.Typer(
    name="fleet",
    help="Run and manage per-tenant litefleet runtimes on Docker engines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
s3_app = typer.Typer(
    help="The embedded S3 object store (used when FLEET_S3_ENDPOINT is unset).",
    no_args_is_help=True,
)
image_app = typer.Typer(help="Tenant container images.", no_args_is_help=True)
app.add_typer(s3_app, name="s3")
app.add_typer(image_app, name="image")

# -- shared options

Tenant = Annotated[
    str, typer.Argument(help="Tenant name (a DNS label: a-z, 0-9, '-').", metavar="TENANT")
]
Labels = Annotated[
    list[str] | None,
    typer.Option("--label", "-l", help="Label k=v (repeatable; all must match).", metavar="K=V"),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
ForceTakeover = Annotated[
    bool,
    typer.Option(
        "--force-takeover",
        help="Take the tenant's lease from a live holder: it stops replicating at its next"
        " renewal (within 5 s), without a final sync.",
    ),
]
Purge = Annotated[
    bool, typer.Option("--purge", help="Also delete the backup in object storage (asks first).")
]


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", envvar="FLEET_CONFIG", help="TOML settings file.", dir_okay=False),
    ] = None,
) -> None:
    """Run and manage per-tenant litefleet runtimes on Docker engines."""
    ctx.obj = config


def _fleet(ctx: typer.Context) -> Fleet:
    root = ctx.find_root()
    fleet = root.meta.get("fleet")
    if fleet is None:
        settings = load_settings(root.obj)
        configure(settings.log_level)
        fleet = Fleet.from_settings(settings)
        root.meta["fleet"] = fleet
        root.call_on_close(fleet.close)
    assert isinstance(fleet, Fleet)
    return fleet


def _labels(items: list[str] | None) -> dict[str, str]:
    from fleet.core.names import parse_labels

    return parse_labels(items)


# -- lifecycle


@app.command()
def up(
    ctx: typer.Context,
    tenant: Tenant,
    app_module: Annotated[
        str, typer.Option("--app", help="Python module (or file) registering the workflows.")
    ] = "agent_runtime.examples",
    image: Annotated[str | None, typer.Option(help="Tenant image (default: FLEET_IMAGE).")] = None,
    label: Labels = None,
    ttl: Annotated[
        str | None, typer.Option(help="Lifetime, e.g. 30m, 2h, 1d; `fleet gc` removes it after.")
    ] = None,
    memory: Annotated[str, typer.Option(help="Memory limit (docker syntax, e.g. 256m).")] = "256m",
    cpus: Annotated[float, typer.Option(help="CPU limit in cores.")] = 0.5,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", help="Extra env K=V for the runtime.", metavar="K=V"),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(help="Host from FLEET_HOSTS (default: the one with the most free memory)."),
    ] = None,
    force_takeover: ForceTakeover = False,
    db_url: Annotated[
        str | None,
        typer.Option(
            "--db-url",
            help="postgresql://USER:PASSWORD@HOST:PORT/DB: run on PostgreSQL instead of SQLite"
            " + Litestream (`fleet rm` leaves the data there). A 127.0.0.1/localhost host is"
            " rewritten to the litefleet network's gateway IP, which containers reach (a note"
            " says so; `bash images/postgres.sh start` listens there). The password goes to the"
            " container as PGPASSWORD and is never printed.",
            metavar="URL",
        ),
    ] = None,
) -> None:
    """Create and start a tenant (or start it again); waits until it is healthy."""
    from fleet.core.names import parse_env
    from fleet.ops import tenants as _tenants

    result = _tenants.up(
        _fleet(ctx),
        tenant,
        app=app_module,
        image=image,
        labels=_labels(label),
        ttl=ttl,
        memory=memory,
        cpus=cpus,
        env=parse_env(env),
        host=host,
        db_url=db_url,
        force_takeover=force_takeover,
        progress=_image_progress(),
    )
    show.up(result)


@app.command("ls")
def ls(ctx: typer.Context, label: Labels = None, json: Json = False) -> None:
    """List tenants: state, health, age, TTL, database size, replication, labels."""
    import time

    from fleet.ops import status as _status

    rows = _status.ls(_fleet(ctx), _labels(label))
    if json:
        now = time.time()
        show.print_json([r.as_dict(now) for r in rows])
    else:
        show.tenants(rows)


@app.command()
def down(ctx: typer.Context, tenant: Tenant) -> None:
    """Stop a tenant after Litestream's final sync; the volume and the backup stay."""
    from fleet.ops import tenants as _tenants

    t, was_running = _tenants.down(_fleet(ctx), tenant)
    show.out.print(f"tenant {t.name} " + ("stopped" if was_running else f"already {t.state}"))


@app.command()
def rm(ctx: typer.Context, tenant: Tenant, purge: Purge = False, yes: Yes = False) -> None:
    """Remove a tenant's container and volume (with --purge also its backup)."""
    from fleet.core.names import check_tenant
    from fleet.ops import tenants as _tenants

    check_tenant(tenant)
    if purge and not yes:
        _confirm(f"Delete tenant {tenant} AND its backup (tenants/{tenant}/)?")
    show.removed(_tenants.rm(_fleet(ctx), tenant, purge=purge))


@app.command()
def teardown(
    ctx: typer.Context,
    label: Labels = None,
    all_: Annotated[bool, typer.Option("--all", help="Every tenant.")] = False,
    purge: Purge = False,
    yes: Yes = False,
) -> None:
    """Remove every tenant matching --label (or --all), in parallel."""
    from fleet.ops import tenants as _tenants

    with _RemovalProgress(purge and not yes) as progress:
        removal = _tenants.teardown(
            _fleet(ctx), labels=_labels(label), all=all_, purge=purge, reporter=progress
        )
    show.removal(removal)


@app.command()
def gc(
    ctx: typer.Context,
    purge: Purge = False,
    yes: Yes = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list them.")] = False,
) -> None:
    """Remove the tenants whose --ttl has passed."""
    from fleet.ops import tenants as _tenants

    if dry_run:
        names = _tenants.expired(_fleet(ctx))
        show.out.print("\n".join(names) if names else "no expired tenants")
        return
    with _RemovalProgress(purge and not yes) as progress:
        removal = _tenants.gc(_fleet(ctx), purge=purge, reporter=progress)
    show.removal(removal)


class _RemovalProgress:
    """Confirmation prompt and progress bar (on stderr) for bulk removal."""

    def __init__(self, ask: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.ask = ask
        self.bar = Progress(
            TextColumn("removing"),
            BarColumn(),
            MofNCompleteColumn(),
            console=show.err,
            transient=True,
        )
        self.task: Any = None

    def __enter__(self) -> _RemovalProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def confirm(self, tenants: list[str]) -> None:
        if self.ask:
            _confirm(f"Delete {len(tenants)} tenant(s) AND their backups: {', '.join(tenants)}?")

    def start(self, total: int) -> None:
        self.task = self.bar.add_task("removing", total=total)
        self.bar.start()

    def done(self, result: object) -> None:
        self.bar.advance(self.task)


def _confirm(question: str) -> None:
    if not sys.stdin.isatty():
        raise Aborted("refusing to delete without confirmation", "pass --yes")
    if not typer.confirm(question, default=False):
        raise Aborted("aborted")


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
    from fleet.ops import tenants as _tenants

    try:
        for chunk in _tenants.logs(_fleet(ctx), tenant, follow=follow, tail=tail):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
    except KeyboardInterrupt:
        pass


# -- runs


@app.command()
def run(
    ctx: typer.Context,
    tenant: Tenant,
    workflow: Annotated[str, typer.Argument(help="Workflow name (see the tenant's app).")],
    input: Annotated[
        str | None, typer.Option("--input", "-i", help="Input JSON object, or @file.")
    ] = None,
    id: Annotated[str | None, typer.Option("--id", help="Run id (idempotency key).")] = None,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Wait until the run ends.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 300.0,
    json: Json = False,
) -> None:
    """Start a workflow run on a tenant (exit 1 when --wait sees it fail or get cancelled)."""
    from fleet.ops import runs as _runs

    result = _runs.run(
        _fleet(ctx),
        tenant,
        workflow,
        input=_runs.parse_input(input),
        id=id,
        wait=wait,
        timeout=timeout,
    )
    show.print_json(result) if json else show.run(result)
    if wait and result.get("status") != "completed":
        raise RunUnsuccessful(f"run {result.get('id')} {result.get('status')}")


@app.command()
def runs(
    ctx: typer.Context,
    tenant: Tenant,
    status: Annotated[
        str | None, typer.Option(help="Only runs in this status (e.g. running, completed).")
    ] = None,
    workflow: Annotated[str | None, typer.Option(help="Only runs of this workflow.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs.", min=1)] = 100,
    json: Json = False,
) -> None:
    """List a tenant's runs."""
    from fleet.ops import runs as _runs

    rows = _runs.runs(_fleet(ctx), tenant, status=status, workflow=workflow, limit=limit)
    show.print_json(rows) if json else show.runs(rows)


@app.command()
def signal(
    ctx: typer.Context,
    tenant: Tenant,
    run: Annotated[str, typer.Argument(help="Run id.")],
    name: Annotated[str, typer.Argument(help="Signal name, e.g. approve.")],
    data: Annotated[
        str | None, typer.Option("--data", "-d", help="Payload JSON, or @file.")
    ] = None,
) -> None:
    """Send a signal (with an optional JSON payload) to a run."""
    from fleet.ops import runs as _runs

    result = _runs.signal(_fleet(ctx), tenant, run, name, _runs.parse_json(data, "--data"))
    show.out.print(f"signal {name} sent to run {run}" + _status_suffix(result))


@app.command()
def cancel(
    ctx: typer.Context, tenant: Tenant, run: Annotated[str, typer.Argument(help="Run id.")]
) -> None:
    """Cancel a run."""
    from fleet.ops import runs as _runs

    result = _runs.cancel(_fleet(ctx), tenant, run)
    show.out.print(f"run {run} cancel requested" + _status_suffix(result))


def _status_suffix(result: dict[str, Any]) -> str:
    status = result.get("status") or (result.get("run") or {}).get("status")
    return f" (status: {status})" if status else ""


# -- backups


@app.command()
def pull(
    ctx: typer.Context,
    tenant: Tenant,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Where to write (default ./TENANT.db).")
    ] = None,
    at: Annotated[
        str | None,
        typer.Option("--at", help="Point in time, RFC 3339 (e.g. 2026-01-02T03:04:05Z)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the output file.")] = False,
) -> None:
    """Restore a consistent copy of a tenant's database from object storage.

    The running container is not touched; the copy passes PRAGMA integrity_check.
    """
    from fleet.core.names import check_tenant
    from fleet.storage import backups as _backups

    check_tenant(tenant)
    fleet = _fleet(ctx)
    res = _backups.pull(
        fleet.s3(start=False), tenant, output or Path(f"{tenant}.db"), at=at, force=force
    )
    show.out.print(
        f"wrote {res.path} ({res.bytes} bytes, {res.runs} runs, integrity {res.integrity})"
    )


@app.command()
def inspect(
    ctx: typer.Context,
    target: Annotated[
        str, typer.Argument(help="A database file (e.g. from `fleet pull`) or a tenant name.")
    ],
    run: Annotated[str | None, typer.Option("--run", help="Show this run's step timeline.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs.", min=1)] = 50,
    at: Annotated[str | None, typer.Option("--at", help="With a tenant: point in time.")] = None,
    json: Json = False,
) -> None:
    """Show runs and a step timeline from a database copy (a tenant's is pulled first)."""
    import dataclasses
    import tempfile

    from fleet.core.names import check_tenant
    from fleet.ops import inspect as _inspect
    from fleet.storage import backups as _backups

    path = Path(target)
    if path.is_file():
        rep = _inspect.inspect(path, run_id=run, limit=limit)
    else:
        check_tenant(target)
        with tempfile.TemporaryDirectory(prefix="fleet-inspect-") as tmp:
            copy = _backups.pull(_fleet(ctx).s3(start=False), target, Path(tmp, "tenant.db"), at=at)
            rep = _inspect.inspect(copy.path, run_id=run, limit=limit)
            rep.path = f"{target} (backup)"
    show.print_json(dataclasses.asdict(rep)) if json else show.report(rep)


# -- many hosts


@app.command()
def hosts(ctx: typer.Context, json: Json = False) -> None:
    """List the hosts of FLEET_HOSTS: reachable, tenants, memory free/total, tenant image."""
    from fleet.engine import placement as _placement

    from .output_hosts import hosts as show_hosts

    rows = _placement.hosts(_fleet(ctx))
    show.print_json([r.as_dict() for r in rows]) if json else show_hosts(rows)


@app.command()
def restore(
    ctx: typer.Context,
    tenant: Tenant,
    host: Annotated[
        str | None,
        typer.Option(help="Host to restore on (default: the one with the most free memory)."),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="Point in time, RFC 3339. The tenant continues from there and replicates onward"
            " into the same backup: later history is superseded (a copy is kept under"
            " archive/TENANT/ in the bucket).",
        ),
    ] = None,
    force_takeover: ForceTakeover = False,
    app_module: Annotated[
        str | None,
        typer.Option("--app", help="App module (default: the old copy's, else the examples)."),
    ] = None,
    memory: Annotated[str, typer.Option(help="Memory limit (docker syntax, e.g. 256m).")] = "256m",
    cpus: Annotated[float, typer.Option(help="CPU limit in cores.")] = 0.5,
) -> None:
    """Start a tenant on a host from its backup in object storage (a new host, or after losing
    one): prints the restored txid and the age of the newest data."""
    from fleet.ops.restore import restore as do_restore

    from .output_hosts import restored

    restored(
        do_restore(
            _fleet(ctx),
            tenant,
            host=host,
            at=at,
            force_takeover=force_takeover,
            app=app_module,
            memory=memory,
            cpus=cpus,
            progress=_image_progress(),
        )
    )


@app.command()
def migrate(
    ctx: typer.Context,
    tenant: Tenant,
    to: Annotated[str, typer.Option("--to", help="Host from FLEET_HOSTS to move it to.")],
) -> None:
    """Move a tenant to another host: stop, wait for the final sync, start there from object
    storage, compare runs, remove the source. Prints the downtime."""
    from fleet.ops.migrate import migrate as do_migrate

    from .output_hosts import migrated

    migrated(do_migrate(_fleet(ctx), tenant, to=to, progress=_image_progress()))


def _image_progress() -> Any:
    from .output_hosts import ImageProgress

    return ImageProgress()


# -- object store and images


@s3_app.command("up")
def s3_up(ctx: typer.Context) -> None:
    """Start the embedded object store (moto server in a container)."""
    from fleet.ops import object_store as _store

    show.out.print(_store.up(_fleet(ctx)))


@s3_app.command("down")
def s3_down(ctx: typer.Context) -> None:
    """Stop and remove the embedded object store (its data is lost)."""
    from fleet.ops import object_store as _store

    show.out.print(_store.down(_fleet(ctx)))


@s3_app.command("status")
def s3_status(ctx: typer.Context) -> None:
    """Say whether the embedded object store runs, and where."""
    from fleet.ops import object_store as _store

    show.out.print(_store.status(_fleet(ctx)))


@image_app.command("build")
def image_build() -> None:
    """Build the litefleet tenant and s3 images offline (images/build.sh)."""
    from fleet.engine.images import build_images

    for image, size_mb in build_images(_repo_root()):
        show.out.print(f"built {image} ({size_mb} MB)")


def _repo_root() -> Path:
    root = Path(__file__).resolve().parents[1]
    if not (root / "images" / "build.sh").is_file():
        raise FleetError(
            "images/ not found next to the fleet package", "run from a litefleet source checkout"
        )
    return root


# -- entry point


def main(argv: list[str] | None = None) -> None:
    """Console entry point; the one place errors become a message and an exit code."""
    # Typer handles its own usage errors, --help and Ctrl-C (standalone mode, SystemExit);
    # everything a command raises lands here.
    try:
        app(args=argv, prog_name="fleet")
    except Exception as exc:
        err = translate(exc)
        if err is None:
            log.debug("internal error", exc_info=True)
            err = FleetError(
                f"internal error: {type(exc).__name__}: {str(exc)[:200]}",
                "rerun with FLEET_LOG_LEVEL=debug and report it",
            )
            err.exit_code = 70
        _fail(err)


def _fail(err: FleetError) -> None:
    sys.stderr.write(f"fleet: {err.line()}\n")
    sys.stderr.flush()
    sys.exit(err.exit_code)
