"""litefleet installed from its wheel, outside the checkout: the `fleet` command without its
extra (one line, exit 2), and (Docker) the whole path a new user takes: `fleet --help`,
`fleet doctor`, `fleet image build`, then a tenant's `up`, `run`, `rm`."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests import docker_fixtures as _fixtures
from tests.docker_fixtures import TEST_BUCKET

from .fleet_support import Result, one_line_error
from .install_support import WHEELHOUSE, build_wheel, fresh_venv

docker_client = _fixtures.docker_client
tenant_image = _fixtures.tenant_image
object_store = _fixtures.object_store


def _run(bin_dir: Path, cwd: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    """A command of the venv, from ``cwd`` (never the checkout), with no checkout on the path."""
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(
        [str(bin_dir / args[0]), *args[1:]],
        cwd=cwd,
        env={**clean, "PATH": f"{bin_dir}:{clean.get('PATH', '')}", **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.slow
def test_fleet_without_its_extra_says_which_to_install(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist")
    # The wheel alone (no dependencies): what `fleet` does before it imports any of them.
    bin_dir = fresh_venv(tmp_path / "venv", str(wheel), no_deps=True)
    r = _run(bin_dir, tmp_path, "fleet", "ls")
    assert r.code == 2
    line = one_line_error(r)
    assert "'fleet' extra" in line and "litefleet[fleet]" in line and "typer" in line


@pytest.mark.docker
def test_up_refuses_an_image_of_another_version(
    docker_client: object, tenant_image: str, tmp_path: Path
) -> None:
    import docker.errors

    from .fleet_support import fleet

    old = f"litefleet/tenant:old-{uuid.uuid4().hex[:8]}"
    (tmp_path / "Dockerfile").write_text(
        f"FROM {tenant_image}\nLABEL org.opencontainers.image.version=0.0.1\n"
    )
    client: object = docker_client
    client.images.build(path=str(tmp_path), tag=old, rm=True)  # type: ignore[attr-defined]
    try:
        r = fleet("up", f"old-{uuid.uuid4().hex[:8]}", env={"FLEET_IMAGE": old, "FLEET_CONFIG": ""})
        assert r.code == 4
        line = one_line_error(r)
        assert "0.0.1" in line and "fleet image build" in line
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(old, force=True)  # type: ignore[attr-defined]


@pytest.mark.docker
@pytest.mark.slow
def test_installed_wheel_builds_images_and_runs_a_tenant(
    tmp_path: Path, docker_client: object, object_store: object
) -> None:
    if not WHEELHOUSE.is_dir():
        pytest.skip("no host wheelhouse: run make images")
    wheel = build_wheel(tmp_path / "dist")
    bin_dir = fresh_venv(tmp_path / "venv", f"{wheel}[fleet]")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # A tag of its own (never :latest or the version), a build cache seeded from the host's
    # wheelhouse so that the build is offline and quick.
    tag = f"install-{uuid.uuid4().hex[:8]}"
    build = tmp_path / "build"
    shutil.copytree(WHEELHOUSE, build / "wheelhouse")
    env = {
        "LITEFLEET_IMAGE_TAG": tag,
        "LITEFLEET_BUILD_DIR": str(build),
        "FLEET_S3_BUCKET": TEST_BUCKET,
        "FLEET_HEALTH_TIMEOUT": "120",
        "FLEET_CONFIG": "",
    }
    tenant = f"inst-{uuid.uuid4().hex[:8]}"
    try:
        assert "Usage" in _run(bin_dir, elsewhere, "fleet", "--help", env=env).out
        built = _run(bin_dir, elsewhere, "fleet", "image", "build", env=env)
        assert built.code == 0, built.err
        assert f"litefleet/tenant:{tag}" in built.out and f"litefleet/s3:{tag}" in built.out
        doctor = _run(bin_dir, elsewhere, "fleet", "doctor", "--json", env=env)
        checks = {c["check"]: c for c in json.loads(doctor.out)["checks"]}
        assert checks["images"]["ok"], checks["images"]
        assert checks["engine local"]["ok"] and checks["bucket"]["ok"], checks
        up = _run(bin_dir, elsewhere, "fleet", "up", tenant, env=env)
        assert up.code == 0, up.err
        ran = _run(
            bin_dir, elsewhere, "fleet", "run", tenant, "echo", "-i", '{"message": "hi"}',
            "--wait", "--json", env=env,
        )  # fmt: skip
        assert ran.code == 0, ran.err
        assert json.loads(ran.out)["result"] == {"message": "hi"}
        rm = _run(bin_dir, elsewhere, "fleet", "rm", tenant, "--purge", "--yes", env=env)
        assert rm.code == 0, rm.err
    finally:
        _run(bin_dir, elsewhere, "fleet", "rm", tenant, "--purge", "--yes", env=env)
        for name in ("tenant", "s3"):
            subprocess.run(
                ["docker", "image", "rm", "-f", f"litefleet/{name}:{tag}"], capture_output=True
            )
