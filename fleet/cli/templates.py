"""`fleet template build | ls | rm` and `fleet deploy`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .base import Json, Labels, app, fleet_of, image_progress, labels, template_app


@template_app.command("build")
def build(
    ctx: typer.Context,
    directory: Annotated[
        Path,
        typer.Argument(
            help="The agent's code (a module file or a package) and its dependencies in"
            " requirements.txt or pyproject.toml.",
            metavar="DIR",
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="Template name (a DNS label).")],
    app_module: Annotated[
        str | None,
        typer.Option(
            "--app", help="The module (or package) to load, when DIR holds more than one."
        ),
    ] = None,
) -> None:
    """Build DIR into an image on top of the tenant image (a no-op when unchanged)."""
    from fleet.ops import templates

    from . import output_templates

    output_templates.built(templates.build(fleet_of(ctx), directory, name, app_module))


@template_app.command("ls")
def ls(ctx: typer.Context, json: Json = False) -> None:
    """List templates: name, version, app module, workflows, created, size."""
    from fleet.ops import templates

    from . import output, output_templates

    found = templates.ls(fleet_of(ctx))
    if json:
        output.print_json([t.as_dict() for t in found])
    else:
        output_templates.table(found)


@template_app.command("rm")
def rm(
    ctx: typer.Context,
    ref: Annotated[
        str, typer.Argument(help="NAME (every version) or NAME:VERSION.", metavar="NAME[:VERSION]")
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Remove it even while tenants use it.")
    ] = False,
) -> None:
    """Remove a template version (or all of them) from every host."""
    from fleet.ops import templates

    from . import output_templates

    output_templates.removed(templates.rm(fleet_of(ctx), ref, force=force))


@app.command()
def deploy(
    ctx: typer.Context,
    tenants: Annotated[
        list[str] | None, typer.Argument(help="Tenants to move.", metavar="TENANT...")
    ] = None,
    template: Annotated[
        str,
        typer.Option(
            "--template",
            help="The code to move them to; its newest version unless VERSION is given.",
            metavar="NAME[:VERSION]",
        ),
    ] = "",
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Only replay their unfinished runs on the new code; change nothing."
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Deploy even when a recorded run would break (it fails)."),
    ] = False,
    label: Labels = None,
) -> None:
    """Move tenants to a template version: replay check, stop, start on it, roll back if
    unhealthy. Exit 9 when a recorded run would break."""
    from fleet.core.errors import InvalidArgument
    from fleet.ops import deploy as ops

    from . import output_templates

    if not template:
        raise InvalidArgument("--template NAME[:VERSION] is required")
    fleet = fleet_of(ctx)
    selection = ops.select(fleet, tenants or [], labels(label), template, image_progress())
    checks = ops.check_all(fleet, selection)
    output_templates.checks(checks, every=check)
    failing = [c for c in checks if c.failing]
    if failing and (check or not force):
        raise ops.incompatible(failing, checked_only=check)
    if check:
        return
    done = ops.deploy(fleet, checks, force=force, report=output_templates.deployed)
    refused = [d for d in done if d.action == "refused"]
    if refused:
        raise ops.refused(refused[0], [d.tenant for d in done if d.action == "deployed"])
