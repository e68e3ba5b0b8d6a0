"""What the fleet checks about object storage before it creates a tenant on it, each a function
`fleet doctor` can call too: the bucket exists, the store honours conditional writes (the
lease depends on it), per-tenant credentials can be made. Each raises ObjectStoreError (exit
5) with one line naming the store.
"""

from __future__ import annotations

import secrets

from fleet.core.errors import ObjectStoreError
from fleet.core.names import LEASE_PREFIX
from fleet.supervisor import conditional
from fleet.supervisor.s3 import S3Failure, S3Settings

from .credentials import TenantKeys
from .s3 import client as s3_client

CONDITIONAL_HINT = (
    "use a store whose conditional PUTs work (AWS S3, MinIO, Ceph RGW, the embedded store): "
    "without them two hosts could both replicate one tenant"
)


def check_bucket(s3: S3Settings) -> None:
    """ObjectStoreError unless the fleet's key reaches ``s3.bucket`` at ``s3.endpoint``."""
    import botocore.exceptions

    try:
        s3_client(s3).head_bucket(Bucket=s3.bucket)
    except botocore.exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "error"))
        if code in ("404", "NoSuchBucket"):
            raise ObjectStoreError(
                f"bucket {s3.bucket!r} does not exist at {s3.endpoint}",
                "create it, or set FLEET_S3_BUCKET to a bucket that exists",
            ) from None
        raise ObjectStoreError(
            f"the fleet's key cannot reach bucket {s3.bucket!r} at {s3.endpoint} ({code})",
            "check FLEET_S3_ACCESS_KEY_ID / FLEET_S3_SECRET_ACCESS_KEY and the bucket's policy",
        ) from None


def check_conditional_writes(s3: S3Settings) -> None:
    """ObjectStoreError unless the store refuses a PUT with If-None-Match: * on an existing
    object and one with a stale If-Match (on a scratch object under leases/ that no tenant's
    lease can be named: tenant names never start with a dot)."""
    key = f"{LEASE_PREFIX}.conditional-write-check-{secrets.token_hex(6)}"
    try:
        why = conditional.problem(s3, key)
    except S3Failure as exc:
        raise ObjectStoreError(f"cannot check conditional writes: {exc}") from None
    if why is not None:
        raise ObjectStoreError(why, CONDITIONAL_HINT)


def check_tenant_credentials(admin: S3Settings, iam_endpoint: str | None) -> None:
    """ObjectStoreError unless a tenant's user, policy and key can be made through the IAM
    API at ``iam_endpoint`` (None: AWS IAM) and the key works on the store (made, checked and
    deleted again). ``admin``: the fleet's key, where this machine reaches the store."""
    TenantKeys(admin, iam_endpoint).probe(admin)
