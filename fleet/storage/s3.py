"""The boto3 client factory of the host side, for the one S3 settings type
(fleet.supervisor.s3.S3Settings, which the tenant container uses too): S3, and the IAM API
that per-tenant keys are made with (fleet/storage/credentials.py).
"""

from __future__ import annotations

import threading
from typing import Any

from fleet.supervisor.s3 import S3Settings

__all__ = ["S3Settings", "client", "iam_client", "shared_client"]


def client(s3: S3Settings, *, connect_timeout: float = 5, read_timeout: float = 30) -> Any:
    """boto3 S3 client for ``s3``, independent of the caller's AWS_* environment."""
    return _client("s3", s3, s3.endpoint, connect_timeout, read_timeout)


def iam_client(s3: S3Settings, endpoint: str | None) -> Any:
    """boto3 IAM client with ``s3``'s key: at ``endpoint`` (moto serves IAM beside S3), or
    AWS IAM's own endpoint when None."""
    return _client("iam", s3, endpoint, 5, 30)


def _client(
    service: str, s3: S3Settings, endpoint: str | None, connect_timeout: float, read_timeout: float
) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=s3.access_key_id,
        aws_secret_access_key=s3.secret_access_key,
        region_name=s3.region,
    )
    return session.client(
        service,
        endpoint_url=endpoint,
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
