"""`fleet console | fork | watch`: look at tenants in a browser, try a change from the state an
agent was in, follow a tenant's database as it replicates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .base import Labels, Tenant, app, fleet_of, image_progress, labels, until_interrupted

At = Annotated[
    str | None,
    typer.Option(
        "--at",
        help="Point in time, RFC 3339 (e.g. 2026-01-02T03:04:05Z); default: the newest"
        " replicated state.",
    ),
]


@app.command()
def fork(
    ctx: typer.Context,
    src: Annotated[str, typer.Argument(help="Tenant whose backup is forked.", metavar="SRC")],
    new: Annotated[str, typer.Argument(help="Name of the new tenant.", metavar="NEW")],
    at: At = None,
    host: Annotated[
        str | None,
        typer.Option(help="Host from FLEET_HOSTS (default: the one with the most free memory)."),
    ] = None,
    label: Labels = None,
    template: Annotated[
        str | None,
        typer.Option(
            "--template",
            help="Template NEW runs, NAME[:VERSION] (default: what SRC runs).",
            metavar="NAME",
        ),
    ] = None,
) -> None:
    """Create tenant NEW from SRC's backup as of --at; SRC is only read.

    NEW gets its own token, lease, replica path and credentials, SRC's app and settings, and
    the label litefleet.forked-from=SRC; runs unfinished at that time continue in NEW.
    """
    from fleet.ops.fork import fork as do_fork

    from . import output

    res = do_fork(
        fleet_of(ctx),
        src,
        new,
        at=at,
        host=host,
        labels=labels(label),
        template=template,
        progress=image_progress(),
    )
    output.out.print(
        f"forked {res.source} at {res.at} (txid {res.txid}) into {res.tenant.name}",
        markup=False,
    )


@app.command()
def watch(
    ctx: typer.Context,
    tenant: Tenant,
    output_path: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="The copy to keep up to date (default ./TENANT.db)."),
    ] = None,
) -> None:
    """Keep a read-only copy of a tenant's database up to date from object storage.

    The tenant is not touched. Runs until interrupted (Ctrl-C); read the copy with
    `fleet inspect PATH --follow` or any SQLite reader opening it read-only.
    """
    from fleet.core.names import check_tenant
    from fleet.ops.watch import watch as do_watch

    from . import output

    check_tenant(tenant)
    path = output_path or Path(f"{tenant}.db")
    s3 = fleet_of(ctx).storage.for_fleet()
    with until_interrupted():
        for update in do_watch(s3, tenant, path):
            output.watched(tenant, path, update)


@app.command()
def console(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8081,
) -> None:
    """Serve the web console: tenants, runs and run timelines, with signal, cancel, download
    and fork. Prints its link (with the access token) first; serves until stopped."""
    from fleet.console.app import serve

    fleet = fleet_of(ctx)

    def announce(line: str) -> None:
        typer.echo(line)

    serve(fleet, host, port, announce)
