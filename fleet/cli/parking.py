"""`fleet park | wake | token | gateway`: tenants that live in object storage while idle, and
the one front door that wakes them."""

from __future__ import annotations

from typing import Annotated

import typer

from fleet.core import names

from .base import BulkProgress, Count, Labels, Prefix, Tenant, Tenants, app, fleet_of, labels


@app.command()
def park(
    ctx: typer.Context,
    tenant: Tenants = None,
    label: Labels = None,
    count: Count = None,
    prefix: Prefix = None,
) -> None:
    """Stop tenants with their final sync checked, remove container and volume, and keep them
    in object storage (`fleet ls` shows them parked; `fleet wake`, `fleet run` or a request
    through `fleet gateway` bring them back)."""
    from fleet.ops import bulk, tenants

    from . import output

    fleet = fleet_of(ctx)
    chosen = tenant or []
    if label:
        found = tenants.list_tenants(fleet, labels(label))
        chosen += [t.name for t in found if t.name not in chosen]
        if not chosen and not count:
            output.out.print("no tenants carry these labels")
            return
    todo = bulk.tenant_names(chosen, count, prefix)
    with BulkProgress("parking", len(todo)) as progress:
        done = bulk.park_many(fleet, todo, reporter=progress)
    output.bulk(done, output.parked)


@app.command()
def wake(
    ctx: typer.Context,
    tenant: Tenants = None,
    count: Count = None,
    prefix: Prefix = None,
    host: Annotated[
        str | None,
        typer.Option(help="Host from FLEET_HOSTS (default: the one with the most free memory)."),
    ] = None,
) -> None:
    """Bring parked tenants back from object storage (same token and settings)."""
    from fleet.ops import bulk

    from . import output

    todo = bulk.tenant_names(tenant or [], count, prefix)
    with BulkProgress("waking", len(todo)) as progress:
        done = bulk.wake_many(fleet_of(ctx), todo, host=host, reporter=progress)
    output.bulk(done, output.woken)


@app.command()
def token(ctx: typer.Context, tenant: Tenant) -> None:
    """Print a tenant's API token, to hand to that tenant's client (no other command does)."""
    from fleet.ops import tokens

    print(tokens.token(fleet_of(ctx), tenant))


@app.command()
def gateway(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = names.GATEWAY_PORT,
    verify_every: Annotated[
        str | None,
        typer.Option(
            "--verify-every",
            help="Run `fleet verify` (a restore drill) on each tenant whose last one is older"
            " than this, e.g. 1d; one at a time, on this machine.",
            metavar="DURATION",
        ),
    ] = None,
) -> None:
    """Serve every tenant's API at /t/<tenant>/... with the tenant's own token; wake parked
    tenants on a request, park idle ones (--idle-park), wake them for durable timers; with
    --verify-every, run restore drills on a schedule."""
    from fleet.core.durations import parse_duration
    from fleet.gateway.server import serve

    every = float(parse_duration(verify_every)) if verify_every is not None else None
    serve(fleet_of(ctx), host=host, port=port, verify_every=every)
