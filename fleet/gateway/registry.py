"""One gateway per fleet: its record ``fleet/gateway.json`` in the bucket (the fleet's key
only), taken with a conditional write and renewed every few seconds. A second gateway finds
a fresh record and refuses to start; a gateway that died leaves a record that goes stale
after ``GATEWAY_LEASE_S``, and the next one takes it over."""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass

from fleet.core import names
from fleet.core.errors import FleetError
from fleet.storage.manifests import ManifestConflict, delete_json, read_json, write_json
from fleet.supervisor.s3 import S3Settings


class GatewayRunning(FleetError):
    exit_code = 2


@dataclass
class Registration:
    s3: S3Settings
    url: str
    id: str
    etag: str

    def doc(self) -> dict[str, object]:
        return {
            "id": self.id,
            "url": self.url,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "renewed_at": time.time(),
        }


def register(s3: S3Settings, url: str) -> Registration:
    doc, etag = read_json(s3, names.GATEWAY_KEY)
    renewed = doc.get("renewed_at")
    if etag and isinstance(renewed, int | float) and time.time() - renewed < names.GATEWAY_LEASE_S:
        raise GatewayRunning(
            f"a gateway already serves this fleet at {doc.get('url')} "
            f"(pid {doc.get('pid')} on {doc.get('host')})",
            "one gateway per fleet: stop that one first",
        )
    reg = Registration(s3, url, uuid.uuid4().hex, "")
    try:
        reg.etag = write_json(s3, names.GATEWAY_KEY, reg.doc(), etag)
    except ManifestConflict:
        raise GatewayRunning("another gateway started at the same moment") from None
    return reg


def renew(reg: Registration) -> None:
    """ManifestConflict when another gateway took the record over."""
    reg.etag = write_json(reg.s3, names.GATEWAY_KEY, reg.doc(), reg.etag)


def unregister(reg: Registration) -> None:
    doc, _ = read_json(reg.s3, names.GATEWAY_KEY)
    if doc.get("id") == reg.id:
        delete_json(reg.s3, names.GATEWAY_KEY)


def current(s3: S3Settings) -> str | None:
    """The URL of the fleet's live gateway, if one runs."""
    doc, _ = read_json(s3, names.GATEWAY_KEY)
    renewed = doc.get("renewed_at")
    if isinstance(renewed, int | float) and time.time() - renewed < names.GATEWAY_LEASE_S:
        url = doc.get("url")
        return url if isinstance(url, str) else None
    return None
