"""The embedded object store: moto's S3 and IAM server with every request authenticated.

moto checks signatures and IAM policies only after INITIAL_NO_AUTH_ACTION_COUNT requests; it
is 0 here, so no request is ever anonymous. The one key that works at first is the fleet's
admin key, installed in-process before the server listens: its id and secret come from
LITEFLEET_S3_ADMIN_KEY_ID / LITEFLEET_S3_ADMIN_SECRET (set by the fleet when it creates this
container, read back from the engine, never printed) and are removed from the environment
here. The fleet then creates each tenant's user and key through the IAM API.

Tenants reach this server, so two of moto's gaps are closed in front of it (and a request
without any credential is answered 403, where moto would fail with a 500):
- its control API (/moto-api/: reset every backend, switch authentication off, dump every
  secret as JSON) needs no credentials: refused;
- it does not check read permission on the source of a copy (CopyObject, UploadPartCopy:
  a tenant could copy another tenant's object into its own prefix and read it there): copies
  are refused to every key but the admin's (tenants never copy; the fleet's archive does).
moto also ignores ``s3:prefix`` conditions on ListBucket: a tenant key can list the names
(never the contents) of other tenants' objects. That one stays (the README says so).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any

os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"  # read by moto.settings at import

from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.iam.models import iam_backends
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

ADMIN_USER = "litefleet-admin"
ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
ENV_KEY_ID = "LITEFLEET_S3_ADMIN_KEY_ID"
ENV_SECRET = "LITEFLEET_S3_ADMIN_SECRET"

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
_QUERY_CREDENTIAL = re.compile(r"(?:^|&)X-Amz-Credential=([^%/&]+)")
DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message></Error>"
)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def install_admin(key_id: str, secret: str) -> None:
    """The admin user with its all-allowing policy and the given key (moto makes random
    keys; the fleet must know this one without reading it from the server)."""
    iam = iam_backends[DEFAULT_ACCOUNT_ID]["aws"]
    iam.create_user("us-east-1", ADMIN_USER, path="/litefleet/")
    iam.put_user_policy(ADMIN_USER, "admin", json.dumps(ADMIN_POLICY))
    key = iam.create_access_key(ADMIN_USER)
    del iam.access_keys[key.physical_resource_id]
    key.access_key_id, key.secret_access_key = key_id, secret
    iam.access_keys[key.physical_resource_id] = key


def request_key_id(environ: dict[str, Any]) -> str:
    """The access key a request names (header or presigned query); "" when none."""
    m = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    m = m or _QUERY_CREDENTIAL.search(environ.get("QUERY_STRING", ""))
    return m.group(1) if m else ""


def refused(environ: dict[str, Any], admin_key_id: str) -> bool:
    if environ.get("PATH_INFO", "").lstrip("/").startswith("moto-api"):
        return True
    key = request_key_id(environ)
    if not key:  # moto answers an unsigned request with a 500 (its check fails): say 403
        return True
    return "HTTP_X_AMZ_COPY_SOURCE" in environ and key != admin_key_id


def guarded(app: WSGIApp, admin_key_id: str) -> WSGIApp:
    """``app`` behind the two refusals above (moto checks the signature afterwards)."""

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if refused(environ, admin_key_id):
            start_response("403 Forbidden", [("Content-Type", "application/xml")])
            return [DENIED]
        return app(environ, start_response)

    return serve


def main() -> int:
    """``serve.py [PORT [HOST]]``."""
    admin_id, secret = os.environ.pop(ENV_KEY_ID, ""), os.environ.pop(ENV_SECRET, "")
    if not admin_id or not secret:
        sys.stderr.write(f"litefleet-s3: {ENV_KEY_ID} and {ENV_SECRET} must be set\n")
        return 64
    install_admin(admin_id, secret)
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    host = sys.argv[2] if len(sys.argv) > 2 else "0.0.0.0"  # in its container: every address
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        host, port, guarded(app, admin_id), threaded=True, request_handler=MotoRequestHandler
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
