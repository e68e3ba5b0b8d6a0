"""Templates: a tenant image plus a user's agent code and its dependencies, built once and
started many times (`fleet template build`, `fleet up --template`, `fleet deploy`).

A template version is an image ``litefleet/tmpl-NAME:VERSION`` whose labels are its record
(names.LABEL_TEMPLATE*): the fleet keeps no database of templates either. The version is a
short hash of everything the image is made of, so building unchanged code again is a no-op.
This module holds the records and the interface; fleet/engine/template_build.py builds them
on a Docker engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import names


@dataclass(frozen=True)
class Template:
    """One version of a template, as its image's labels record it."""

    name: str
    version: str
    app: str  # the module in the template's directory ("agents")
    app_path: str  # what its tenants load (AGENT_RUNTIME_APP), e.g. /app/agents.py
    workflows: tuple[str, ...]
    created_at: float
    size: int  # bytes, the whole image
    image_id: str

    @property
    def ref(self) -> str:
        return names.template_ref(self.name, self.version)

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.version}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "app": self.app,
            "app_path": self.app_path,
            "workflows": list(self.workflows),
            "created_at": self.created_at,
            "size": self.size,
            "image": self.ref,
        }


@dataclass(frozen=True)
class BuildResult:
    template: Template
    built: bool  # False: this version existed already (unchanged content)
    seconds: float


@dataclass(frozen=True)
class TemplateBuild:
    """What a template image is built from: ``context`` is a tar laid out as
    images/template/Dockerfile expects (app/, requirements.txt, wheels/, install.sh)."""

    name: str
    version: str
    app: str
    app_path: str
    base_image: str  # the fleet's tenant image
    context: bytes = field(repr=False)


def parse_ref(text: str) -> tuple[str, str | None]:
    """``NAME[:VERSION]`` -> (name, version or None); InvalidArgument when malformed."""
    from .errors import InvalidArgument

    name, sep, version = text.partition(":")
    names.check_template(name)
    if sep and not (version and version.isalnum() and len(version) <= 64):
        raise InvalidArgument(f"invalid template version in {text!r}", "use NAME or NAME:VERSION")
    return name, version if sep else None


class TemplateImages(Protocol):
    """Template images on the fleet's build host (the first of FLEET_HOSTS), from which
    hosts that lack one get a copy as they get the tenant image."""

    def versions(self, name: str | None = None) -> list[Template]:
        """Every version (of ``name``), newest first."""
        ...

    def find(self, name: str, version: str | None = None) -> Template:
        """That version, else the newest one; TemplateNotFound when there is none."""
        ...

    def base_id(self, base_image: str) -> str:
        """The id of the tenant image templates are built on (part of their version)."""
        ...

    def build(self, job: TemplateBuild) -> Template:
        """Build the image, import its app in a sandboxed container of it and record what
        it registers as its labels; InvalidArgument (one line) when the app does not import
        or registers no workflow (nothing is left behind then)."""
        ...

    def remove(self, refs: Sequence[str], force: bool) -> list[str]:
        """Remove these template images from every reachable host; the hosts they were on."""
        ...
