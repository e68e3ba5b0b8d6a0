"""What every command starts from: the settings, where tenants run, object storage, and the
template images tenants can run.

They are interfaces here (core imports nothing above it); fleet/ops/connect.py builds the
real ones: Docker engines (fleet/engine/) and S3 endpoints (fleet/storage/).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fleet.supervisor.s3 import S3Settings

from .hosting import Hosting
from .settings import FleetSettings
from .templates import TemplateImages


class ObjectStorage(Protocol):
    """Where backups and leases live: FLEET_S3_ENDPOINT, else the embedded store."""

    def for_fleet(self, *, start: bool = False) -> S3Settings:
        """As this machine reaches it. The embedded store is started when ``start``, else it
        must run already (ObjectStoreError otherwise)."""
        ...

    def for_tenants(self) -> S3Settings:
        """As tenant containers reach it (starts the embedded store)."""
        ...

    def up(self) -> str:
        """`fleet s3 up`: start the embedded store; what happened, in one line."""
        ...

    def down(self) -> str: ...

    def status(self) -> str: ...


@dataclass
class Fleet:
    settings: FleetSettings
    hosting: Hosting
    storage: ObjectStorage
    templates: TemplateImages

    def close(self) -> None:
        self.hosting.close()
