"""`fleet run | runs | signal | cancel`: a tenant's workflow runs, through its runtime API."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from fleet.core.errors import RunUnsuccessful

from .base import Json, Tenant, app, fleet_of


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
    from fleet.ops import runs

    from . import output

    result = runs.run(
        fleet_of(ctx),
        tenant,
        workflow,
        input=runs.parse_input(input),
        id=id,
        wait=wait,
        timeout=timeout,
        notify=output.note,
    )
    output.print_json(result) if json else output.run(result)
    if wait and result.get("status") != "completed":
        raise RunUnsuccessful(f"run {result.get('id')} {result.get('status')}")


@app.command("runs")
def runs_(
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
    from fleet.ops import runs

    from . import output

    rows = runs.runs(
        fleet_of(ctx), tenant, status=status, workflow=workflow, limit=limit, notify=output.note
    )
    output.print_json(rows) if json else output.runs(rows)


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
    from fleet.ops import runs

    from . import output

    payload = runs.parse_json(data, "--data")
    result = runs.signal(fleet_of(ctx), tenant, run, name, payload, notify=output.note)
    output.out.print(f"signal {name} sent to run {run}" + _status_suffix(result))


@app.command()
def cancel(
    ctx: typer.Context, tenant: Tenant, run: Annotated[str, typer.Argument(help="Run id.")]
) -> None:
    """Cancel a run."""
    from fleet.ops import runs

    from . import output

    result = runs.cancel(fleet_of(ctx), tenant, run, notify=output.note)
    output.out.print(f"run {run} cancel requested" + _status_suffix(result))


def _status_suffix(result: dict[str, Any]) -> str:
    status = result.get("status") or (result.get("run") or {}).get("status")
    return f" (status: {status})" if status else ""
