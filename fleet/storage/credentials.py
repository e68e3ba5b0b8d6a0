"""Per-tenant object-store keys (FLEET_S3_CREDENTIALS=iam): the fleet's admin key stays on the
host, and each tenant holds a key that reaches its own backup and lease only.

Each tenant is an IAM user of its own (``names.tenant_user``: under the path /litefleet/,
unique per bucket and tenant, so it is found again from the two names) with one inline policy,
``policy(bucket, tenant)``: objects under ``tenants/<t>/`` and the object ``leases/<t>.json``,
and listing the bucket with a prefix inside ``tenants/<t>/`` (what Litestream does). Nothing
else: not ``manifests/``, not ``archive/``, no other tenant, no bucket settings, no IAM.

It holds exactly one access key. ``issue`` makes a new one and deletes the others every time a
container of the tenant is created (`fleet up`, restore, migrate and every other path,
through ``ObjectStorage.for_tenant``); ``revoke`` deletes keys, policy and user on `fleet rm
--purge`.

Where the key lives between runs: in the environment the tenant's container was created with
(LITESTREAM_ACCESS_KEY_ID / LITESTREAM_SECRET_ACCESS_KEY), as its API token does, so a stopped
tenant starts with it again. The supervisor hands it to Litestream and the lease keeper only,
never to the runtime; `docker inspect` shows it to whoever holds the Docker socket, who can
read the fleet's own admin key anyway. It is never printed, logged or put on a command line
(it travels in API request bodies only). A tenant created anew elsewhere (restore on another
host, migrate) gets a new key and the old one stops working: a stale copy of the tenant that
comes back cannot write to the bucket.

Reading another tenant's backup (`fleet fork SRC NEW` restores SRC's replica into NEW's new
volume) takes a key of a throwaway user (``lfread-<random>``) whose policy,
``read_policy``, allows getting and listing SRC's replica only: no write, no lease. It lives
for that one-off job and is deleted right after (``reader``), so neither NEW nor the job ever
holds SRC's write key.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

from fleet.core.errors import ObjectStoreError
from fleet.core.log import log
from fleet.core.names import (
    TENANT_POLICY,
    TENANT_USER_PATH,
    backup_prefix,
    lease_key,
    tenant_user,
)
from fleet.supervisor import lease
from fleet.supervisor.s3 import S3Failure, S3Settings, request

from .s3 import iam_client

KEY_USABLE_WAIT_S = 30.0  # AWS IAM: a new key works everywhere within seconds
SETUP_HINT = (
    "give the fleet's key IAM rights on users under /litefleet/ (README: per-tenant keys), "
    "or set FLEET_S3_CREDENTIALS=shared"
)
_REPLICA_ACTIONS = [
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
]


def policy(bucket: str, tenant: str) -> dict[str, Any]:
    """The tenant's whole permission: its replica, its lease, listing inside its replica."""
    prefix = backup_prefix(tenant)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReplicaAndLease",
                "Effect": "Allow",
                "Action": _REPLICA_ACTIONS,
                "Resource": [
                    f"arn:aws:s3:::{bucket}/{prefix}*",
                    f"arn:aws:s3:::{bucket}/{lease_key(tenant)}",
                ],
            },
            {
                "Sid": "ListReplica",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": f"arn:aws:s3:::{bucket}",
                "Condition": {"StringLike": {"s3:prefix": [prefix, f"{prefix}*"]}},
            },
        ],
    }


def read_policy(bucket: str, tenant: str) -> dict[str, Any]:
    """Read-only on the tenant's replica: what `litestream restore` of it needs."""
    prefix = backup_prefix(tenant)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadReplica",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/{prefix}*",
            },
            {
                "Sid": "ListReplica",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": f"arn:aws:s3:::{bucket}",
                "Condition": {"StringLike": {"s3:prefix": [prefix, f"{prefix}*"]}},
            },
        ],
    }


