"""Slack buttons that resume a paused run: sign-offs that need no signature.

Acknowledging a health alert or confirming a kill-switch release needs a person, not an
ed25519 signature. The runbook pauses (``runbooks.confirmations``), posts a message with
buttons (``runbooks.messages.confirm_buttons``), and Slack sends the click here. This
handler:

1. verifies Slack's request signature, v0: ``X-Slack-Signature`` must equal
   ``v0=`` + hex HMAC-SHA256 of ``v0:{X-Slack-Request-Timestamp}:{raw body}`` under the
   app's signing secret, and the timestamp must be within 5 minutes (a replayed click is
   refused) — anything unsigned or badly signed gets 401 and changes nothing;
2. reads the button's value (run id, pause key, decision) and the clicking user;
3. resumes the run only if it is paused at exactly that key, with the Slack user's
   identity as the run input. A click on a stale message changes nothing either.

Run it next to the Prefect API (``python -m runbooks.slack_handler --slack-block NAME``)
behind the HTTPS endpoint configured as the Slack app's Interactivity Request URL.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs

from runbooks.errors import RunbookError

logger = logging.getLogger(__name__)

SIGNATURE_VERSION = "v0"
MAX_SKEW_SECONDS = 5 * 60
MAX_BODY_BYTES = 64 * 1024
ACTION_PREFIX = "runbooks-confirm-"
DECISIONS = ("acknowledge", "confirm", "decline")
ACTIONS_PATH = "/slack/actions"


class SlackRequestRejected(RunbookError):
    """The request is not a genuine, fresh Slack request we understand."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        super().__init__(reason)


def encode_action_value(run_id: str, key: str, decision: str) -> str:
    """The button value: which run, which pause, which decision (under Slack's 2,000)."""
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(DECISIONS)}")
    return json.dumps({"run": str(run_id), "key": key, "decision": decision}, separators=(",", ":"))


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 request signature of ``body`` sent at ``timestamp``."""
    base = f"{SIGNATURE_VERSION}:{timestamp}:".encode() + body
    return f"{SIGNATURE_VERSION}=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify_request(
    secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None
) -> None:
    """Raise ``SlackRequestRejected`` (401) unless Slack signed this request recently."""
    if not secret:
        raise SlackRequestRejected(401, "no signing secret configured: every request refused")
    lowered = {k.lower(): v for k, v in headers.items()}
    stamp = lowered.get("x-slack-request-timestamp", "")
    sent = lowered.get("x-slack-signature", "")
    if not stamp or not sent:
        raise SlackRequestRejected(401, "unsigned request")
    try:
        moment = int(stamp)
    except ValueError:
        raise SlackRequestRejected(401, "malformed timestamp") from None
    if abs((time.time() if now is None else now) - moment) > MAX_SKEW_SECONDS:
        raise SlackRequestRejected(401, "stale timestamp (older than 5 minutes): replay refused")
    if not hmac.compare_digest(signature(secret, stamp, body), sent):
        raise SlackRequestRejected(401, "bad signature")


@dataclass(frozen=True)
class SlackAction:
    """One button click: who clicked, and which paused run it answers."""

    user_id: str
    user_name: str | None
    team_id: str | None
    run_id: uuid.UUID
    key: str
    decision: str

    def run_input(self) -> dict[str, Any]:
        """The ``runbooks.confirmations.Confirmation`` input this click resumes with."""
        return {
            "decision": self.decision,
            "by": f"slack:{self.user_id}" + (f" ({self.user_name})" if self.user_name else ""),
            "slack_user_id": self.user_id,
            "slack_user_name": self.user_name,
        }


def parse_action(body: bytes) -> SlackAction | None:
    """The runbooks button in an interactivity payload; None for any other interaction.

    Raises ``SlackRequestRejected`` (400) for a payload that does not parse.
    """
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True)
        payload = json.loads(form["payload"][0])
    except (UnicodeDecodeError, ValueError, KeyError, IndexError):
        raise SlackRequestRejected(400, "not a Slack interactivity payload") from None
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        return None
    actions = payload.get("actions") or []
    action = actions[0] if actions and isinstance(actions[0], dict) else {}
    if not str(action.get("action_id", "")).startswith(ACTION_PREFIX):
        return None
    user = payload.get("user") or {}
    try:
        value = json.loads(action.get("value") or "")
        run_id = uuid.UUID(str(value["run"]))
        key, decision = str(value["key"]), str(value["decision"])
    except (ValueError, KeyError, TypeError):
        raise SlackRequestRejected(400, "button value is not a runbooks action") from None
    if decision not in DECISIONS or not user.get("id"):
        raise SlackRequestRejected(400, "unknown decision or no user in the payload")
    return SlackAction(
        user_id=str(user["id"]),
        user_name=user.get("username") or user.get("name"),
        team_id=(payload.get("team") or {}).get("id"),
        run_id=run_id,
        key=key,
        decision=decision,
    )


Resumer = Callable[[SlackAction], str]


def prefect_resumer(action: SlackAction) -> str:
    """Resume the run if it is paused at the button's key; say what happened."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(action.run_id)
        except ObjectNotFound:
            return "That run does not exist; nothing changed."
        state = run.state
        if state is None or not state.is_paused() or state.state_details.pause_key != action.key:
            return "That request is no longer pending; nothing changed."
        result = client.resume_flow_run(action.run_id, run_input=action.run_input())
        if result.status != SetStateStatus.ACCEPT:
            reason = getattr(result.details, "reason", "") or "refused"
            return f"Prefect refused the resume ({reason}); nothing changed."
    logger.info("run %s resumed at %s by Slack user %s", action.run_id, action.key, action.user_id)
    done = {"acknowledge": "Acknowledged", "confirm": "Confirmed", "decline": "Declined"}
    return f"{done[action.decision]} by <@{action.user_id}>."


