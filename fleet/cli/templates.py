"""`fleet template build | ls | rm`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .base import Json, fleet_of, template_app


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
