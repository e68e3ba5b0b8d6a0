"""`fleet s3 up | down | status` (the embedded object store), `fleet image build` and
`fleet k8s manifest`, `fleet doctor`."""

from __future__ import annotations

import sys

import typer

from .base import Json, Tenant, app, fleet_of, image_app, k8s_app, s3_app


@s3_app.command("up")
def s3_up(ctx: typer.Context) -> None:
    """Start the embedded object store (moto server in a container)."""
    from . import output

    output.out.print(fleet_of(ctx).storage.up())


@s3_app.command("down")
def s3_down(ctx: typer.Context) -> None:
    """Stop and remove the embedded object store (its data is lost)."""
    from . import output

    output.out.print(fleet_of(ctx).storage.down())


@s3_app.command("status")
def s3_status(ctx: typer.Context) -> None:
    """Say whether the embedded object store runs, and where."""
    from . import output

    output.out.print(fleet_of(ctx).storage.status())


@image_app.command("build")
def image_build() -> None:
    """Build the litefleet tenant and s3 images offline (images/build.sh)."""
    from fleet.engine.images import build_images

    from . import output

    for image, size_mb in build_images():
        output.out.print(f"built {image} ({size_mb} MB)")


@app.command("doctor")
def doctor(ctx: typer.Context, json_out: Json = False) -> None:
    """Check this set-up, one line each: Docker engines, images of this version, the object
    store (bucket, conditional writes, clock offset), free disk and memory. Exit 1 if any fails."""
    from fleet.ops.doctor import doctor as run_checks

    from . import output_doctor

    checks = run_checks(fleet_of(ctx))
    output_doctor.show(checks, json_out)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


@k8s_app.command("manifest")
def k8s_manifest(ctx: typer.Context, tenant: Tenant) -> None:
    """Print the tenant as Kubernetes objects (StatefulSet, Service, NetworkPolicy), YAML.
    Its Secrets are referenced, not printed: docs/kubernetes.md shows how to create them."""
    from fleet.ops.k8s_manifest import manifest_for

    sys.stdout.write(manifest_for(fleet_of(ctx), tenant))