def handle(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    resume: Resumer = prefect_resumer,
    now: float | None = None,
) -> tuple[int, dict[str, Any]]:
    """One request: (HTTP status, JSON reply). Only a verified click can resume a run."""
    try:
        verify_request(secret, headers, body, now)
        action = parse_action(body)
    except SlackRequestRejected as exc:
        logger.warning("Slack request refused: %s", exc)
        return exc.status, {"ok": False, "error": str(exc)}
    if action is None:
        return 200, {"ok": True, "text": "Not a runbooks action; nothing changed."}
    text = resume(action)
    return 200, {"response_type": "ephemeral", "replace_original": False, "text": text}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], secret: str, resume: Resumer) -> None:
        super().__init__(address, _Handler)
        self.secret = secret
        self.resume = resume


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != ACTIONS_PATH:
            self._reply(404, {"ok": False, "error": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._reply(413, {"ok": False, "error": "request too large"})
            return
        body = self.rfile.read(length)
        status, reply = handle(
            self.server.secret, dict(self.headers.items()), body, self.server.resume
        )
        self._reply(status, reply)

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


class SlackActionServer:
    """Serves ``POST /slack/actions`` from a daemon thread (``port=0`` picks one)."""

    def __init__(
        self,
        signing_secret: str,
        *,
        resume: Resumer = prefect_resumer,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._secret = signing_secret
        self._resume = resume
        self._address = (host, port)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the Slack action server is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{ACTIONS_PATH}"

    def start(self) -> Self:
        if self._httpd is None:
            self._httpd = _Server(self._address, self._secret, self._resume)
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    from runbooks.settings import apply_defaults

    apply_defaults()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slack-block", required=True, help="SlackChannel block name")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3100)
    args = parser.parse_args(argv)
    from blocks.slack import SlackChannel

    channel = SlackChannel.load(args.slack_block)
    if channel.signing_secret is None:
        parser.error(f"Slack block {args.slack_block!r} has no signing secret")
    logging.basicConfig(level=logging.INFO)
    server = SlackActionServer(
        channel.signing_secret.get_secret_value(), host=args.host, port=args.port
    ).start()
    print(f"Slack actions: {server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
