"""What every command starts from: the settings, where tenants run, object storage, and the
template images tenants can run.

They are interfaces here (core imports nothing above it); fleet/ops/connect.py builds the
real ones: Docker engines (fleet/engine/) and S3 endpoints (fleet/storage/).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
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

    def checked(self) -> S3Settings:
        """``for_fleet(start=True)``, once checked that the bucket exists and conditional
        writes are honoured (ObjectStoreError otherwise): before a tenant is created or
        started on it."""
        ...

    def for_tenant(self, tenant: str) -> S3Settings:
        """As ``tenant``'s containers reach it, with the key they hold: a new key of its own
        (FLEET_S3_CREDENTIALS=iam; its earlier keys stop working) or the fleet's (shared).
        Every path that creates a container of the tenant (one-off jobs included) gets its
        settings here; one command gets one key per tenant."""
        ...

    def reader_of(self, tenant: str) -> AbstractContextManager[S3Settings]:
        """As containers reach it, with a key that only reads ``tenant``'s backup, for the
        ``with`` block (deleted on leaving; shared: the fleet's key): a one-off job that
        restores one tenant's backup into another's volume (`fleet fork`)."""
        ...

    def forget_tenant(self, tenant: str) -> bool:
        """Delete the tenant's own key (``fleet rm --purge``); False when it had none."""
        ...

    def sharing_warning(self) -> str | None:
        """One line when tenants hold the fleet's own key, else None."""
        ...

    def iam_endpoint(self) -> str | None:
        """Where per-tenant keys are made (None: AWS IAM's own endpoint)."""
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
