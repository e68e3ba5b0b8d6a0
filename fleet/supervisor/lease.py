"""One writer per tenant: a lease object in object storage, and the keeper that holds it.

Two Litestream processes replicating one tenant to the same path can make its backup
unrestorable, and Litestream has no fence of its own. The fence is ``leases/<tenant>.json`` in
the tenant's bucket (outside ``tenants/<tenant>/``, which belongs to Litestream)::

    {"tenant", "holder": "host/container" | null, "host", "container", "generation",
     "expires_at", "renewed_at", "nonce"}

- Taking it is a conditional write: ``If-None-Match: *`` creates it, ``If-Match: <etag>``
  replaces the version that was read. Two contenders cannot both win (S3 and moto >= 5.2
  answer 412 to the loser). Every write carries a fresh nonce so no two bodies share an ETag.
- A lease is live while ``holder`` is set and ``expires_at`` (wall clock, so hosts need NTP)
  lies ahead. A live lease of another holder is only replaced by a takeover (``revoke``), which
  bumps ``generation`` and clears ``holder``.
- The holder renews every RENEW_S with ``If-Match``; a 412 means it was taken over, and the
  keeper SIGKILLs Litestream at once, without the final sync: a sync after losing the lease
  is what would corrupt the new holder's backup. A holder that cannot renew at all stops the
  same way before its lease runs out (self-fencing), so a new holder never overlaps it.
- On a clean stop the keeper releases the lease after Litestream's final sync.

This module is stdlib-only: it runs inside every tenant container, where a boto3 client would
cost ~39 MB RSS, and on the fleet side. Hence the small SigV4 signer and HTTP/1.1 client
below. They also avoid hashlib/hmac/http.client/ssl, which load OpenSSL and the email package:
the keeper idles at ~11 MB RSS instead of ~20 MB (measured in the tenant image).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import signal
import socket
import sys
import time
import urllib.parse

# Annotations only: typing and dataclasses (inspect) would add ~3 MB to the keeper's RSS.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

PREFIX = "leases/"
TTL_S = 15.0
RENEW_S = 5.0
EXIT_LEASE = 75  # EX_TEMPFAIL: the keeper did not get, or lost, the lease
_FENCE_MARGIN_S = 1.0  # stop replicating at least this long before the lease expires
_HTTP_TIMEOUT_S = 3.0  # the whole request, connect to last byte (a deadline, not per read)


# -- a minimal S3 client (path style), enough for one small JSON object


class S3Conf:
    """Where the lease lives. ``repr`` never shows the secret."""

    __slots__ = ("access_key_id", "bucket", "endpoint", "region", "secret_access_key")

    def __init__(
        self, endpoint: str, bucket: str, region: str, access_key_id: str, secret_access_key: str
    ) -> None:
        self.endpoint = endpoint  # http(s)://host[:port]
        self.bucket = bucket
        self.region = region
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key

    def __repr__(self) -> str:
        return f"S3Conf({self.endpoint!r}, bucket={self.bucket!r})"


class S3Failure(Exception):
    """Object storage did not answer, or answered with an unexpected status."""


class PreconditionFailed(Exception):
    """A conditional write lost: someone else wrote the object since we read it."""


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
    conf: S3Conf, method: str, path: str, headers: dict[str, str], body: bytes, now: _dt.datetime
) -> dict[str, str]:
    """AWS Signature Version 4 headers for a path-style S3 request without a query string.

    Signs host, x-amz-content-sha256, x-amz-date and any x-amz-*/if-* headers given.
    """
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    host = urllib.parse.urlsplit(conf.endpoint).netloc
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
    scope = f"{day}/{conf.region}/s3/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{_sha256(canonical.encode())}"
    key = _hmac(("AWS4" + conf.secret_access_key).encode(), day)
    for part in (conf.region, "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = _hmac(key, to_sign).hex()
    out = {k: v for k, v in signed.items() if k != "host"}
    out["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={conf.access_key_id}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return out


def _request(
    conf: S3Conf,
    method: str,
    key: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    timeout: float = _HTTP_TIMEOUT_S,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request on a fresh connection (Connection: close); (status, headers, body).
    ``timeout`` bounds the whole request, connect to last byte."""
    url = urllib.parse.urlsplit(conf.endpoint)
    path = f"{url.path.rstrip('/')}/{conf.bucket}/{key}"
    hdrs = sign_v4(conf, method, path, headers or {}, body, _dt.datetime.now(_dt.UTC))
    hdrs.update({"host": url.netloc, "content-length": str(len(body)), "connection": "close"})
    head = f"{method} {urllib.parse.quote(path, safe='/-_.~')} HTTP/1.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    https = url.scheme == "https"
    port = url.port or (443 if https else 80)
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((url.hostname or "", port), timeout) as raw:
            sock = raw
            if https:  # only then pay for OpenSSL
                import ssl

                sock = ssl.create_default_context().wrap_socket(raw, server_hostname=url.hostname)
            sock.sendall(head.encode() + body)
            chunks = []
            while True:
                # A server that trickles its answer must not stretch a request past the
                # deadline: the keeper's fencing arithmetic relies on it.
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no complete answer within {timeout:g} s")
                sock.settimeout(left)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except OSError as exc:
        raise S3Failure(f"{method} {key}: {type(exc).__name__}: {exc}") from None
    return _parse_response(b"".join(chunks), method, key)


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


