"""Slack buttons that resume a paused run: sign-offs that need no signature.

Acknowledging a health alert or confirming a kill-switch release needs a person, not an
ed25519 signature. The runbook pauses (``flows._confirmations``), posts a message with
buttons (``domain.messages.confirm_buttons``), and Slack sends the click here. This
handler:

1. verifies Slack's request signature, v0 (``slack_sdk.signature.SignatureVerifier``:
   HMAC-SHA256 of ``v0:{X-Slack-Request-Timestamp}:{raw body}`` under the app's signing
   secret, the timestamp within 5 minutes so a replayed click is refused) — anything
   unsigned or badly signed gets 401 and changes nothing;
2. reads the button's value (run id, pause key, decision, and the Slack users allowed to
   press it, when the message carries that list) and the clicking user;
3. lets only members press: the button's own list, else the Slack user ids of the
   policies the handler was started with. Anyone else gets an ephemeral refusal and
   nothing changes;
4. answers Slack at once (HTTP 200: Slack wants an answer within 3 s), then resumes the
   run in a worker thread, only if it is paused at exactly that key, with the Slack
   user's identity as the run input, and tells the user the outcome through the
   payload's ``response_url``. A click on a stale message changes nothing.

Run it next to the Prefect API (``python -m runbooks.slack_handler --slack-block NAME
--policy-block NAME``) behind the HTTPS endpoint configured as the Slack app's
Interactivity Request URL.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Self
from urllib.parse import parse_qs

from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.webhook import WebhookClient

from core.errors import RunbookError, SlackRequestRejected
from core.http_server import BackgroundHTTPServer
from domain.messages import ACTION_PREFIX, DECISIONS

logger = logging.getLogger(__name__)

SIGNATURE_VERSION = "v0"
MAX_SKEW_SECONDS = 5 * 60
MAX_BODY_BYTES = 64 * 1024
ACTIONS_PATH = "/slack/actions"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 request signature of ``body`` sent at ``timestamp``."""
    signed = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    assert signed is not None  # None only without a timestamp
    return signed


class _At(Clock):
    def __init__(self, now: float | None) -> None:
        self._now = now

    def now(self) -> float:
        return time.time() if self._now is None else self._now


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
    if abs(_At(now).now() - moment) > MAX_SKEW_SECONDS:
        raise SlackRequestRejected(401, "stale timestamp (older than 5 minutes): replay refused")
    if not SignatureVerifier(secret, clock=_At(now)).is_valid(body, stamp, sent):
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
    # Slack users the message allows to press this button (empty: the handler decides).
    allowed: tuple[str, ...] = ()
    # Where Slack takes the outcome after the quick answer (absent in hand-made payloads).
    response_url: str | None = None

    def run_input(self) -> dict[str, Any]:
        """The ``flows._confirmations.Confirmation`` input this click resumes with."""
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
        allowed = tuple(str(u) for u in value.get("allow") or ())
    except (ValueError, KeyError, TypeError, AttributeError):
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
        allowed=allowed,
        response_url=payload.get("response_url") or None,
    )


def refusal(action: SlackAction, members: Collection[str]) -> str | None:
    """Why this user may not press this button, or None when they may."""
    allowed = set(action.allowed) or set(members)
    if not allowed:
        return (
            "Only multisig members may press this button, and no member has a Slack user id "
            "here: add slack_user_id to the members of the policy block and start the "
            "handler with --policy-block. Nothing changed."
        )
    if action.user_id not in allowed:
        return "Only multisig members may press this button. Nothing changed."
    return None


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


def accept(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    members: Collection[str] = (),
    now: float | None = None,
) -> tuple[int, dict[str, Any], SlackAction | None]:
    """Everything decided before Slack gets its answer: (HTTP status, JSON reply, the
    action to resume after answering, or None when nothing is to be resumed)."""
    try:
        verify_request(secret, headers, body, now)
        action = parse_action(body)
    except SlackRequestRejected as exc:
        logger.warning("Slack request refused: %s", exc)
        return exc.status, {"ok": False, "error": str(exc)}, None
    if action is None:
        return 200, {"ok": True, "text": "Not a runbooks action; nothing changed."}, None
    refused = refusal(action, members)
    if refused is not None:
        logger.warning("Slack user %s refused at %s: not a member", action.user_id, action.key)
        return 200, _ephemeral(refused), None
    return 200, _ephemeral(f"<@{action.user_id}>: {action.decision} received…"), action


