"""Template images on Docker engines: built, listed and removed on the build host (the first
of FLEET_HOSTS, where the embedded store runs too); other hosts get a copy when a tenant
needs one, as they get the tenant image (image_transfer.py).

A build is three steps on the build host's engine:
1. ``docker build`` of images/template/Dockerfile on top of the fleet's tenant image, with no
   network: the requirements install offline from the wheels in the context, the user's files
   are copied to /app. Nothing of the user's runs.
2. The import check: ``agent-runtime workflows --app /app/... --json`` in a sandboxed
   container of that image (no network, no secrets, the tenant's limits). An app that does
   not import, or registers no workflow, fails the build with its one-line error, and the
   image is removed.
3. A one-line build ``FROM <image>`` adds the record as labels (name, version, app,
   workflows, base) and the tag ``litefleet/tmpl-NAME:VERSION``: a version exists only once
   it passed the check.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from secrets import token_hex
from typing import Any

from fleet.core import names
from fleet.core.errors import FleetError, ImageMissing, InvalidArgument, TemplateNotFound
from fleet.core.hosting import Sandbox
from fleet.core.log import log
from fleet.core.templates import Template, TemplateBuild

from .docker_hosting import epoch_of
from .hosts import Host, reachable
from .images import assets_root
from .sandbox import run_sandboxed

RECIPE = ("Dockerfile", "install.sh")  # images/template/
IMPORT_TIMEOUT_S = 120.0
_WORKFLOW = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")


def recipe() -> list[tuple[str, bytes]]:
    """The build recipe's files (part of every version's hash)."""
    folder = assets_root() / "images" / "template"
    return [(name, (folder / name).read_bytes()) for name in RECIPE]


class DockerTemplates:
    """The TemplateImages of fleet/core on the engines of FLEET_HOSTS."""

    def __init__(self, hosts: list[Host]) -> None:
        self.hosts = hosts

    @property
    def client(self) -> Any:
        return self.hosts[0].client

    def versions(self, name: str | None = None) -> list[Template]:
        wanted = names.LABEL_TEMPLATE if name is None else f"{names.LABEL_TEMPLATE}={name}"
        found = [
            t
            for image in self.client.images.list(filters={"label": wanted})
            if (t := _template_of(image)) is not None
        ]
        return sorted(found, key=lambda t: (t.name, -t.created_at, t.version))

    def find(self, name: str, version: str | None = None) -> Template:
        import docker.errors

        if version is None:
            versions = self.versions(name)
            if versions:
                return versions[0]
        else:
            try:
                found = _template_of(self.client.images.get(names.template_ref(name, version)))
            except docker.errors.ImageNotFound:
                found = None
            if found is not None:
                return found
        raise TemplateNotFound(name if version is None else f"{name}:{version}")

    def base_id(self, base_image: str) -> str:
        import docker.errors

        try:
            return str(self.client.images.get(base_image).id)
        except docker.errors.ImageNotFound:
            raise ImageMissing(f"image {base_image} is not on the build host") from None

    def build(self, job: TemplateBuild) -> Template:
        unchecked = self._build_image(job)
        try:
            workflows = self._import_check(job, unchecked)
            self._record(job, unchecked, workflows)
        finally:  # the final image keeps its layers; a failed build leaves nothing
            self._untag(unchecked)
        return self.find(job.name, job.version)

    def remove(self, refs: Sequence[str], force: bool) -> list[str]:
        import docker.errors

        hosts = []
        for host in reachable(self.hosts):
            for ref in refs:
                try:
                    host.client.images.remove(ref, force=force)
                except docker.errors.ImageNotFound:
                    continue
                except docker.errors.APIError as exc:
                    raise FleetError(
                        f"could not remove {ref} on host {host.name!r}: {exc.explanation}",
                        "a container still uses it: pass --force",
                    ) from None
                hosts.append(host.name)
        return sorted(set(hosts))

    # -- the three steps

    def _build_image(self, job: TemplateBuild) -> str:
        """The image, under a tag of this build's own until its labels are added: an
        untagged image could be pruned by anyone in between, and two builds of one version
        must not remove each other's."""
        import docker.errors

        log.info("building template", template=job.name, version=job.version)
        unchecked = f"{names.template_ref(job.name, job.version)}-unchecked-{token_hex(4)}"
        try:
            self.client.images.build(
                fileobj=io.BytesIO(job.context),
                custom_context=True,
                tag=unchecked,
                buildargs={"TENANT_IMAGE": job.base_image},
                network_mode="none",
                rm=True,
                forcerm=True,
                pull=False,
            )
        except docker.errors.BuildError as exc:
            raise _build_failed(job, exc) from None
        return unchecked

    def _import_check(self, job: TemplateBuild, image: str) -> list[str]:
        argv = ["agent-runtime", "workflows", "--app", job.app_path, "--json"]
        ran = run_sandboxed(self.client, Sandbox(image, argv, timeout=IMPORT_TIMEOUT_S))
        if ran.exit_code != 0:
            lines = [ln.strip() for ln in ran.stderr.splitlines() if ln.strip()]
            last = (lines or [f"exit status {ran.exit_code}"])[-1]
            raise InvalidArgument(
                f"template {job.name}: {last.removeprefix('agent-runtime: error: ')}",
                "the build imports the app inside the new image, as its tenants will",
            )
        try:
            workflows = json.loads(ran.stdout)["workflows"]
        except (ValueError, KeyError, TypeError):
            raise InvalidArgument(
                f"template {job.name}: the import check printed no list of workflows"
            ) from None
        if not workflows or not all(
            isinstance(w, str) and _WORKFLOW.fullmatch(w) for w in workflows
        ):
            raise InvalidArgument(f"template {job.name}: unusable workflow names {workflows!r}")
        return sorted(workflows)

    def _record(self, job: TemplateBuild, image: str, workflows: list[str]) -> None:
        labels = {
            names.LABEL_TEMPLATE: job.name,
            names.LABEL_TEMPLATE_VERSION: job.version,
            names.LABEL_TEMPLATE_APP: job.app,
            names.LABEL_APP: job.app_path,
            names.LABEL_TEMPLATE_WORKFLOWS: json.dumps(workflows),
            names.LABEL_TEMPLATE_BASE: self.base_id(job.base_image),
        }
        self.client.images.build(
            fileobj=io.BytesIO(f"FROM {image}\n".encode()),
            tag=names.template_ref(job.name, job.version),
            labels=labels,
            network_mode="none",
            rm=True,
            pull=False,
        )

    def _untag(self, unchecked: str) -> None:
        import docker.errors

        try:
            self.client.images.remove(unchecked)
        except docker.errors.APIError as exc:  # a leftover tag only costs disk
            log.info("could not remove a build's tag", image=unchecked, error=str(exc)[:200])


