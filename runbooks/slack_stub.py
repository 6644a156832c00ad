"""A stand-in for Slack's Web API on 127.0.0.1, for tests and the local console.

It answers ``chat.postMessage`` the way Slack documents it: HTTP 200 with
``{"ok": true, "channel": ..., "ts": ..., "message": {...}}``, or ``{"ok": false,
"error": "invalid_auth" | "not_authed" | "channel_not_found" | "no_text"}``; any other
method is ``unknown_method``. Point ``SlackChannel.api_base_url`` (or
``slack_sdk.WebClient(base_url=...)``) at ``stub.base_url``. Posted messages are kept in
``messages`` for assertions. No pytest import: usable from any test folder.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], stub: SlackStub) -> None:
        super().__init__(address, _Handler)
        self.stub = stub


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        stub = self.server.stub
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        method = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
        if "json" in (self.headers.get("Content-Type") or ""):
            args: dict[str, Any] = json.loads(body or b"{}")
        else:
            args = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        auth = self.headers.get("Authorization") or ""
        reply = stub.answer(method, auth.removeprefix("Bearer ").strip(), args)
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


class SlackStub:
    """Slack's Web API, as much of it as the runbooks use."""

    CHANNEL_ID = "C0RUNBOOKS"

    def __init__(self, token: str = "xoxb-test-token", channels: tuple[str, ...] = ()) -> None:
        self.token = token
        # Channel names (with #) or ids accepted; empty: any channel.
        self.channels = set(channels)
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._httpd: _Server | None = None

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("start() the stub first")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/api/"

    def answer(self, method: str, token: str, args: dict[str, Any]) -> dict[str, Any]:
        if method != "chat.postMessage":
            return {"ok": False, "error": "unknown_method"}
        if not token:
            return {"ok": False, "error": "not_authed"}
        if token != self.token:
            return {"ok": False, "error": "invalid_auth"}
        channel = args.get("channel")
        if not channel or (self.channels and channel not in self.channels):
            return {"ok": False, "error": "channel_not_found"}
        blocks = args.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        if not args.get("text") and not blocks:
            return {"ok": False, "error": "no_text"}
        ts = f"{time.time():.6f}"
        message = {
            "type": "message",
            "text": args.get("text", ""),
            "blocks": blocks or [],
            "ts": ts,
            "bot_id": "B0RUNBOOKS",
        }
        with self._lock:
            self.messages.append({"channel": channel, **message})
        return {"ok": True, "channel": self.CHANNEL_ID, "ts": ts, "message": message}

    def start(self) -> Self:
        if self._httpd is None:
            self._httpd = _Server(("127.0.0.1", 0), self)
            threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
            ).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
