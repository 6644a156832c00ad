"""The localnet's JSON-RPC HTTP server (``LocalnetServer``): HTTP only.

It serves one ``Localnet`` (``localnet.chain``) on 127.0.0.1 from a daemon thread: ``POST
/`` is JSON-RPC, answered by ``localnet.methods``; ``GET /health`` answers ``ok``, as Agave
does. Connections are kept alive (and closed on ``stop()``); each request is handled on a
thread of its own, and every access to the chain goes through the ``Localnet``'s lock.

In cluster-like mode (``behaviour=``, see ``localnet.cluster_mode``) the server runs the
slot clock while it serves, and answers requests over the rate limit with HTTP 429, a
``Retry-After`` header and a JSON-RPC error body, as RPC providers do.
"""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler
from typing import Any, Self

from core.errors import InputError
from core.http_server import BackgroundHTTPServer
from localnet import methods
from localnet.chain import Localnet
from localnet.cluster_mode import ClusterBehaviour, TokenBucket, retry_after_header

logger = logging.getLogger("localnet")

# The JSON-RPC error code and message RPC providers send with their 429 replies.
TOO_MANY_REQUESTS_CODE = 429
TOO_MANY_REQUESTS_MESSAGE = "Too many requests for this endpoint; slow down and retry"


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive: clients such as httpx reuse one connection for many calls.
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; with Nagle's algorithm and the client's
    # delayed ACK every reply would wait ~40 ms.
    disable_nagle_algorithm = True
    # core.http_server's server, carrying ``localnet``.
    server: Any

    def _rate_limited(self) -> bool:
        """Answer 429 when the request is over the rate limit (cluster-like mode)."""
        bucket: TokenBucket | None = self.server.rate_limit
        wait = bucket.take() if bucket is not None else None
        if wait is None:
            return False
        error = {"code": TOO_MANY_REQUESTS_CODE, "message": TOO_MANY_REQUESTS_MESSAGE}
        body = json.dumps({"jsonrpc": "2.0", "error": error, "id": None}).encode()
        self._reply(429, "application/json", body, {"Retry-After": retry_after_header(wait)})
        return True

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self._rate_limited():
            return
        self._reply(200, "application/json", methods.handle(self.server.localnet, body))

    def do_GET(self) -> None:
        if self._rate_limited():
            return
        # Agave answers GET /health with a plain-text status; load balancers use it.
        if self.path.split("?")[0] == "/health":
            self._reply(200, "text/plain", b"ok")
        else:
            self._reply(404, "text/plain", b"not found; send JSON-RPC requests with POST /")

    def _reply(
        self,
        status: int,
        content_type: str,
        body: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
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
        self,
        localnet: Localnet | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        behaviour: ClusterBehaviour | None = None,
    ) -> None:
        if localnet is None:
            localnet = Localnet(behaviour)
        elif behaviour is not None and localnet.behaviour is not behaviour:
            raise InputError(
                "behaviour belongs to the Localnet: pass Localnet(behaviour) or behaviour= "
                "alone, not both"
            )
        self.localnet = localnet
        behaviour = localnet.behaviour
        rate_limit = TokenBucket(behaviour.requests_per_second) if behaviour is not None else None
        # stop() must not wait for clients that keep idle connections open.
        super().__init__(
            _Handler,
            host=host,
            port=port,
            name="localnet",
            wait_for_requests=False,
            localnet=self.localnet,
            rate_limit=rate_limit,
        )

    def start(self) -> Self:
        if not self.started:
            super().start()
            self.localnet.start_clock()
            logger.info("localnet serving on %s", self.url)
        return self

    def stop(self) -> None:
        self.localnet.stop_clock()
        super().stop()
