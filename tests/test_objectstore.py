"""The embedded object store holds objects of any size a tenant backup needs."""

from __future__ import annotations

import os
from typing import Any

import pytest

pytestmark = pytest.mark.docker


def test_large_objects_round_trip(object_store: Any) -> None:
    from fleet.storage.embedded import client as s3_client

    client = s3_client(object_store)
    body = os.urandom(80 * 1024 * 1024)  # over the store's 64 MB /tmp and moto's 5 MiB spool
    key = "tests/large-object"
    client.put_object(Bucket=object_store.bucket, Key=key, Body=body)
    try:
        got = client.get_object(Bucket=object_store.bucket, Key=key)["Body"].read()
        assert got == body
    finally:
        client.delete_object(Bucket=object_store.bucket, Key=key)
