"""Slack calls are retried by slack_sdk's own handlers (tasks.notify.retry_handlers):
a 503 or a rate limit is tried again, a refused call is not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from core.http_server import BackgroundHTTPServer
from tasks.notify import RETRIES, retry_handlers


class _Flaky(BaseHTTPRequestHandler):
    answers: ClassVar[list[tuple[int, dict[str, object]]]] = []
    calls = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).calls += 1
        status, body = self.answers.pop(0) if self.answers else (200, {"ok": True, "ts": "1"})
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if status == 429:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[tuple[str, type[_Flaky]]]:
    handler = type("Handler", (_Flaky,), {"answers": [], "calls": 0})
    with BackgroundHTTPServer(handler) as server:
        yield f"{server.url}/api/", handler


def _client(url: str) -> WebClient:
    return WebClient(token="xoxb-x", base_url=url, timeout=5, retry_handlers=retry_handlers())


def test_server_errors_and_rate_limits_are_retried(flaky: tuple[str, type[_Flaky]]) -> None:
    url, handler = flaky
    handler.answers = [(503, {"ok": False}), (429, {"ok": False, "error": "ratelimited"})]
    assert _client(url).chat_postMessage(channel="#ops", text="hi").data["ok"] is True
    assert handler.calls == 3


def test_a_refused_call_is_final(flaky: tuple[str, type[_Flaky]]) -> None:
    url, handler = flaky
    handler.answers = [(200, {"ok": False, "error": "channel_not_found"})]
    with pytest.raises(SlackApiError):
        _client(url).chat_postMessage(channel="#nope", text="hi")
    assert handler.calls == 1


def test_an_outage_gives_up_after_the_retries(flaky: tuple[str, type[_Flaky]]) -> None:
    url, handler = flaky
    handler.answers = [(500, {"ok": False})] * (RETRIES + 2)
    with pytest.raises(SlackApiError):
        _client(url).chat_postMessage(channel="#ops", text="hi")
    assert handler.calls == RETRIES + 1