def handle(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    resume: Resumer = prefect_resumer,
    now: float | None = None,
    members: Collection[str] = (),
) -> tuple[int, dict[str, Any]]:
    """One request, resumed before returning (the server resumes after answering).

    Only a verified click by a member can resume a run.
    """
    status, reply, action = accept(secret, headers, body, members, now)
    if action is None:
        return status, reply
    return 200, _ephemeral(resume(action))


def _ephemeral(text: str) -> dict[str, Any]:
    return {"response_type": "ephemeral", "replace_original": False, "text": text}


def tell(response_url: str, text: str) -> None:
    """Post the outcome to the click's ``response_url`` (visible to that user only)."""
    answer = WebhookClient(response_url, timeout=10).send(
        text=text, response_type="ephemeral", replace_original=False
    )
    if answer.status_code != 200:
        raise RunbookError(f"Slack's response_url answered {answer.status_code}: {answer.body}")


class _Resumer:
    """One worker thread: resumes runs after Slack has had its answer, in click order."""

    def __init__(self, resume: Resumer) -> None:
        self._resume = resume
        self._queue: queue.Queue[SlackAction | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="slack-resumer", daemon=True)
        self._thread.start()

    def submit(self, action: SlackAction) -> None:
        self._queue.put(action)

    def _work(self) -> None:
        while (action := self._queue.get()) is not None:
            try:
                text = self._resume(action)
            except Exception as exc:  # the next click must still be served
                logger.exception("resuming run %s failed", action.run_id)
                text = f"Resuming the run failed ({type(exc).__name__}); nothing changed."
            if action.response_url:
                try:
                    tell(action.response_url, text)
                except Exception as exc:
                    logger.warning("could not tell Slack the outcome: %s", exc)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)


class _Handler(BaseHTTPRequestHandler):
    # core.http_server's server, carrying ``actions`` (the SlackActionServer).
    server: Any

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != ACTIONS_PATH:
            self._reply(404, {"ok": False, "error": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._reply(413, {"ok": False, "error": "request too large"})
            return
        body = self.rfile.read(length)
        actions: SlackActionServer = self.server.actions
        status, reply, action = accept(
            actions.secret, dict(self.headers.items()), body, actions.members
        )
        self._reply(status, reply)  # Slack has its answer before anything slow happens
        if action is not None:
            actions.submit(action)

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


class SlackActionServer(BackgroundHTTPServer):
    """Serves ``POST /slack/actions`` from a daemon thread (``port=0`` picks one)."""

    def __init__(
        self,
        signing_secret: str,
        *,
        resume: Resumer = prefect_resumer,
        members: Collection[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.secret = signing_secret
        self.members = frozenset(members)
        self._resume = resume
        self._resumer: _Resumer | None = None
        super().__init__(_Handler, host=host, port=port, name="slack-actions", actions=self)

    @property
    def url(self) -> str:
        return f"{super().url}{ACTIONS_PATH}"

    def submit(self, action: SlackAction) -> None:
        """Resume ``action``'s run on the worker thread, after Slack has its answer."""
        assert self._resumer is not None, "submitted while the server is stopped"
        self._resumer.submit(action)

    def start(self) -> Self:
        if not self.started:
            self._resumer = _Resumer(self._resume)
            super().start()
        return self

    def stop(self) -> None:
        super().stop()
        if self._resumer is not None:
            self._resumer.stop()
            self._resumer = None


def main(argv: list[str] | None = None) -> int:
    from core.settings import apply_defaults

    apply_defaults()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slack-block", required=True, help="SlackChannel block name")
    parser.add_argument(
        "--policy-block",
        action="append",
        default=[],
        help="MultisigPolicy block whose members (by Slack user id) may press buttons; repeat "
        "for several",
    )
    parser.add_argument(
        "--allow-user", action="append", default=[], help="also allow this Slack user id"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3100)
    args = parser.parse_args(argv)
    from blocks.multisig import MultisigPolicy
    from blocks.slack import SlackChannel

    channel = SlackChannel.load(args.slack_block)
    if channel.signing_secret is None:
        parser.error(f"Slack block {args.slack_block!r} has no signing secret")
    members = set(args.allow_user)
    for name in args.policy_block:
        members |= MultisigPolicy.load(name).policy(name).slack_user_ids()
    logging.basicConfig(level=logging.INFO)
    server = SlackActionServer(
        channel.signing_secret.get_secret_value(),
        members=members,
        host=args.host,
        port=args.port,
    ).start()
    print(f"Slack actions: {server.url} ({len(members)} Slack users may press)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
