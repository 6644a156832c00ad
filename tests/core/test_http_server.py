"""The one background HTTP server: a free port, answers, stops, releases the port."""

from __future__ import annotations

import socket
import urllib.request
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from core.http_server import BackgroundHTTPServer, free_port


class _Echo(BaseHTTPRequestHandler):
    server: Any

    def do_GET(self) -> None:
        body = f"{self.server.greeting} {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _KeepAlive(_Echo):
    protocol_version = "HTTP/1.1"


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.read().decode()


def test_serves_on_a_free_port_and_releases_it() -> None:
    server = BackgroundHTTPServer(_Echo, greeting="hello")
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url
    with server:
        host, port = server.address
        assert host == "127.0.0.1" and port > 0
        assert server.url == f"http://127.0.0.1:{port}"
        assert server.start() is server  # a second start changes nothing
        assert _get(f"{server.url}/ping") == "hello /ping"
    assert not server.started
    server.stop()  # a second stop changes nothing
    with pytest.raises(OSError):
        _get(f"http://127.0.0.1:{port}/ping")
    # The port is released: a new server takes it at once.
    with BackgroundHTTPServer(_Echo, port=port, greeting="again") as again:
        assert _get(f"{again.url}/") == "again /"


def test_stop_closes_kept_alive_connections() -> None:
    server = BackgroundHTTPServer(_KeepAlive, wait_for_requests=False, greeting="hi").start()
    client = socket.create_connection(server.address, timeout=5)
    try:
        client.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while b"hi /a" not in received:
            chunk = client.recv(4096)
            assert chunk, received
            received += chunk
        server.stop()  # returns although the client keeps its connection open
        assert client.recv(4096) == b""
    finally:
        client.close()
        server.stop()


def test_free_port_is_refused_until_a_server_takes_it() -> None:
    port = free_port()
    assert 0 < port <= 65535
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass
    with BackgroundHTTPServer(_Echo, port=port, greeting="taken") as server:
        assert server.address[1] == port
        assert _get(f"http://127.0.0.1:{port}/x") == "taken /x"
