"""`fleet pull | inspect | verify`: a tenant's database from object storage, what its agent
did, and restore drills."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fleet.core import names
from fleet.core.names import check_tenant

from .base import (
    BulkProgress,
    Json,
    Labels,
    Tenant,
    Tenants,
    app,
    fleet_of,
    labels,
    until_interrupted,
)


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
    from fleet.ops.pull import pull as do_pull

    from . import output as show

    check_tenant(tenant)
    s3 = fleet_of(ctx).storage.for_fleet()
    res = do_pull(s3, tenant, output or Path(f"{tenant}.db"), at=at, force=force)
    show.out.print(
        f"wrote {res.path} ({res.bytes} bytes, {res.runs} runs, integrity {res.integrity})"
    )


@app.command()
def verify(
    ctx: typer.Context,
    tenant: Tenants = None,
    label: Labels = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every tenant (running, stopped or parked).")
    ] = False,
) -> None:
    """Restore drill: restore each tenant's newest backup into a scratch directory on this
    machine, run PRAGMA integrity_check, compare the restored txid with the bucket's and the
    tenant's own; record the result (`fleet ls` shows it as VERIFIED). One line per tenant;
    exit 1 when any drill failed."""
    from fleet.core.errors import InvalidArgument
    from fleet.ops import bulk, verify

    from . import output

    if all_ and label:
        raise InvalidArgument("give --label or --all, not both")
    if not (tenant or label or all_):
        raise InvalidArgument("name the tenants to verify", "or --label K=V, or --all")
    fleet = fleet_of(ctx)
    todo = verify.chosen(fleet, tenant or [], labels(label), all_)
    if not todo:
        output.out.print("no tenants to verify")
        return
    with BulkProgress("verifying", len(todo)) as progress:
        done = bulk.for_each(
            todo, lambda t: verify.verify(fleet, t), progress, names.VERIFY_PARALLEL
        )
    output.verified(done)


@app.command()
def inspect(
    ctx: typer.Context,
    target: Annotated[
        str, typer.Argument(help="A database file (e.g. from `fleet pull`) or a tenant name.")
    ],
    run: Annotated[str | None, typer.Option("--run", help="Show this run's step timeline.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs.", min=1)] = 50,
    at: Annotated[str | None, typer.Option("--at", help="With a tenant: point in time.")] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Print new events as they arrive (a file, e.g. one `fleet watch` updates);"
            " with --run, that run's history first. Ctrl-C stops.",
        ),
    ] = False,
    json: Json = False,
) -> None:
    """Show runs and a step timeline from a database copy (a tenant's is pulled first)."""
    import dataclasses
    import tempfile

    from fleet.core.names import check_tenant
    from fleet.ops.inspect import follow as do_follow
    from fleet.ops.inspect import inspect as do_inspect
    from fleet.ops.pull import pull as do_pull

    from . import output

    path = Path(target)
    if follow:
        with until_interrupted():
            for event in do_follow(path, run_id=run):
                output.print_json_line(event) if json else output.event_line(event)
        return
    if path.is_file():
        rep = do_inspect(path, run_id=run, limit=limit)
    else:
        check_tenant(target)
        with tempfile.TemporaryDirectory(prefix="fleet-inspect-") as tmp:
            s3 = fleet_of(ctx).storage.for_fleet()
            copy = do_pull(s3, target, Path(tmp, "tenant.db"), at=at)
            rep = do_inspect(copy.path, run_id=run, limit=limit)
            rep.path = f"{target} (backup)"
    output.print_json(dataclasses.asdict(rep)) if json else output.report(rep)
