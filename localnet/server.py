"""The localnet's JSON-RPC HTTP server (``LocalnetServer``): HTTP only.

It serves one ``Localnet`` (``localnet.chain``) on 127.0.0.1 from a daemon thread: ``POST
/`` is JSON-RPC, answered by ``localnet.methods``; ``GET /health`` answers ``ok``, as Agave
does. Connections are kept alive (and closed on ``stop()``); each request is handled on a
thread of its own, and every access to the chain goes through the ``Localnet``'s lock.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

from localnet import methods
from localnet.chain import Localnet

logger = logging.getLogger("localnet")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # stop() must not wait for clients that keep idle connections open.
    block_on_close = False
    allow_reuse_address = True
    # socketserver's default backlog of 5 makes a burst of concurrent clients wait for
    # SYN retransmits (1 s each).
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], localnet: Localnet) -> None:
        self.localnet = localnet
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
        for conn in connections:
            # Already closed by the client: nothing to wake up.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive: clients such as httpx reuse one connection for many calls.
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; with Nagle's algorithm and the client's
    # delayed ACK every reply would wait ~40 ms.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self._reply(200, "application/json", methods.handle(self.server.localnet, body))

    def do_GET(self) -> None:
        # Agave answers GET /health with a plain-text status; load balancers use it.
        if self.path.split("?")[0] == "/health":
            self._reply(200, "text/plain", b"ok")
        else:
            self._reply(404, "text/plain", b"not found; send JSON-RPC requests with POST /")

    def _reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


class LocalnetServer:
    """Serves a ``Localnet`` over JSON-RPC on 127.0.0.1 from a daemon thread.

    ``port=0`` picks a free port; ``url`` is known once ``start()`` returned. Usable as
    a context manager, from synchronous code, a CLI, or a test's asyncio event loop (the
    server never touches the caller's loop).
    """

    def __init__(
        self, localnet: Localnet | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.localnet = localnet if localnet is not None else Localnet()
        self._host = host
        self._port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the localnet server is not started; call start() first")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer((self._host, self._port), self.localnet)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"localnet-{self._httpd.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        logger.info("localnet serving on %s", self.url)
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