class TenantKeys:
    """Tenants' users and keys, made with the fleet's admin key through the store's IAM API
    (``endpoint``; None: AWS IAM)."""

    def __init__(self, admin: S3Settings, endpoint: str | None) -> None:
        self.bucket = admin.bucket
        self.where = endpoint or "AWS IAM"
        self.iam = iam_client(admin, endpoint)

    def issue(self, tenant: str) -> tuple[str, str]:
        """A new key of the tenant (its user and policy made or refreshed first, its other
        keys deleted): (access key id, secret)."""
        user = tenant_user(self.bucket, tenant)
        key = self._issue(user, policy(self.bucket, tenant), f"tenant {tenant!r}")
        log.info("issued a key of its own", tenant=tenant, user=user)
        return key

    @contextlib.contextmanager
    def reader(self, fleet: S3Settings, tenant: str) -> Iterator[tuple[str, str]]:
        """A key that reads the tenant's replica only, for the ``with`` block: made, checked
        on the store (``fleet``: where this machine reaches it), and deleted on leaving."""
        user = f"lfread-{secrets.token_hex(6)}"
        try:
            key = self._issue(user, read_policy(self.bucket, tenant), f"reading {tenant!r}")
            wait_readable(S3Settings(fleet.endpoint, fleet.bucket, fleet.region, *key), tenant)
            log.info("issued a read-only key on a backup", tenant=tenant, user=user)
            yield key
        finally:
            self._delete_user(user, f"reading {tenant!r}")

    def revoke(self, tenant: str) -> bool:
        """Delete the tenant's keys, policy and user; False when it had none."""
        return self._delete_user(tenant_user(self.bucket, tenant), f"tenant {tenant!r}")

    def unavailable(self) -> str | None:
        """Why the IAM API cannot be used (one line), or None when it answers."""
        import botocore.exceptions

        try:
            self.iam.list_users(PathPrefix=TENANT_USER_PATH, MaxItems=1)
        except botocore.exceptions.ClientError as exc:
            return f"the IAM API at {self.where} refused: {_code(exc)}"
        except botocore.exceptions.BotoCoreError as exc:
            return f"the IAM API at {self.where} does not answer ({type(exc).__name__})"
        return None

    def probe(self, fleet: S3Settings) -> None:
        """Make a throwaway user, policy and key (under names no tenant can have), check the
        key works on the store (``fleet``: where this machine reaches it), delete them all.
        ObjectStoreError when any of it fails (`fleet doctor`)."""
        user = f"lfprobe-{secrets.token_hex(6)}"
        scope = f"probe-{secrets.token_hex(4)}"
        try:
            key_id, secret = self._issue(user, policy(self.bucket, scope), "a probe")
            s3 = S3Settings(fleet.endpoint, fleet.bucket, fleet.region, key_id, secret)
            wait_usable(s3, scope)
        finally:
            self._delete_user(user, "a probe")

    def _issue(self, user: str, document: dict[str, Any], whose: str) -> tuple[str, str]:
        import botocore.exceptions

        try:
            with contextlib.suppress(self.iam.exceptions.EntityAlreadyExistsException):
                self.iam.create_user(UserName=user, Path=TENANT_USER_PATH)
            self.iam.put_user_policy(
                UserName=user, PolicyName=TENANT_POLICY, PolicyDocument=json.dumps(document)
            )
            self._delete_keys(user)
            made = self.iam.create_access_key(UserName=user)["AccessKey"]
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise ObjectStoreError(
                f"cannot make a key for {whose} through the IAM API at {self.where}: {_code(exc)}",
                SETUP_HINT,
            ) from None
        return str(made["AccessKeyId"]), str(made["SecretAccessKey"])

    def _delete_user(self, user: str, whose: str) -> bool:
        import botocore.exceptions

        try:
            self._delete_keys(user)
            for name in self.iam.list_user_policies(UserName=user).get("PolicyNames", []):
                self.iam.delete_user_policy(UserName=user, PolicyName=name)
            self.iam.delete_user(UserName=user)
        except self.iam.exceptions.NoSuchEntityException:
            return False
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise ObjectStoreError(
                f"cannot delete the key of {whose} through the IAM API at {self.where}: "
                f"{_code(exc)}",
                SETUP_HINT,
            ) from None
        return True

    def _delete_keys(self, user: str) -> None:
        for key in self.iam.list_access_keys(UserName=user).get("AccessKeyMetadata", []):
            self.iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])


def accepted(fleet: S3Settings, key: S3Settings, tenant: str) -> bool:
    """Whether the store (where ``fleet`` reaches it) takes ``key``'s credentials for the
    tenant's lease; False on 403 (deleted, replaced, or never known to this store)."""
    own = S3Settings(
        fleet.endpoint, fleet.bucket, fleet.region, key.access_key_id, key.secret_access_key
    )
    try:
        status, _, _ = request(own, "GET", lease_key(tenant))
    except S3Failure as exc:
        raise ObjectStoreError(f"cannot check the key of tenant {tenant!r}: {exc}") from None
    return status != 403


def wait_usable(s3: S3Settings, tenant: str, timeout: float = KEY_USABLE_WAIT_S) -> None:
    """Wait until the store accepts the tenant's new key on its lease (AWS spreads a new key
    within seconds; moto at once). ObjectStoreError when it never does: then the policy does
    not let the tenant at its own lease, and its container could not start."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            lease.read(s3, tenant)
            return
        except S3Failure as exc:
            if time.monotonic() >= deadline:
                raise ObjectStoreError(
                    f"the object store does not accept the key made for {tenant!r} on its "
                    f"lease after {timeout:g}s: {exc}",
                    SETUP_HINT,
                ) from None
        time.sleep(0.5)


def wait_readable(s3: S3Settings, tenant: str, timeout: float = KEY_USABLE_WAIT_S) -> None:
    """Wait until the store lets ``s3``'s key list the tenant's replica (as wait_usable)."""
    import botocore.exceptions

    from .s3 import client

    s3c = client(s3)  # one client for every attempt: making one costs ~30 ms of CPU
    deadline = time.monotonic() + timeout
    while True:
        try:
            s3c.list_objects_v2(Bucket=s3.bucket, Prefix=backup_prefix(tenant), MaxKeys=1)
            return
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            if time.monotonic() >= deadline:
                raise ObjectStoreError(
                    f"the object store does not accept the read-only key made for {tenant!r}'s "
                    f"backup after {timeout:g}s: {_code(exc)}",
                    SETUP_HINT,
                ) from None
        time.sleep(0.5)


def _code(exc: Any) -> str:
    """The error code IAM answered, or what kept it from answering."""
    response = getattr(exc, "response", None)
    if response is None:
        return f"no answer ({type(exc).__name__})"
    return str(response.get("Error", {}).get("Code", "error"))
