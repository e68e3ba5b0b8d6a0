"""The one S3 client factory of the host side (boto3), for the one S3 settings type
(fleet.supervisor.s3.S3Settings, which the tenant container uses too).

Per-tenant credentials (an IAM user or role scoped to tenants/<t>/ and leases/<t>.json)
belong beside it: the fleet's own settings stay the key to the whole bucket.
"""

from __future__ import annotations

import threading
from typing import Any

from fleet.supervisor.s3 import S3Settings

__all__ = ["S3Settings", "client", "shared_client"]


def client(s3: S3Settings, *, connect_timeout: float = 5, read_timeout: float = 30) -> Any:
    """boto3 S3 client for ``s3``, independent of the caller's AWS_* environment."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=s3.access_key_id,
        aws_secret_access_key=s3.secret_access_key,
        region_name=s3.region,
    )
    return session.client(
        "s3",
        endpoint_url=s3.endpoint,
        # verify=True wins over AWS_CA_BUNDLE; proxies={} ignores proxy variables.
        verify=True,
        config=Config(
            s3={"addressing_style": "path"},
            proxies={},
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=32,
        ),
    )


_shared: dict[tuple[str, ...], Any] = {}
_shared_lock = threading.Lock()


def shared_client(s3: S3Settings) -> Any:
    """One client per settings for this process: making one costs ~30 ms of CPU, and the
    gateway and bulk commands make thousands of requests (boto3 clients are thread-safe)."""
    key = (s3.endpoint, s3.bucket, s3.region, s3.access_key_id, s3.secret_access_key)
    with _shared_lock:
        found = _shared.get(key)
        if found is None:
            found = _shared[key] = client(s3, read_timeout=10)
        return found
