"""`fleet template build | ls | rm`, and the templates `fleet up --template` / `--app PATH`
start tenants on.

A build reads the directory on this machine (fleet/engine/template_source.py: no links
followed, requirement specifiers only), computes the version from its content and the tenant
image it builds on, and returns at once when that version exists. Otherwise the requirements'
wheels come from the host wheelhouse (images/build.sh wheels, as `make images` fills it) and
the image is built and checked on the build host (fleet/engine/template_build.py).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fleet.core import names
from fleet.core.context import Fleet
from fleet.core.errors import InvalidArgument, TemplateNotFound
from fleet.core.templates import BuildResult, Template, TemplateBuild, parse_ref
from fleet.engine.images import template_wheels
from fleet.engine.template_build import recipe
from fleet.engine.template_source import TemplateSource, implicit_name, read_source


@dataclass(frozen=True)
class RmResult:
    removed: list[Template]
    hosts: list[str]


def build(fleet: Fleet, directory: Path, name: str, app: str | None = None) -> BuildResult:
    """Build ``directory`` as template ``name`` (a no-op when its content did not change)."""
    names.check_template(name)
    return _build(fleet, read_source(directory, app), name)


def build_implicit(fleet: Fleet, path: Path) -> BuildResult:
    """`fleet up --app PATH`: the template named after the file or directory."""
    if not path.exists():
        raise InvalidArgument(f"--app {path}: no such file or directory")
    return _build(fleet, read_source(path), implicit_name(path))


def _build(fleet: Fleet, source: TemplateSource, name: str) -> BuildResult:
    t0 = time.monotonic()
    base = fleet.settings.image
    fleet.hosting.ensure_image(fleet.hosting.host_names()[0], base)
    steps = recipe()
    version = source.version(fleet.templates.base_id(base), steps)
    try:
        return BuildResult(fleet.templates.find(name, version), False, time.monotonic() - t0)
    except TemplateNotFound:
        pass
    with tempfile.TemporaryDirectory(prefix="fleet-template-") as tmp:
        wheels = template_wheels(list(source.requirements), Path(tmp))
        context = source.context(steps, wheels)
    job = TemplateBuild(name, version, source.app, source.app_path, base, context)
    return BuildResult(fleet.templates.build(job), True, time.monotonic() - t0)


def resolve(fleet: Fleet, ref: str) -> Template:
    """``NAME[:VERSION]`` -> that version, or the newest one."""
    name, version = parse_ref(ref)
    return fleet.templates.find(name, version)


def ls(fleet: Fleet) -> list[Template]:
    return fleet.templates.versions()


def rm(fleet: Fleet, ref: str, *, force: bool = False) -> RmResult:
    """Remove one version, or every version of a template, from every host; refused while
    a tenant (running or not) uses it, unless ``force``."""
    name, version = parse_ref(ref)
    targets = [fleet.templates.find(name, version)] if version else fleet.templates.versions(name)
    if not targets:
        raise TemplateNotFound(name)
    versions = {t.version for t in targets}
    users = [
        t.name
        for t in fleet.hosting.tenants()
        if t.template == name and t.template_version in versions
    ]
    if users and not force:
        raise InvalidArgument(
            f"template {ref} is used by tenant(s) {', '.join(sorted(set(users)))}",
            "`fleet deploy` them to another template first, or pass --force",
        )
    return RmResult(targets, fleet.templates.remove([t.ref for t in targets], force))
