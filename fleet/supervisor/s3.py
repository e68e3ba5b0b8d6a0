"""Object storage as the tenant container (and the fleet) talk to it: one settings type, a
SigV4 signer and a minimal path-style HTTP/1.1 client, enough for small JSON objects.

Standard library only, and not even all of it: the lease keeper idles in every tenant
container, where a boto3 client would cost ~39 MB RSS. hashlib/hmac/http.client/ssl would
load OpenSSL and the email package: the keeper idles at ~11 MB RSS instead of ~20 MB
(measured in the tenant image). Hence SHA-256 from CPython's built-in module, HMAC written
out, and raw sockets; ssl is imported only for an https endpoint.
"""

from __future__ import annotations

import _thread
import datetime as _dt
import socket
import time
import urllib.parse

from .layout import (
    DEFAULT_REGION,
    ENV_S3_ACCESS_KEY_ID,
    ENV_S3_BUCKET,
    ENV_S3_ENDPOINT,
    ENV_S3_REGION,
    ENV_S3_SECRET_ACCESS_KEY,
)

HTTP_TIMEOUT_S = 3.0  # the whole request, connect to last byte (a deadline, not per read)


class S3Settings:
    """Where a tenant's backup and lease live, and the key to them: the one S3 settings type
    of the fleet and the container. ``repr`` never shows the secret.

    A plain class with slots (no dataclass): dataclasses imports inspect, ~3 MB RSS in the
    keeper."""

    __slots__ = ("access_key_id", "bucket", "endpoint", "region", "secret_access_key")

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        region: str,
        access_key_id: str,
        secret_access_key: str,
    ) -> None:
        self.endpoint = endpoint  # http(s)://host[:port]
        self.bucket = bucket
        self.region = region
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key

    def _key(self) -> tuple[str, str, str, str, str]:
        return (
            self.endpoint,
            self.bucket,
            self.region,
            self.access_key_id,
            self.secret_access_key,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, S3Settings) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"S3Settings({self.endpoint!r}, bucket={self.bucket!r}, region={self.region!r})"

    def with_endpoint(self, endpoint: str) -> S3Settings:
        return S3Settings(
            endpoint, self.bucket, self.region, self.access_key_id, self.secret_access_key
        )

    @classmethod
    def from_env(cls, env: dict[str, str]) -> S3Settings:
        """From a tenant container's environment; KeyError names a missing variable."""
        return cls(
            endpoint=env[ENV_S3_ENDPOINT],
            bucket=env[ENV_S3_BUCKET],
            region=env.get(ENV_S3_REGION) or DEFAULT_REGION,
            access_key_id=env.get(ENV_S3_ACCESS_KEY_ID, ""),
            secret_access_key=env.get(ENV_S3_SECRET_ACCESS_KEY, ""),
        )


class S3Failure(Exception):
    """Object storage did not answer, or answered with an unexpected status."""


try:  # CPython's built-in SHA-256 (no OpenSSL); the module is _sha2 from 3.12
    from _sha256 import sha256 as _sha256_new  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - other Pythons
    try:
        from _sha2 import sha256 as _sha256_new  # type: ignore[import-not-found,no-redef,unused-ignore]
    except ImportError:
        from hashlib import sha256 as _sha256_new  # type: ignore[assignment,unused-ignore]


def _sha256(data: bytes) -> str:
    return str(_sha256_new(data).hexdigest())


def _hmac_sha256(key: bytes, msg: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104), written out so the hmac module (OpenSSL) is not loaded."""
    if len(key) > 64:
        key = bytes(_sha256_new(key).digest())
    key = key.ljust(64, b"\0")
    inner = _sha256_new(bytes(k ^ 0x36 for k in key) + msg).digest()
    return bytes(_sha256_new(bytes(k ^ 0x5C for k in key) + inner).digest())


def _hmac(key: bytes, msg: str) -> bytes:
    return _hmac_sha256(key, msg.encode())


def sign_v4(
    s3: S3Settings,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    now: _dt.datetime,
) -> dict[str, str]:
    """AWS Signature Version 4 headers for a path-style S3 request without a query string.

    Signs host, x-amz-content-sha256, x-amz-date and any x-amz-*/if-* headers given.
    """
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    host = urllib.parse.urlsplit(s3.endpoint).netloc
    signed = {k.lower(): v.strip() for k, v in headers.items()}
    signed.update({"host": host, "x-amz-content-sha256": _sha256(body), "x-amz-date": amz_date})
    names = sorted(signed)
    canonical = "\n".join(
        [
            method,
            urllib.parse.quote(path, safe="/-_.~"),
            "",
            "".join(f"{k}:{signed[k]}\n" for k in names),
            ";".join(names),
            signed["x-amz-content-sha256"],
        ]
    )
    scope = f"{day}/{s3.region}/s3/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{_sha256(canonical.encode())}"
    key = _hmac(("AWS4" + s3.secret_access_key).encode(), day)
    for part in (s3.region, "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = _hmac(key, to_sign).hex()
    out = {k: v for k, v in signed.items() if k != "host"}
    out["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={s3.access_key_id}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return out


def request(
    s3: S3Settings,
    method: str,
    key: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    timeout: float = HTTP_TIMEOUT_S,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request on a fresh connection (Connection: close); (status, headers, body).
    ``timeout`` bounds the whole request, DNS lookup and connect to last byte."""
    status, hdrs, payload, _ = timed_request(s3, method, key, body, headers, timeout)
    return status, hdrs, payload