def _template_of(image: Any) -> Template | None:
    """The record an image's labels hold; None unless it carries the tag they name."""
    labels: dict[str, str] = image.attrs["Config"].get("Labels") or {}
    name, version = labels.get(names.LABEL_TEMPLATE), labels.get(names.LABEL_TEMPLATE_VERSION)
    if not name or not version or names.template_ref(name, version) not in image.tags:
        return None
    try:
        workflows = tuple(json.loads(labels.get(names.LABEL_TEMPLATE_WORKFLOWS, "[]")))
    except ValueError:
        workflows = ()
    return Template(
        name=name,
        version=version,
        app=labels.get(names.LABEL_TEMPLATE_APP, "?"),
        app_path=labels.get(names.LABEL_APP, "?"),
        workflows=workflows,
        created_at=epoch_of(image.attrs.get("Created", "")),
        size=int(image.attrs.get("Size") or 0),
        image_id=str(image.id),
    )


def _build_failed(job: TemplateBuild, exc: Any) -> FleetError:
    """One line from a failed docker build: the install's own error when it printed one."""
    lines = [
        ln.strip()
        for chunk in exc.build_log
        for ln in str(chunk.get("stream") or chunk.get("error") or "").splitlines()
        if ln.strip()
    ]
    mine = [ln for ln in lines if ln.startswith(("ERROR:", "template:"))]
    if mine:
        return InvalidArgument(f"template {job.name}: {mine[-1].removeprefix('template: ')}")
    return FleetError(f"building template {job.name} failed: {(lines or [str(exc)])[-1][:300]}")
