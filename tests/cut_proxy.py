"""A TCP forwarder on loopback that a test can cut: while cut, it accepts connections and
swallows what they send without answering (as a network that drops packets looks to a
client), and forwards nothing. For outages of a real S3 endpoint without Docker or a firewall."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


class CutProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.cut = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            if self.cut.is_set():
                self._swallow(client)
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                return
            with upstream:
                t = threading.Thread(target=self._pump, args=(upstream, client), daemon=True)
                t.start()
                self._pump(client, upstream)
                t.join(10)

    def _swallow(self, client: socket.socket) -> None:
        client.settimeout(60)
        with contextlib.suppress(OSError):
            while client.recv(65536):
                pass

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = src.recv(65536)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                if self.cut.is_set():
                    continue  # dropped on the floor
                dst.sendall(data)

    def close(self) -> None:
        self._closing = True
        self._server.close()


@contextlib.contextmanager
def cut_proxy(upstream_url: str) -> Iterator[CutProxy]:
    host, _, port = upstream_url.removeprefix("http://").partition(":")
    proxy = CutProxy((host, int(port)))
    try:
        yield proxy
    finally:
        proxy.close()
