"""The objects every command starts from: settings, engines and object storage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fleet.engine.container_spec import S3Target
from fleet.engine.hosts import Host, parse_hosts

from .errors import ObjectStoreError
from .settings import FleetSettings


@dataclass
class Fleet:
    settings: FleetSettings
    hosts: list[Host]
    _s3_host: S3Target | None = field(default=None, repr=False)
    _s3_tenant: S3Target | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: FleetSettings) -> Fleet:
        return cls(settings=settings, hosts=parse_hosts(settings.hosts))

    @property
    def store_host(self) -> Host:
        """The engine that runs the embedded object store (the first host)."""
        return self.hosts[0]

    def s3(self, *, start: bool = False) -> S3Target:
        """Object storage as this machine reaches it.

        With no FLEET_S3_ENDPOINT it is the embedded store: started when ``start``,
        else it must already run (ObjectStoreError otherwise).
        """
        if self._s3_host is None:
            self._resolve(start)
        assert self._s3_host is not None
        return self._s3_host

    def s3_for_tenants(self) -> S3Target:
        """Object storage as tenant containers reach it (starts the embedded store)."""
        if self._s3_tenant is None:
            self._resolve(start=True)
        assert self._s3_tenant is not None
        return self._s3_tenant

    def _resolve(self, start: bool) -> None:
        s = self.settings
        secret = s.s3_secret_access_key.get_secret_value()

        def target(endpoint: str) -> S3Target:
            return S3Target(
                endpoint=endpoint,
                bucket=s.s3_bucket,
                region=s.s3_region,
                access_key_id=s.s3_access_key_id,
                secret_access_key=secret,
            )

        if s.s3_endpoint:
            self._s3_host = target(s.s3_endpoint)
            self._s3_tenant = target(s.s3_tenant_endpoint or s.s3_endpoint)
            return
        from fleet.storage.embedded import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY

        host_ep, tenant_ep = _embedded(self.store_host.client, s.s3_bucket, s.s3_port, start)
        # The embedded store takes any credentials; use the ones it was set up with.
        for attr, endpoint in (("_s3_host", host_ep), ("_s3_tenant", tenant_ep)):
            setattr(
                self,
                attr,
                S3Target(endpoint, s.s3_bucket, REGION, ACCESS_KEY_ID, SECRET_ACCESS_KEY),
            )

    def close(self) -> None:
        for h in self.hosts:
            h.close()


def _embedded(client: Any, bucket: str, port: int, start: bool) -> tuple[str, str]:
    """(host endpoint, tenant endpoint) of the embedded store."""
    from fleet.storage.embedded import ensure_object_store, object_store_status

    if start:
        store = ensure_object_store(client, bucket=bucket, port=port)
        return store.host_endpoint, store.tenant_endpoint
    status = object_store_status(client)
    if status is None or not status.running or not status.host_endpoint:
        raise ObjectStoreError(
            "the embedded object store is not running", "`fleet s3 up` starts it"
        )
    return status.host_endpoint, status.tenant_endpoint or status.host_endpoint
