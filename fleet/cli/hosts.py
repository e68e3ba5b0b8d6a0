"""`fleet hosts | restore | migrate`: many hosts, and moving tenants between them."""

from __future__ import annotations

from typing import Annotated

import typer

from fleet.core import names

from .base import (
    Cpus,
    ForceTakeover,
    Json,
    Memory,
    TemplateRef,
    Tenant,
    app,
    fleet_of,
    image_progress,
)

hosts_app = typer.Typer(
    help="The hosts tenants run on: FLEET_HOSTS, or the nodes of a Docker Swarm.",
    invoke_without_command=True,
)
app.add_typer(hosts_app, name="hosts")


@hosts_app.callback()
def hosts(ctx: typer.Context, json: Json = False) -> None:
    """List the hosts: reachable, tenants, memory free/total, tenant image (engines); or the
    Swarm nodes with their id, hostname, litefleet.host label, state and availability."""
    if ctx.invoked_subcommand is not None:
        return
    from . import output, output_hosts

    rows = fleet_of(ctx).hosting.hosts()
    if json:
        output.print_json([r.as_dict() for r in rows])
    elif any(r.node is not None for r in rows):
        output_hosts.nodes(rows)
    else:
        output_hosts.hosts(rows)


@hosts_app.command("label")
def hosts_label(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="Swarm node: id (or a unique prefix) or hostname.")],
    name: Annotated[str, typer.Argument(help="Host name for --host / --to (a DNS label).")],
) -> None:
    """Swarm: name a node (node label litefleet.host=NAME), for `fleet up --host NAME`."""
    from fleet.core.errors import InvalidArgument
    from fleet.engine.swarm_hosting import SwarmHosting

    from . import output

    hosting = fleet_of(ctx).hosting
    if not isinstance(hosting, SwarmHosting):
        raise InvalidArgument("`fleet hosts label` names Swarm nodes", "set FLEET_BACKEND=swarm")
    n = hosting.label(node, name)
    output.out.print(f"node {n.id[:12]} ({n.hostname}) is host {name}")


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
    template: TemplateRef = None,
    memory: Memory = names.DEFAULT_MEMORY,
    cpus: Cpus = names.DEFAULT_CPUS,
) -> None:
    """Start a tenant on a host from its backup in object storage (a new host, or after losing
    one): prints the restored txid and the age of the newest data."""
    from fleet.ops.restore import restore as do_restore

    from .output_hosts import restored

    restored(
        do_restore(
            fleet_of(ctx),
            tenant,
            host=host,
            at=at,
            force_takeover=force_takeover,
            app=app_module,
            template=template,
            memory=memory,
            cpus=cpus,
            progress=image_progress(),
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

    migrated(do_migrate(fleet_of(ctx), tenant, to=to, progress=image_progress()))
