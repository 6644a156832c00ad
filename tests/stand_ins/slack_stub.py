"""A stand-in for Slack's Web API on 127.0.0.1, for tests and the local console.

It answers the way Slack documents it, always HTTP 200:

- ``chat.postMessage``: ``{"ok": true, "channel": <channel id>, "ts": ..., "message":
  {...}}``; with ``thread_ts`` the message is a reply in that thread (its ``message``
  carries ``thread_ts``; an unknown parent is ``thread_not_found``).
- ``chat.update``: ``channel`` (the id postMessage answered with) and ``ts`` of a message
  it posted; answers ``{"ok": true, "channel", "ts", "text", "message"}``, or
  ``message_not_found`` / ``channel_not_found``; ``blocks`` left out keeps the old ones.
- ``/response/<name>``: an interaction's ``response_url`` (``response_url()``); kept in
  ``responses``.
- errors ``{"ok": false, "error": "invalid_auth" | "not_authed" | "channel_not_found" |
  "no_text"}``; any other method is ``unknown_method``.

Point ``SlackChannel.api_base_url`` (or ``slack_sdk.WebClient(base_url=...)``) at
``stub.base_url``. Posts (top-level and replies, as updated since) are kept in
``messages``, each ``chat.update`` call in ``updates``, for assertions. No pytest import:
usable from any test folder.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

from core.http_server import BackgroundHTTPServer


class _Handler(BaseHTTPRequestHandler):
    # core.http_server's server, carrying ``stub``.
    server: Any

    def do_POST(self) -> None:
        stub = self.server.stub
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        method = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
        if "json" in (self.headers.get("Content-Type") or ""):
            args: dict[str, Any] = json.loads(body or b"{}")
        else:
            args = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        auth = self.headers.get("Authorization") or ""
        if self.path.startswith("/response/"):
            with stub._lock:
                stub.responses.append({"path": self.path, **args})
            reply: dict[str, Any] = {"ok": True}
        else:
            reply = stub.answer(method, auth.removeprefix("Bearer ").strip(), args)
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


class SlackStub(BackgroundHTTPServer):
    """Slack's Web API, as much of it as the runbooks use."""

    CHANNEL_ID = "C0RUNBOOKS"

    def __init__(self, token: str = "xoxb-test-token", channels: tuple[str, ...] = ()) -> None:
        self.token = token
        # Channel names (with #) or ids accepted; empty: any channel.
        self.channels = set(channels)
        self.messages: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        # What the Slack handler told users through an interaction's response_url.
        self.responses: list[dict[str, Any]] = []
        self._last_ts = 0.0
        self._lock = threading.Lock()
        super().__init__(_Handler, name="slack-stub", stub=self)

    @property
    def base_url(self) -> str:
        return f"{self.url}/api/"

    def answer(self, method: str, token: str, args: dict[str, Any]) -> dict[str, Any]:
        if method not in ("chat.postMessage", "chat.update"):
            return {"ok": False, "error": "unknown_method"}
        if not token:
            return {"ok": False, "error": "not_authed"}
        if token != self.token:
            return {"ok": False, "error": "invalid_auth"}
        blocks = args.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        if method == "chat.update":
            return self._update(args, blocks)
        channel = args.get("channel")
        if not channel or (self.channels and channel not in self.channels | {self.CHANNEL_ID}):
            return {"ok": False, "error": "channel_not_found"}
        if not args.get("text") and not blocks:
            return {"ok": False, "error": "no_text"}
        with self._lock:
            thread_ts = args.get("thread_ts")
            if thread_ts and not any(
                m["ts"] == thread_ts and "thread_ts" not in m for m in self.messages
            ):
                return {"ok": False, "error": "thread_not_found"}
            # Slack's ts is unique per channel: seconds.microseconds, strictly increasing.
            self._last_ts = max(time.time(), self._last_ts + 1e-6)
            ts = f"{self._last_ts:.6f}"
            message = {
                "type": "message",
                "text": args.get("text", ""),
                "blocks": blocks or [],
                "ts": ts,
                "bot_id": "B0RUNBOOKS",
                **({"thread_ts": thread_ts} if thread_ts else {}),
            }
            self.messages.append({"channel": channel, **message})
        return {"ok": True, "channel": self.CHANNEL_ID, "ts": ts, "message": message}

    def _update(self, args: dict[str, Any], blocks: list[dict[str, Any]] | None) -> dict[str, Any]:
        if args.get("channel") != self.CHANNEL_ID:
            return {"ok": False, "error": "channel_not_found"}
        if not args.get("text") and not blocks:
            return {"ok": False, "error": "no_text"}
        with self._lock:
            found = [m for m in self.messages if m["ts"] == args.get("ts")]
            if not found:
                return {"ok": False, "error": "message_not_found"}
            message = found[0]
            message["text"] = args.get("text") or message["text"]
            if blocks is not None:
                message["blocks"] = blocks
            message["edited"] = {"user": "B0RUNBOOKS", "ts": f"{time.time():.6f}"}
            self.updates.append({"channel": self.CHANNEL_ID, **args, "blocks": blocks})
            shown = {k: v for k, v in message.items() if k != "channel"}
        return {
            "ok": True,
            "channel": self.CHANNEL_ID,
            "ts": message["ts"],
            "text": message["text"],
            "message": shown,
        }

    def response_url(self, name: str = "click") -> str:
        """A ``response_url`` for a hand-made interaction payload; posts land in
        ``responses``."""
        return f"{self.url}/response/{name}"

    def thread(self, ts: str) -> list[dict[str, Any]]:
        """The replies posted in the thread whose parent is ``ts``."""
        with self._lock:
            return [m for m in self.messages if m.get("thread_ts") == ts]
