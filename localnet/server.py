"""The localnet's JSON-RPC HTTP server (``LocalnetServer``): HTTP only.

It serves one ``Localnet`` (``localnet.chain``) on 127.0.0.1 from a daemon thread: ``POST
/`` is JSON-RPC, answered by ``localnet.methods``; ``GET /health`` answers ``ok``, as Agave
does. Connections are kept alive (and closed on ``stop()``); each request is handled on a
thread of its own, and every access to the chain goes through the ``Localnet``'s lock.
"""

from __future__ import annotations

import logging
from http.server import BaseHTTPRequestHandler
from typing import Any, Self

from core.http_server import BackgroundHTTPServer
from localnet import methods
from localnet.chain import Localnet

logger = logging.getLogger("localnet")


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive: clients such as httpx reuse one connection for many calls.
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; with Nagle's algorithm and the client's
    # delayed ACK every reply would wait ~40 ms.
    disable_nagle_algorithm = True
    # core.http_server's server, carrying ``localnet``.
    server: Any

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


class LocalnetServer(BackgroundHTTPServer):
    """Serves a ``Localnet`` over JSON-RPC on 127.0.0.1 from a daemon thread.

    ``port=0`` picks a free port; ``url`` is known once ``start()`` returned. Usable as
    a context manager, from synchronous code, a CLI, or a test's asyncio event loop (the
    server never touches the caller's loop).
    """

    def __init__(
        self, localnet: Localnet | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.localnet = localnet if localnet is not None else Localnet()
        # stop() must not wait for clients that keep idle connections open.
        super().__init__(
            _Handler,
            host=host,
            port=port,
            name="localnet",
            wait_for_requests=False,
            localnet=self.localnet,
        )

    def start(self) -> Self:
        if not self.started:
            super().start()
            logger.info("localnet serving on %s", self.url)
        return self
