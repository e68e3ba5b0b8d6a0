"""Object storage as the fleet and its tenants reach it: FLEET_S3_ENDPOINT (and
FLEET_S3_TENANT_ENDPOINT), else the embedded store on the first host. The ObjectStorage of
fleet/core/context.py, including `fleet s3 up|down|status`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fleet.core.errors import ObjectStoreError
from fleet.core.settings import FleetSettings
from fleet.supervisor.s3 import S3Settings

from . import embedded

_MEMORY = "its data lives in memory only: it is lost when the store stops"


class S3Endpoints:
    """``store_engine`` returns the docker client of the engine that runs the embedded store
    (connected on first use: commands that never need it never connect)."""

    def __init__(self, settings: FleetSettings, store_engine: Callable[[], Any]) -> None:
        self.settings = settings
        self.store_engine = store_engine
        self._fleet: S3Settings | None = None
        self._tenants: S3Settings | None = None

    def for_fleet(self, *, start: bool = False) -> S3Settings:
        if self._fleet is None:
            self._resolve(start)
        assert self._fleet is not None
        return self._fleet

    def for_tenants(self) -> S3Settings:
        if self._tenants is None:
            self._resolve(start=True)
        assert self._tenants is not None
        return self._tenants

    def _resolve(self, start: bool) -> None:
        s = self.settings
        if s.s3_endpoint:
            external = S3Settings(
                s.s3_endpoint,
                s.s3_bucket,
                s.s3_region,
                s.s3_access_key_id,
                s.s3_secret_access_key.get_secret_value(),
            )
            self._fleet = external
            self._tenants = external.with_endpoint(s.s3_tenant_endpoint or s.s3_endpoint)
            return
        store = self._embedded(start)
        self._fleet, self._tenants = store.for_fleet(), store.for_tenants()

    def _embedded(self, start: bool) -> embedded.EmbeddedStore:
        s = self.settings
        client = self.store_engine()
        if start:
            return embedded.ensure_object_store(client, bucket=s.s3_bucket, port=s.s3_port)
        status = embedded.object_store_status(client)
        if status is None or not status.running or not status.host_endpoint:
            raise ObjectStoreError(
                "the embedded object store is not running", "`fleet s3 up` starts it"
            )
        tenant_ep = status.tenant_endpoint or status.host_endpoint
        return embedded.EmbeddedStore(status.host_endpoint, tenant_ep, s.s3_bucket)

    # -- `fleet s3 up|down|status`

    def up(self) -> str:
        s = self.settings
        if s.s3_endpoint:
            return f"using external object storage at {s.s3_endpoint}; nothing to start"
        store = self._embedded(start=True)
        return (
            f"embedded object store running at {store.host_endpoint} (bucket {s.s3_bucket}); "
            + _MEMORY
        )

    def down(self) -> str:
        if self.settings.s3_endpoint:
            return "using external object storage; nothing to stop"
        if not embedded.remove_object_store(self.store_engine()):
            return "embedded object store was not running"
        return "embedded object store removed"

    def status(self) -> str:
        s = self.settings
        if s.s3_endpoint:
            return f"external object storage at {s.s3_endpoint} (bucket {s.s3_bucket})"
        st = embedded.object_store_status(self.store_engine())
        if st is None:
            return "embedded object store: not running (`fleet s3 up` starts it)"
        if not st.running:
            return f"embedded object store: {st.state} (`fleet s3 up` starts it); {_MEMORY}"
        return (
            f"embedded object store: running at {st.host_endpoint} for this host, "
            f"{st.tenant_endpoint} for tenants (bucket {s.s3_bucket}); {_MEMORY}"
        )
