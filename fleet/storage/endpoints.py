"""Object storage as the fleet and its tenants reach it: FLEET_S3_ENDPOINT (and
FLEET_S3_TENANT_ENDPOINT), else the embedded store on the first host. The ObjectStorage of
fleet/core/context.py, including `fleet s3 up|down|status`.

Which key a tenant holds (FLEET_S3_CREDENTIALS): ``iam``, a key of its own made through the
store's IAM API (fleet/storage/credentials.py); ``shared``, the fleet's own. Unset, it is
``iam`` on the embedded store and wherever the IAM API answers the fleet's key, else
``shared`` (and `fleet up` warns).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from fleet.core.errors import ObjectStoreError
from fleet.core.log import log
from fleet.core.names import CREDENTIALS_IAM, CREDENTIALS_SHARED
from fleet.core.settings import FleetSettings
from fleet.supervisor.s3 import S3Settings

from . import embedded, preflight
from .credentials import TenantKeys, wait_usable

_MEMORY = "its data lives in memory only: it is lost when the store stops"
SHARED_WARNING = (
    "tenants share the fleet's object-store key (FLEET_S3_CREDENTIALS=shared): agent code in "
    "any tenant can read and delete every other tenant's backups and leases"
)


class S3Endpoints:
    """``store_engine`` returns the docker client of the engine that runs the embedded store
    (connected on first use: commands that never need it never connect)."""

    def __init__(self, settings: FleetSettings, store_engine: Callable[[], Any]) -> None:
        self.settings = settings
        self.store_engine = store_engine
        self._fleet: S3Settings | None = None
        self._tenants: S3Settings | None = None
        self._mode: str | None = None
        self._why_shared = ""
        self._keys: TenantKeys | None = None
        self._checked = False
        self._unchecked = False  # an embedded store made by an older fleet
        self._issued: dict[str, S3Settings] = {}
        self._lock = threading.RLock()  # bulk removal runs in threads

    def for_fleet(self, *, start: bool = False) -> S3Settings:
        with self._lock:
            if self._fleet is None:
                self._resolve(start)
            assert self._fleet is not None
            return self._fleet

    def checked(self) -> S3Settings:
        with self._lock:
            s3 = self.for_fleet(start=True)
            if not self._checked:  # once per command: bulk operations pay it once
                preflight.check_bucket(s3)
                preflight.check_conditional_writes(s3)
                self._checked = True
            return s3

    def for_tenant(self, tenant: str) -> S3Settings:
        with self._lock:
            if tenant not in self._issued:
                self._issued[tenant] = self._issue(tenant)
            return self._issued[tenant]

    @contextlib.contextmanager
    def reader_of(self, tenant: str) -> Iterator[S3Settings]:
        self.for_fleet(start=True)
        assert self._tenants is not None and self._fleet is not None
        if self.credentials() == CREDENTIALS_SHARED:
            yield self._tenants
            return
        self._refuse_unchecked()
        with self._tenant_keys().reader(self._fleet, tenant) as (key_id, secret):
            yield S3Settings(
                self._tenants.endpoint, self._fleet.bucket, self._fleet.region, key_id, secret
            )

    def forget_tenant(self, tenant: str) -> bool:
        if self.credentials() != CREDENTIALS_IAM:
            return False
        return self._tenant_keys().revoke(tenant)  # unlocked: bulk removal runs in parallel

    def credentials(self) -> str:
        with self._lock:
            if self._mode is None:
                self._mode = self._credentials_mode()
            return self._mode

    def sharing_warning(self) -> str | None:
        if self.credentials() != CREDENTIALS_SHARED:
            return None
        return SHARED_WARNING + self._why_shared

    def _issue(self, tenant: str) -> S3Settings:
        self.for_fleet(start=True)
        assert self._tenants is not None and self._fleet is not None
        if self.credentials() == CREDENTIALS_SHARED:
            return self._tenants
        self._refuse_unchecked()
        key_id, secret = self._tenant_keys().issue(tenant)
        own = S3Settings(
            self._fleet.endpoint, self._fleet.bucket, self._fleet.region, key_id, secret
        )
        wait_usable(own, tenant)
        return own.with_endpoint(self._tenants.endpoint)

    def _refuse_unchecked(self) -> None:
        if self._unchecked:
            raise ObjectStoreError(
                f"the embedded object store ({self.settings.s3_container}) was made by an "
                "older fleet and checks no credentials: a key of the tenant's own would "
                "protect nothing",
                "`fleet s3 up` replaces it while it holds no data; or set "
                "FLEET_S3_CREDENTIALS=shared",
            )

    def _credentials_mode(self) -> str:
        s = self.settings
        if s.s3_credentials is not None:
            return s.s3_credentials
        if s.embedded_s3:
            return CREDENTIALS_IAM
        why = self._tenant_keys().unavailable()
        if why is None:
            return CREDENTIALS_IAM
        log.info("per-tenant keys unavailable", reason=why)
        self._why_shared = f" ({why}; FLEET_S3_CREDENTIALS is unset)"
        return CREDENTIALS_SHARED

    def _tenant_keys(self) -> TenantKeys:
        with self._lock:
            if self._keys is None:
                self._keys = TenantKeys(self.for_fleet(start=True), self.iam_endpoint())
            return self._keys

    def iam_endpoint(self) -> str | None:
        """Where tenants' keys are made (for `fleet doctor`'s
        preflight.check_tenant_credentials too); None: AWS IAM's own endpoint."""
        s = self.settings
        if s.s3_iam_endpoint:
            return s.s3_iam_endpoint
        fleet = self.for_fleet()
        if (urlsplit(fleet.endpoint).hostname or "").endswith(".amazonaws.com"):
            return None  # AWS: IAM has its own global endpoint
        return fleet.endpoint  # moto (and the embedded store) serve IAM beside S3

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
        self._unchecked = not store.checks_credentials
        self._fleet, self._tenants = store.for_fleet(), store.for_tenants()

    def _embedded(self, start: bool) -> embedded.EmbeddedStore:
        s = self.settings
        client = self.store_engine()
        if start:
            return embedded.ensure_object_store(
                client, bucket=s.s3_bucket, port=s.s3_port, name=s.s3_container
            )
        return embedded.running_object_store(client, s.s3_container, s.s3_bucket)

    # -- `fleet s3 up|down|status`

    def up(self) -> str:
        s = self.settings
        if s.s3_endpoint:
            return f"using external object storage at {s.s3_endpoint}; nothing to start"
        store = self._embedded(start=True)
        return (
            f"embedded object store running at {store.host_endpoint} (bucket {s.s3_bucket}, "
            "credentials checked); " + _MEMORY
        )

    def down(self) -> str:
        if self.settings.s3_endpoint:
            return "using external object storage; nothing to stop"
        if not embedded.remove_object_store(self.store_engine(), self.settings.s3_container):
            return "embedded object store was not running"
        return "embedded object store removed"

    def status(self) -> str:
        s = self.settings
        if s.s3_endpoint:
            return f"external object storage at {s.s3_endpoint} (bucket {s.s3_bucket})"
        st = embedded.object_store_status(self.store_engine(), s.s3_container)
        if st is None:
            return "embedded object store: not running (`fleet s3 up` starts it)"
        if not st.running:
            return f"embedded object store: {st.state} (`fleet s3 up` starts it); {_MEMORY}"
        checks = "checks credentials" if st.checks_credentials else "checks NO credentials"
        return (
            f"embedded object store: running at {st.host_endpoint} for this host, "
            f"{st.tenant_endpoint} for tenants (bucket {s.s3_bucket}, {checks}); {_MEMORY}"
        )
