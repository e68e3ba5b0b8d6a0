"""An object store that ignores conditional writes, for tests: a small HTTP proxy in front of a
real S3 endpoint (moto) that drops ``If-None-Match`` and ``If-Match`` from every request, as a
store without conditional-write support does. Real HTTP both ways.

The proxy forwards the signature as it is: the upstream must not check signatures (a plain
``moto_server``), since the dropped headers were signed.
"""

from __future__ import annotations

import contextlib
import http.client
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DROPPED = {"if-none-match", "if-match", "connection", "keep-alive", "transfer-encoding"}


def _handler(upstream: str) -> type[BaseHTTPRequestHandler]:
    target = urllib.parse.urlsplit(upstream)

    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items() if k.lower() not in DROPPED}
            conn = http.client.HTTPConnection(target.hostname or "", target.port or 80, timeout=30)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
            finally:
                conn.close()
            self.send_response(answer.status)
            for k, v in answer.getheaders():
                if k.lower() not in DROPPED | {"content-length", "server", "date"}:
                    self.send_header(k, v)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Forward


@contextlib.contextmanager
def ignoring_conditional_writes(upstream: str, host: str = "127.0.0.1") -> Iterator[str]:
    """``upstream`` behind a proxy on ``host`` (a free port) that drops conditional headers;
    yields the proxy's endpoint."""
    server = ThreadingHTTPServer((host, 0), _handler(upstream))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
