"""A real S3 HTTP endpoint for tests without Docker: moto's server on a loopback port."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from fleet.supervisor.s3 import S3Settings

from .fleet_support import free_port

MOTO = str(Path(sys.executable).with_name("moto_server"))
STORE_SERVER = Path(__file__).resolve().parents[1] / "images" / "s3" / "serve.py"


def clean_env() -> dict[str, str]:
    """This environment without AWS_* (Litestream 0.5.17 refuses an AWS_CA_BUNDLE)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


@contextlib.contextmanager
def moto_s3(bucket: str, key_id: str = "test", secret: str = "test-secret") -> Iterator[S3Settings]:
    """A moto S3 server on a free loopback port with ``bucket`` created."""
    port = free_port()
    proc = subprocess.Popen(
        [MOTO, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=clean_env(),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with httpx.Client(trust_env=False) as h:
                    h.put(f"{url}/{bucket}").raise_for_status()  # create the bucket
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.2)
        yield S3Settings(url, bucket, "us-east-1", key_id, secret)
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def checked_store(bucket: str) -> Iterator[S3Settings]:
    """The embedded store's own server (images/s3/serve.py: moto with every request's
    credentials checked) on a free loopback port, ``bucket`` made with its admin key; yields
    the admin key's settings."""
    from fleet.storage.embedded import new_admin_key
    from fleet.storage.s3 import client

    port = free_port()
    key_id, secret = new_admin_key()
    env = {**clean_env(), "LITEFLEET_S3_ADMIN_KEY_ID": key_id, "LITEFLEET_S3_ADMIN_SECRET": secret}
    proc = subprocess.Popen(
        [sys.executable, "-I", str(STORE_SERVER), str(port), "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    admin = S3Settings(f"http://127.0.0.1:{port}", bucket, "us-east-1", key_id, secret)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client(admin).create_bucket(Bucket=bucket)
                break
            except Exception:
                assert proc.poll() is None, "the store's server exited"
                assert time.monotonic() < deadline, "the store's server did not start"
                time.sleep(0.2)
        yield admin
    finally:
        proc.terminate()
        proc.wait(10)
