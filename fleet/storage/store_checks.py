"""What `fleet doctor` asks the object store beyond the checks every tenant creation makes
(preflight.py): the bucket exists, and this host's clock offset from the store's ``Date``
header (a lease expires by the clocks of the hosts that hold it)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from fleet.supervisor.s3 import S3Settings

from .s3 import client


@dataclass(frozen=True)
class StoreFacts:
    bucket_exists: bool
    clock_offset_s: float | None  # this host minus the store; None: no Date header


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _offset(response: dict[str, Any], sent: float, received: float) -> float | None:
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if not date:
        return None
    # The header has whole seconds (truncated): compare the middle of the request with the
    # middle of the second it names.
    return (sent + received) / 2 - (parsedate_to_datetime(date).timestamp() + 0.5)


def store_facts(s3: S3Settings) -> StoreFacts:
    """Ask the store; its errors (unreachable, refused) propagate for the caller to report."""
    s3c = client(s3, read_timeout=10)
    sent = time.time()
    try:
        head = s3c.head_bucket(Bucket=s3.bucket)
    except Exception as exc:
        if _error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise
        listing = s3c.list_buckets()  # any signed answer carries the Date header
        return StoreFacts(False, _offset(listing, sent, time.time()))
    offset = _offset(head, sent, time.time())
    return StoreFacts(True, offset)