# -- the lease


def lease_key(tenant: str) -> str:
    return f"{PREFIX}{tenant}.json"


class Holder:
    __slots__ = ("container", "host")

    def __init__(self, host: str, container: str) -> None:
        self.host = host
        self.container = container

    @property
    def id(self) -> str:
        return f"{self.host}/{self.container}"


class Lease:
    """One version of the lease object (``etag`` identifies it for conditional writes)."""

    _FIELDS = (
        "tenant",
        "holder",
        "host",
        "container",
        "generation",
        "expires_at",
        "renewed_at",
        "etag",
        "revoked_by",
    )

    def __init__(
        self,
        tenant: str,
        holder: str | None,
        host: str | None,
        container: str | None,
        generation: int,
        expires_at: float,
        renewed_at: float,
        etag: str = "",
        revoked_by: str | None = None,
    ) -> None:
        self.tenant = tenant
        self.holder = holder  # "host/container", None when free
        self.host = host
        self.container = container
        self.generation = generation
        self.expires_at = expires_at
        self.renewed_at = renewed_at
        self.etag = etag
        self.revoked_by = revoked_by

    def replace(self, **changes: Any) -> Lease:
        return Lease(**{**{f: getattr(self, f) for f in self._FIELDS}, **changes})

    def __repr__(self) -> str:
        return f"Lease({self.tenant!r}, {self.describe()}, etag={self.etag})"

    def live(self, now: float | None = None) -> bool:
        return self.holder is not None and self.expires_at > (time.time() if now is None else now)

    def describe(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        if self.holder is None:
            return f"free (generation {self.generation})"
        left = self.expires_at - now
        when = f"expires in {left:.0f}s" if left > 0 else f"expired {-left:.0f}s ago"
        return (
            f"held by host {self.host} container {(self.container or '?')[:12]} "
            f"(generation {self.generation}, {when})"
        )


class LeaseHeld(Exception):
    """Another holder's lease is live."""

    def __init__(self, lease: Lease) -> None:
        super().__init__(f"tenant {lease.tenant!r} is {lease.describe()}")
        self.lease = lease


class LeaseLost(Exception):
    """The lease was taken over (or released by someone else) since we last wrote it."""


def read(conf: S3Conf, tenant: str) -> Lease | None:
    status, headers, body = _request(conf, "GET", lease_key(tenant))
    if status == 404:
        return None
    if status != 200:
        raise S3Failure(f"GET {lease_key(tenant)}: HTTP {status}")
    try:
        d = json.loads(body)
        return Lease(
            tenant=str(d["tenant"]),
            holder=d.get("holder"),
            host=d.get("host"),
            container=d.get("container"),
            generation=int(d["generation"]),
            expires_at=float(d["expires_at"]),
            renewed_at=float(d.get("renewed_at", 0.0)),
            etag=headers.get("etag", ""),
            revoked_by=d.get("revoked_by"),
        )
    except (ValueError, KeyError, TypeError):
        raise S3Failure(f"{lease_key(tenant)} is not a lease object") from None


def _write(
    conf: S3Conf, lease: Lease, *, if_match: str | None, timeout: float = _HTTP_TIMEOUT_S
) -> Lease:
    body = json.dumps(
        {
            "tenant": lease.tenant,
            "holder": lease.holder,
            "host": lease.host,
            "container": lease.container,
            "generation": lease.generation,
            "expires_at": lease.expires_at,
            "renewed_at": lease.renewed_at,
            "revoked_by": lease.revoked_by,
            "nonce": os.urandom(8).hex(),  # distinct ETags for otherwise equal bodies
        }
    ).encode()
    cond = {"if-match": if_match} if if_match else {"if-none-match": "*"}
    status, headers, _ = _request(
        conf,
        "PUT",
        lease_key(lease.tenant),
        body,
        {"content-type": "application/json", **cond},
        timeout,
    )
    if status in (409, 412):
        raise PreconditionFailed(lease.tenant)
    if status != 200:
        raise S3Failure(f"PUT {lease_key(lease.tenant)}: HTTP {status}")
    return lease.replace(etag=headers.get("etag", ""))


def acquire(conf: S3Conf, tenant: str, holder: Holder, ttl: float = TTL_S) -> Lease:
    """Take the lease: free, expired or already ours. LeaseHeld when another holder's is live."""
    current = read(conf, tenant)
    now = time.time()
    if current is not None and current.live(now) and current.holder != holder.id:
        raise LeaseHeld(current)
    new = Lease(
        tenant=tenant,
        holder=holder.id,
        host=holder.host,
        container=holder.container,
        generation=(current.generation + 1) if current else 1,
        expires_at=now + ttl,
        renewed_at=now,
    )
    try:
        return _write(conf, new, if_match=current.etag if current else None)
    except PreconditionFailed:
        latest = read(conf, tenant)  # someone else won the race
        raise LeaseHeld(latest or new) from None


def renewal_budget(ttl: float) -> tuple[float, float]:
    """(longest a renewal may take, margin before expiry by which the holder has stopped),
    scaled down for short TTLs (tests) so that a renewal still fits in the lease."""
    return min(_HTTP_TIMEOUT_S, ttl / 5), min(_FENCE_MARGIN_S, ttl / 10)


def renew(conf: S3Conf, lease: Lease, ttl: float = TTL_S) -> Lease:
    """Extend our lease; LeaseLost when it was written by anyone else since."""
    now = time.time()
    new = lease.replace(expires_at=now + ttl, renewed_at=now)
    try:
        return _write(conf, new, if_match=lease.etag, timeout=renewal_budget(ttl)[0])
    except PreconditionFailed:
        raise LeaseLost(lease.tenant) from None


def release(conf: S3Conf, lease: Lease) -> bool:
    """Give the lease up (keeping its generation); False when it was no longer ours."""
    free = lease.replace(holder=None, expires_at=0.0, renewed_at=time.time())
    try:
        _write(conf, free, if_match=lease.etag)
    except PreconditionFailed:
        return False
    return True


def revoke(conf: S3Conf, tenant: str, by: str) -> tuple[Lease | None, Lease]:
    """Take the lease away from whoever holds it: bump the generation, clear the holder.

    The old holder's next renewal fails and its keeper kills Litestream without a final
    sync. Returns (the lease before, the lease now).
    """
    for _ in range(5):
        current = read(conf, tenant)
        new = Lease(
            tenant=tenant,
            holder=None,
            host=None,
            container=None,
            generation=(current.generation + 1) if current else 1,
            expires_at=0.0,
            renewed_at=time.time(),
            revoked_by=by,
        )
        try:
            return current, _write(conf, new, if_match=current.etag if current else None)
        except PreconditionFailed:
            continue  # the holder renewed in between: read again
    raise S3Failure(f"could not revoke the lease of {tenant!r}: it keeps changing")


def delete(conf: S3Conf, tenant: str) -> None:
    status, _, _ = _request(conf, "DELETE", lease_key(tenant))
    if status not in (200, 204, 404):
        raise S3Failure(f"DELETE {lease_key(tenant)}: HTTP {status}")


# -- the keeper: `python -m fleet.supervisor.lease hold -- CMD...` inside a tenant container


def container_id() -> str:
    """This container's id (from the engine's bind mounts), else the hostname."""
    try:
        with open("/proc/self/mountinfo") as f:
            m = re.search(r"/containers/([0-9a-f]{64})/", f.read())
        if m:
            return m.group(1)
    except OSError:
        pass
    return socket.gethostname()


def _conf_from_env(env: dict[str, str]) -> S3Conf:
    return S3Conf(
        endpoint=env["LITEFLEET_S3_ENDPOINT"],
        bucket=env["LITEFLEET_S3_BUCKET"],
        region=env.get("LITEFLEET_S3_REGION") or "us-east-1",
        access_key_id=env.get("LITESTREAM_ACCESS_KEY_ID", ""),
        secret_access_key=env.get("LITESTREAM_SECRET_ACCESS_KEY", ""),
    )


def _log(msg: str) -> None:
    sys.stderr.write(f"litefleet-lease: {msg}\n")
    sys.stderr.flush()


class Keeper:
    """Holds the lease while a child process group (restore, then Litestream) runs."""

    def __init__(
        self,
        conf: S3Conf,
        tenant: str,
        holder: Holder,
        ttl: float = TTL_S,
        renew_every: float = RENEW_S,
        wait_s: float = TTL_S + RENEW_S,
        log: Callable[[str], None] = _log,
    ) -> None:
        self.conf, self.tenant, self.holder = conf, tenant, holder
        self.ttl, self.renew_every, self.wait_s, self.log = ttl, renew_every, wait_s, log
        self.child: int | None = None
        self._pending: list[int] = []

    def acquire(self) -> Lease:
        """Take the lease. Retries while object storage does not answer, and waits (up to
        ``wait_s``) for another holder's lease to lapse: a crashed holder stops renewing, so a
        replacement container starts once its TTL has run out; a live one keeps it."""
        deadline = time.monotonic() + self.wait_s
        said = ""
        while True:
            try:
                return acquire(self.conf, self.tenant, self.holder, self.ttl)
            except (S3Failure, LeaseHeld) as exc:
                if time.monotonic() >= deadline:
                    raise
                why = f"waiting: {exc}" if isinstance(exc, LeaseHeld) else f"retrying: {exc}"
                if why.split(" (")[0] != said:  # once per situation, not every second
                    self.log(why)
                    said = why.split(" (")[0]
                time.sleep(1.0)

    def run(self, argv: list[str]) -> int:
        try:
            lease = self.acquire()
        except LeaseHeld as exc:
            self.log(f"not starting: {exc} (stop it there, or take over with --force-takeover)")
            return EXIT_LEASE
        except S3Failure as exc:
            self.log(f"not starting: cannot take the lease: {exc}")
            return EXIT_LEASE
        self.log(f"lease of {self.tenant} taken: generation {lease.generation}, ttl {self.ttl:g}s")
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        # Own process group: on a lost lease the whole group (restore or Litestream and the
        # runtime it runs) is killed at once.
        self.child = self._spawn(argv)
        for pending in self._pending:
            os.kill(self.child, pending)
        next_renew = time.monotonic() + self.renew_every
        while True:
            rc = self._reap()
            if rc is not None:
                break
            if time.monotonic() < next_renew:
                time.sleep(0.25)  # reaps the child within 0.25 s; ~no idle CPU
                continue
            # Fence before the lease can lapse, counting the worst case of the attempt we
            # are about to make: a successor may take the lease the moment it expires.
            attempt_s, margin_s = renewal_budget(self.ttl)
            if time.time() + attempt_s + margin_s >= lease.expires_at:
                self._fence("cannot renew the lease before it expires")
                return EXIT_LEASE
            try:
                lease = renew(self.conf, lease, self.ttl)
                next_renew = time.monotonic() + self.renew_every
            except LeaseLost:
                now_lease = _safe_read(self.conf, self.tenant)
                self._fence(f"lease taken over ({now_lease.describe() if now_lease else 'gone'})")
                return EXIT_LEASE
            except S3Failure as exc:
                # The check above fences before the next attempt if it could end too late.
                self.log(f"renewal failed, retrying: {exc}")
                next_renew = time.monotonic() + 1.0
        # The child ended (after Litestream's final sync on a clean stop): hand the lease back.
        try:
            if release(self.conf, lease):
                self.log(f"lease of {self.tenant} released")
            else:
                self.log("lease was no longer ours at exit")
        except S3Failure as exc:
            self.log(f"could not release the lease (it expires in {self.ttl:g}s): {exc}")
        return rc

    def _spawn(self, argv: list[str]) -> int:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.setpgid(0, 0)
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_DFL)
                os.execvp(argv[0], argv)
            finally:
                os._exit(127)
        with contextlib.suppress(OSError):  # the child already did it (or exec'd)
            os.setpgid(pid, pid)
        return pid

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.child is None:
            self._pending.append(signum)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child, signum)  # Litestream forwards it to the runtime

    def _reap(self) -> int | None:
        assert self.child is not None
        pid, status = os.waitpid(self.child, os.WNOHANG)
        if pid == 0:
            return None
        code = os.waitstatus_to_exitcode(status)
        return 128 - code if code < 0 else code  # killed by a signal: the shell's 128+N

    def _fence(self, why: str) -> None:
        assert self.child is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.child, signal.SIGKILL)
        os.waitpid(self.child, 0)
        self.log(f"{why}: stopped replication without a final sync")


def _safe_read(conf: S3Conf, tenant: str) -> Lease | None:
    try:
        return read(conf, tenant)
    except S3Failure:
        return None


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] != "hold" or argv[1] != "--":
        _log("usage: python -m fleet.supervisor.lease hold -- CMD [ARGS...]")
        return 64
    env = dict(os.environ)
    try:
        conf = _conf_from_env(env)
        tenant = env["TENANT"]
    except KeyError as exc:
        _log(f"{exc.args[0]} is not set")
        return 64
    holder = Holder(host=env.get("LITEFLEET_HOST") or "unknown", container=container_id())
    keeper = Keeper(
        conf,
        tenant,
        holder,
        ttl=float(env.get("LITEFLEET_LEASE_TTL") or TTL_S),
        renew_every=float(env.get("LITEFLEET_LEASE_RENEW") or RENEW_S),
        wait_s=float(env.get("LITEFLEET_LEASE_WAIT") or TTL_S + RENEW_S),
    )
    return keeper.run(argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