def timed_request(
    s3: S3Settings,
    method: str,
    key: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    timeout: float = HTTP_TIMEOUT_S,
) -> tuple[int, dict[str, str], bytes, float]:
    """``request``, and the moment (``time.monotonic()``) its first byte was sent: the store
    cannot have acted on it before then, which is what the lease's deadlines count from."""
    url = urllib.parse.urlsplit(s3.endpoint)
    path = f"{url.path.rstrip('/')}/{s3.bucket}/{key}"
    hdrs = sign_v4(s3, method, path, headers or {}, body, _dt.datetime.now(_dt.UTC))
    hdrs.update({"host": url.netloc, "content-length": str(len(body)), "connection": "close"})
    head = f"{method} {urllib.parse.quote(path, safe='/-_.~')} HTTP/1.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    try:
        data, sent_at = _exchange(url, head.encode() + body, timeout)
    except OSError as exc:
        raise S3Failure(f"{method} {key}: {type(exc).__name__}: {exc}") from None
    status, out, payload = _parse_response(data, method, key)
    return status, out, payload, sent_at


def _exchange(url: urllib.parse.SplitResult, message: bytes, timeout: float) -> tuple[bytes, float]:
    https = url.scheme == "https"
    port = url.port or (443 if https else 80)
    deadline = time.monotonic() + timeout
    family, address = _resolve(url.hostname or "", port, deadline)
    with socket.socket(family, socket.SOCK_STREAM) as raw:
        raw.settimeout(_left(deadline, timeout))
        raw.connect(address)
        sock = raw
        if https:  # only then pay for OpenSSL
            import ssl

            sock = ssl.create_default_context().wrap_socket(raw, server_hostname=url.hostname)
        sent_at = time.monotonic()
        sock.sendall(message)
        chunks: list[bytes] = []
        while True:
            # A server that trickles its answer must not stretch a request past the
            # deadline: the keeper's fencing arithmetic relies on it.
            sock.settimeout(_left(deadline, timeout))
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks), sent_at
            chunks.append(chunk)


def _left(deadline: float, timeout: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(f"no complete answer within {timeout:g} s")
    return left


def _resolve(host: str, port: int, deadline: float) -> tuple[int, tuple[str, int]]:
    """(address family, socket address) of ``host``, within the request's deadline.

    ``getaddrinfo`` blocks as long as the resolver likes (5 s per server and attempt) and no
    socket timeout bounds it, so it runs in a thread this one waits for until the deadline
    (an IP literal, what tenants are usually given, needs no lookup)."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family, (host, port)
    answer: list[object] = []
    done = _thread.allocate_lock()
    done.acquire()

    def lookup() -> None:
        try:
            answer.append(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
        except OSError as exc:
            answer.append(exc)
        finally:
            done.release()

    _thread.start_new_thread(lookup, ())
    if not done.acquire(timeout=max(0.0, deadline - time.monotonic())):
        raise TimeoutError(f"DNS lookup of {host} did not answer in time")
    found = answer[0]
    if isinstance(found, OSError):
        raise found
    assert isinstance(found, list) and found
    family, _, _, _, address = found[0]
    return family, (str(address[0]), int(address[1]))


def _parse_response(data: bytes, method: str, key: str) -> tuple[int, dict[str, str], bytes]:
    head, sep, payload = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise S3Failure(f"{method} {key}: malformed response") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        payload = _dechunk(payload)
    elif "content-length" in headers:
        payload = payload[: int(headers["content-length"])]
    if not sep:
        raise S3Failure(f"{method} {key}: truncated response")
    return status, headers, payload


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)
