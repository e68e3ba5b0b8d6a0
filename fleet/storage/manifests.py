"""The fleet's record of a tenant in object storage: ``manifests/<t>.json``.

Written and read only with the fleet's own key, under a prefix no tenant key can reach
(a per-tenant key allows ``tenants/<t>/*`` and ``leases/<t>.json``): a tenant cannot change
its own image, limits or egress by editing it. Several parts of the fleet keep fields in it
(parking, operations in progress, ...), so every change is a read-modify-write guarded by
the object's ETag (``If-Match``, or ``If-None-Match: *`` for a new one): two writers never
lose each other's change, the loser reads again.

Secrets kept here (a parked tenant's API token, a database password) are stored as they
are, inside the object, encrypted at rest by the store (``ServerSideEncryption``): whoever
holds the fleet's key can read them, and can read every tenant's whole database anyway.

Listing (``list_all``, what `fleet ls` shows of parked tenants) is one LIST of
``manifests/`` and one GET of an index, ``fleet/manifests-index.json``: every manifest as it
was last read, without its secrets, with its ETag. Only manifests whose ETag the LIST shows
changed are read again (in parallel), and the index is then written back (conditionally; a
lost race only means the next listing reads those again). The manifests stay the truth;
the index is a cache that checks itself. 1,000 GETs took ~6 s on the embedded store.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fleet.core import names
from fleet.core.errors import ObjectStoreError
from fleet.supervisor.s3 import S3Settings

from .s3 import shared_client as s3_client

_RETRIES = 8
_LIST_PARALLEL = 32


class ManifestConflict(ObjectStoreError):
    """Someone else changed the object since it was read."""


@dataclass
class Manifest:
    tenant: str
    doc: dict[str, Any] = field(default_factory=dict)
    etag: str | None = None  # None: not stored

    @property
    def state(self) -> str | None:
        state = self.doc.get("state")
        return state if isinstance(state, str) else None

    @property
    def exists(self) -> bool:
        return self.etag is not None


def read_json(s3: S3Settings, key: str, client: Any = None) -> tuple[dict[str, Any], str | None]:
    """(the object as a dict, its ETag); ({}, None) when there is none."""
    import botocore.exceptions

    client = client or s3_client(s3)
    try:
        obj = client.get_object(Bucket=s3.bucket, Key=key)
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return {}, None
        raise
    try:
        doc = json.loads(obj["Body"].read())
    except ValueError:
        raise ObjectStoreError(f"{key} in bucket {s3.bucket!r} is not JSON") from None
    return (doc if isinstance(doc, dict) else {}), str(obj["ETag"])


def write_json(
    s3: S3Settings, key: str, doc: dict[str, Any], etag: str | None, client: Any = None
) -> str:
    """Store ``doc`` only if the object is still at ``etag`` (None: only if absent); returns
    the new ETag, ManifestConflict otherwise."""
    import botocore.exceptions

    client = client or s3_client(s3)
    cond = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    try:
        out = client.put_object(
            Bucket=s3.bucket,
            Key=key,
            Body=json.dumps(doc, sort_keys=True).encode(),
            ContentType="application/json",
            ServerSideEncryption="AES256",
            **cond,
        )
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
            raise ManifestConflict(f"{key} changed while it was being written") from None
        raise
    return str(out["ETag"])


def delete_json(s3: S3Settings, key: str, client: Any = None) -> None:
    client = client or s3_client(s3)
    client.delete_object(Bucket=s3.bucket, Key=key)


def read(s3: S3Settings, tenant: str, client: Any = None) -> Manifest:
    doc, etag = read_json(s3, names.manifest_key(tenant), client)
    return Manifest(tenant, doc, etag)


def update(
    s3: S3Settings,
    tenant: str,
    change: Callable[[dict[str, Any]], dict[str, Any] | None],
    client: Any = None,
) -> Manifest:
    """Apply ``change`` to the current document and store it (an empty result deletes the
    object); read again and retry when someone else wrote in between. ``change`` may raise
    to give up (nothing is written)."""
    client = client or s3_client(s3)
    key = names.manifest_key(tenant)
    for attempt in range(_RETRIES):
        doc, etag = read_json(s3, key, client)
        new = change(dict(doc))
        if new is None:  # nothing to change
            return Manifest(tenant, doc, etag)
        try:
            if not new:
                if etag is not None:
                    delete_json(s3, key, client)
                return Manifest(tenant)
            return Manifest(tenant, new, write_json(s3, key, new, etag, client))
        except ManifestConflict:
            time.sleep(0.02 * (attempt + 1))
    raise ManifestConflict(f"the manifest of {tenant!r} keeps changing; try again")


def etags(s3: S3Settings, client: Any = None) -> dict[str, str]:
    """Every tenant that has a manifest, with its ETag: one LIST per 1,000 keys."""
    client = client or s3_client(s3)
    found: dict[str, str] = {}
    paginator = client.get_paginator("list_objects_v2")
    pages = paginator.paginate(Bucket=s3.bucket, Prefix=names.MANIFEST_PREFIX, Delimiter="/")
    for page in pages:
        for obj in page.get("Contents", []):
            name = obj["Key"][len(names.MANIFEST_PREFIX) :].removesuffix(".json")
            if names.valid_tenant(name):
                found[name] = str(obj.get("ETag", ""))
    return found


def list_all(s3: S3Settings, client: Any = None) -> list[Manifest]:
    """Every tenant's manifest, without secrets (see the module's docstring)."""
    client = client or s3_client(s3)
    current = etags(s3, client)
    index, index_etag = read_json(s3, names.MANIFEST_INDEX_KEY, client)
    known = {
        n: Manifest(n, e["doc"], e["etag"])
        for n, e in index.items()
        if isinstance(e, dict) and current.get(n) == e.get("etag") and "doc" in e
    }
    stale = [n for n in current if n not in known]
    if stale:
        with ThreadPoolExecutor(max_workers=min(_LIST_PARALLEL, len(stale))) as pool:
            for m in pool.map(lambda t: read(s3, t, client), stale):
                if m.exists:
                    known[m.tenant] = Manifest(m.tenant, _without_secrets(m.doc), m.etag)
    if stale or len(index) != len(known):
        doc = {n: {"etag": m.etag, "doc": m.doc} for n, m in sorted(known.items())}
        with contextlib.suppress(ManifestConflict):  # then the next listing reads them again
            write_json(s3, names.MANIFEST_INDEX_KEY, doc, index_etag, client)
    return [known[n] for n in sorted(known)]


def _without_secrets(doc: dict[str, Any]) -> dict[str, Any]:
    """A manifest for the index: every ``secrets`` object (at any depth) left out."""
    return {
        k: _without_secrets(v) if isinstance(v, dict) else v
        for k, v in doc.items()
        if k != "secrets"
    }
