"""Does an object store honour conditional writes? The lease (lease.py) relies on it: a store
that ignores ``If-None-Match`` / ``If-Match`` lets two contenders both "win" the lease, and two
writers corrupt a backup. Checked by the fleet before a tenant is created on a store, and by
the keeper before its first acquire.

The check writes a scratch object (never the lease: on a store that ignores the headers the
probe itself would overwrite it) twice, so that it has a current and a stale ETag, then:
- PUT with ``If-None-Match: *`` on the existing object must be refused,
- PUT with ``If-Match: <the stale ETag>`` must be refused,
with 412 (409, "conflicting conditional operation", counts as refused too: the lease treats
both alike). The scratch object is deleted afterwards.
"""

from __future__ import annotations

import os

from .s3 import S3Failure, S3Settings, request

REFUSED = (409, 412)


def problem(s3: S3Settings, key: str) -> str | None:
    """None when the store refused both conditional writes on ``key``, else what it did (one
    line). S3Failure when it could not be asked (unreachable, no bucket, access denied)."""
    stale = _put(s3, key)
    fresh = _put(s3, key)
    try:
        if not stale or stale == fresh:
            return f"{_where(s3)} does not honour conditional writes: it gives no usable ETag"
        status = _put_status(s3, key, {"if-none-match": "*"})
        if status not in REFUSED:
            return (
                f"{_where(s3)} does not honour conditional writes: a PUT with "
                f"If-None-Match: * on an existing object answered {status}, not 412"
            )
        status = _put_status(s3, key, {"if-match": stale})
        if status not in REFUSED:
            return (
                f"{_where(s3)} does not honour conditional writes: a PUT with a stale "
                f"If-Match answered {status}, not 412"
            )
        return None
    finally:
        request(s3, "DELETE", key)


def _where(s3: S3Settings) -> str:
    return f"the object store at {s3.endpoint} (bucket {s3.bucket})"


def _put_status(s3: S3Settings, key: str, headers: dict[str, str]) -> int:
    status, _, _ = request(s3, "PUT", key, os.urandom(16).hex().encode(), headers)
    return status


def _put(s3: S3Settings, key: str) -> str:
    """A fresh body on ``key`` (unconditional); its ETag."""
    status, got, _ = request(s3, "PUT", key, os.urandom(16).hex().encode())
    if status == 404:
        raise S3Failure(f"bucket {s3.bucket!r} does not exist at {s3.endpoint}")
    if status == 403:
        raise S3Failure(f"PUT {key}: access denied (HTTP 403) at {s3.endpoint}")
    if status != 200:
        raise S3Failure(f"PUT {key}: HTTP {status}")
    return got.get("etag", "")
