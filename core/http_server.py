"""The one threaded HTTP server run in the background (``BackgroundHTTPServer``).

It serves a ``BaseHTTPRequestHandler`` class on a host (127.0.0.1 unless told) and a port
(0: a free one) from a daemon thread: each request is handled on a daemon thread of its
own, the address is reusable at once after a stop, and the listen backlog takes a burst
of concurrent clients. ``url`` is known once ``start()`` returned. ``stop()`` stops
serving, releases the port and joins the serving thread. By default it first lets the
requests in flight finish; with ``wait_for_requests=False`` (handlers that keep
connections alive) it closes every open connection instead, idle ones included, and
does not wait. Usable as a context manager; ``start()`` and ``stop()`` may be called
twice.

Keyword attributes given to the constructor are set on the underlying server before it
serves: a handler reads them as ``self.server.<name>``. A service subclasses it (and may
pass itself as such an attribute), keeping its own request handling in its handler.
Standard library only.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now, for a process that must be told its port
    before it starts (a server in this process takes ``port=0`` instead)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class _ThreadingServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 makes a burst of concurrent clients wait for
    # SYN retransmits (1 s each).
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        attributes: dict[str, object],
    ) -> None:
        # Set before binding: a request may arrive as soon as serving starts.
        for name, value in attributes.items():
            setattr(self, name, value)
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

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


class BackgroundHTTPServer:
    """Serves ``handler`` from a daemon thread; ``port=0`` picks a free port."""

    def __init__(
        self,
        handler: type[BaseHTTPRequestHandler],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "http",
        wait_for_requests: bool = True,
        **attributes: object,
    ) -> None:
        self._handler = handler
        self._address = (host, port)
        self._name = name
        self._wait_for_requests = wait_for_requests
        self._attributes = attributes
        self._httpd: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._httpd is not None

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the server listens on; the port is the real one after ``start()``."""
        if self._httpd is None:
            raise RuntimeError(f"the {self._name} server is not started; call start() first")
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """``http://host:port``, without a trailing slash."""
        host, port = self.address
        return f"http://{host}:{port}"

    def start(self) -> Self:
        if self._httpd is not None:
            return self
        httpd = _ThreadingServer(self._address, self._handler, self._attributes)
        # With False, server_close() does not wait for handler threads still running.
        httpd.block_on_close = self._wait_for_requests
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"{self._name}-{httpd.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        httpd.shutdown()
        if not self._wait_for_requests:
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
