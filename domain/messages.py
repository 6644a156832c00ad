"""Slack Block Kit messages for runbook events (plain data, no Slack client here).

Each builder returns ``(text, blocks)``: ``text`` is the notification fallback Slack
shows in alerts and logs, ``blocks`` the Block Kit layout.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

Blocks = list[dict[str, Any]]


# The buttons' wire format, read back by runbooks/slack_handler.py.
ACTION_PREFIX = "runbooks-confirm-"
DECISIONS = ("acknowledge", "confirm", "decline")
MAX_VALUE_CHARS = 2000  # Slack's limit on a button's value


def encode_action_value(run_id: str, key: str, decision: str, allowed: Collection[str] = ()) -> str:
    """The button value: which run, which pause, which decision, and who may press it
    (Slack user ids; empty: the handler's member list decides)."""
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(DECISIONS)}")
    value: dict[str, Any] = {"run": str(run_id), "key": key, "decision": decision}
    if allowed:
        value["allow"] = sorted(allowed)
    text = json.dumps(value, separators=(",", ":"))
    if len(text) > MAX_VALUE_CHARS:
        raise ValueError(
            f"button value is {len(text)} characters, over Slack's {MAX_VALUE_CHARS}: "
            "allow fewer Slack users on the button and list the rest in the handler's policy"
        )
    return text


def section(markdown: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": markdown}}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": text}}


def _link_button(label: str, url: str | None) -> list[dict[str, Any]]:
    if not url:
        return []
    return [
        {
            "type": "actions",
            "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": label}, "url": url}
            ],
        }
    ]


STATUS_BLOCK_ID = "runbooks-signoff-status"


def mention(label: str, slack_user_id: str | None) -> str:
    """``<@U123>`` (Slack notifies that user) followed by the name, or the name alone."""
    return f"<@{slack_user_id}> {label}" if slack_user_id else label


def signoff_status(
    *,
    have: int,
    need: int,
    signed: list[str],
    missing: list[tuple[str, str | None]],
    closed: str | None = None,
) -> dict[str, Any]:
    """The status lines of a proposal's first message: have/need, who signed, who not.

    ``signed`` are member labels; ``missing`` (label, Slack user id or None) pairs are
    @mentioned. ``chat.update`` replaces this block (``STATUS_BLOCK_ID``) as sign-offs
    arrive.
    """
    lines = [f"*Sign-offs: {have} of {need}*" + (f" — {closed}" if closed else "")]
    lines.append("Signed: " + (", ".join(signed) or "nobody yet"))
    if not closed and missing:
        lines.append("Waiting for: " + ", ".join(mention(n, u) for n, u in missing))
    return {**section(_truncate("\n".join(lines))), "block_id": STATUS_BLOCK_ID}


def proposal_created(
    *,
    proposal_id: int,
    program: str,
    buffer: str,
    sha256: str,
    description: str,
    proposer: str,
    threshold: int,
    members: int,
    approval_message: str,
    run_url: str | None,
    number: str | None = None,
    kind: str = "upgrade",
    sign_command: str | None = None,
    status: dict[str, Any] | None = None,
) -> tuple[str, Blocks]:
    """The first message of a proposal's thread. ``number`` is the proposal number in the
    signed line (the on-chain index for the onchain backend; the records id otherwise)."""
    number = number or str(proposal_id)
    sign_command = sign_command or '`runbooks sign --keypair <file> --message "<message>"`'
    title = f"{kind.capitalize()} proposal {number}"
    text = f"{title} for {program} needs {threshold} of {members} sign-offs"
    blocks: Blocks = [
        _header(title[:150]),
        section(
            f"*Program* `{program}`\n*Buffer* `{buffer}`\n*sha256* `{sha256}`\n"
            f"*Proposer* {proposer}\n*Why* {_truncate(description, 1500)}"
        ),
        *([status] if status is not None else []),
        section(
            f"{threshold} of {members} members must sign this exact message:\n"
            f"```{approval_message}```\n"
            'Sign with `solana sign-offchain-message -k <your keypair> "<message>"` or '
            f"{sign_command}, then paste your pubkey and signature into the paused run's "
            "Resume form."
        ),
        *_link_button("Open the paused run", run_url),
    ]
    return text, blocks


def squads_proposal_created(
    *,
    proposal_id: int,
    program: str,
    buffer: str,
    sha256: str,
    description: str,
    proposer: str,
    multisig: str,
    transaction_index: int,
    proposal_address: str,
    threshold: int,
    voters: int,
    time_lock: int,
    app_link: str,
    approve_command: str,
    run_url: str | None,
    kind: str = "upgrade",
) -> tuple[str, Blocks]:
    """The first message of a Squads proposal's thread (an upgrade, a rollback, a key
    rotation: ``kind``): where members vote."""
    title = f"{kind.capitalize()} proposal {transaction_index} of Squads multisig {multisig}"
    text = (
        f"{kind.capitalize()} of {program} proposed in Squads (transaction {transaction_index}): "
        f"{threshold} of {voters} members must approve"
    )
    blocks: Blocks = [
        _header(title[:150]),
        section(
            f"*Program* `{program}`\n*Buffer* `{buffer}`\n*sha256* `{sha256}`\n"
            f"*Proposer* {proposer}\n*Why* {_truncate(description, 1500)}"
        ),
        section(
            f"{threshold} of {voters} members with Vote permission must approve proposal "
            f"`{proposal_address}` (records #{proposal_id}); it executes {time_lock} s after "
            f"approval. Approve where you already do: the Squads app ({app_link}), the "
            f"Squads CLI, a Ledger, or\n```{approve_command}```"
        ),
        *_link_button("Open it in the Squads app", app_link),
        *_link_button("Open the run", run_url),
    ]
    return text, blocks


def approval_progress(
    *,
    proposal_id: int | str,
    member: str,
    accepted: bool,
    reason: str | None,
    have: int,
    need: int,
    decision: str = "approve",
    waiting_for: list[tuple[str, str | None]] | None = None,
) -> tuple[str, Blocks]:
    """One sign-off attempt, as a reply in the proposal's thread. ``member`` is a label
    (name and short key); ``waiting_for`` members are @mentioned while one is missing."""
    # A cancel closes the proposal: announced as such, never as a step towards approval.
    cancelled = accepted and decision == "cancel"
    if cancelled:
        text = f"Proposal {proposal_id} cancelled by {member}: it will not be executed"
    elif accepted and decision == "reject":
        text = f"Proposal {proposal_id}: reject from {member} accepted ({have}/{need} approvals)"
    elif accepted:
        text = f"Proposal {proposal_id}: approve from {member} accepted ({have}/{need})"
    else:
        text = f"Proposal {proposal_id}: {decision} from {member} refused: {reason}"
    body = text
    if waiting_for and have < need and not cancelled:
        body += "\nStill waiting for: " + ", ".join(mention(n, u) for n, u in waiting_for)
    return text, [section(_truncate(body))]


def timelock_started(*, proposal_id: int, executes_after: str) -> tuple[str, Blocks]:
    text = f"Proposal #{proposal_id} reached its threshold; the timelock ends {executes_after}"
    return text, [section(text)]


def timelock_cancel(
    *, proposal_id: int, member: str, accepted: bool, reason: str | None, comment: str = ""
) -> tuple[str, Blocks]:
    """A member's cancel during the timelock: accepted (no upgrade) or refused (and why)."""
    if accepted:
        text = f"Proposal #{proposal_id} cancelled by {member} during its timelock: not upgraded"
        if comment:
            text += f" ({comment})"
    else:
        text = f"Proposal #{proposal_id}: cancel from {member} refused: {reason}"
    return text, [section(text)]


def executed(
    *, proposal_id: int, program: str, signature: str | None, new_hash: str, outcome: str
) -> tuple[str, Blocks]:
    text = f"Proposal #{proposal_id}: {program} {outcome}, now at sha256 {new_hash}"
    if signature:
        text += f" (tx {signature})"
    return text, [section(text)]


def failed(*, what: str, error: str, run_url: str | None) -> tuple[str, Blocks]:
    text = f"{what} failed: {error}"
    return text, [section(f":rotating_light: {text}"), *_link_button("Open the run", run_url)]


# --- scheduled operations: health, timelocks, key rotation, confirmations ------------

_LEVEL_ICON = {"info": ":white_check_mark:", "warning": ":warning:", "critical": ":rotating_light:"}
# Block Kit caps a section's text at 3,000 characters; an alert lists this many findings.
_MAX_LISTED = 12


def _truncate(text: str, limit: int = 2900) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def confirm_buttons(
    run_id: str,
    key: str,
    choices: list[tuple[str, str]],
    *,
    confirm_text: str | None = None,
    allowed: Collection[str] = (),
) -> dict[str, Any]:
    """An actions block whose buttons resume the paused run ``run_id`` at pause ``key``.

    ``choices`` are (decision, label) pairs; the handler in ``runbooks.slack_handler``
    verifies Slack's signature and resumes the run with the clicking user's identity.
    ``allowed`` (Slack user ids) are the only users who may press; empty leaves it to the
    handler's member list.
    """
    elements = []
    for i, (decision, label) in enumerate(choices):
        button: dict[str, Any] = {
            "type": "button",
            "text": {"type": "plain_text", "text": label},
            "action_id": f"{ACTION_PREFIX}{decision}",
            "value": encode_action_value(run_id, key, decision, allowed),
        }
        if i == 0:
            button["style"] = "primary"
        if confirm_text and decision in ("confirm", "release"):
            button["confirm"] = {
                "title": {"type": "plain_text", "text": "Are you sure?"},
                "text": {"type": "mrkdwn", "text": _truncate(confirm_text, 300)},
                "confirm": {"type": "plain_text", "text": label},
                "deny": {"type": "plain_text", "text": "Cancel"},
            }
        elements.append(button)
    return {"type": "actions", "block_id": f"runbooks-{key}"[:255], "elements": elements}


def health_alert(
    *,
    level: str,
    cluster: str,
    findings: list[dict[str, str]],
    run_url: str | None,
    ack: tuple[str, str] | None = None,
    allowed: Collection[str] = (),
) -> tuple[str, Blocks]:
    """The daily health check found warnings or critical findings.

    ``ack`` (run id, pause key) adds an Acknowledge button for the on-call engineer.
    """
    notable = [f for f in findings if f["level"] != "info"]
    counts = {lv: sum(1 for f in findings if f["level"] == lv) for lv in ("critical", "warning")}
    text = (
        f"Health {level.upper()} on {cluster}: {counts['critical']} critical, "
        f"{counts['warning']} warning"
    )
    lines = [
        f"{_LEVEL_ICON.get(f['level'], '')} *{f['check']}* {f['subject']}: {f['message']}"
        for f in notable[:_MAX_LISTED]
    ]
    if len(notable) > _MAX_LISTED:
        lines.append(f"… and {len(notable) - _MAX_LISTED} more in the run's health table")
    blocks: Blocks = [
        _header(f"{_LEVEL_ICON.get(level, '')} Health {level} on {cluster}"[:150]),
        section(_truncate("\n".join(lines) or text)),
    ]
    if ack is not None:
        blocks.append(
            confirm_buttons(ack[0], ack[1], [("acknowledge", "Acknowledge")], allowed=allowed)
        )
    blocks += _link_button("Open the run", run_url)
    return text, blocks


def timelock_expiring(
    *, proposal_id: int, program: str, ends_at: str, kind: str = "upgrade"
) -> tuple[str, Blocks]:
    text = (
        f"Proposal #{proposal_id} ({kind} of {program}): the timelock ends {ends_at}; "
        "it can execute then. Cancel it before if it must not."
    )
    return text, [section(f":hourglass_flowing_sand: {text}")]


def rotation_reminder(*, keys: list[dict[str, Any]], run_url: str | None) -> tuple[str, Blocks]:
    """Keys due for rotation soon (or overdue); each dict: label, pubkey, role, due_at,
    days_left, status."""
    overdue = sum(1 for k in keys if k["status"] == "overdue")
    text = f"Key rotation: {len(keys)} key(s) due soon or overdue ({overdue} overdue)"
    lines = [
        f"{':rotating_light:' if k['status'] == 'overdue' else ':key:'} *{k['label']}* "
        f"`{k['pubkey']}` ({k['role']}): due {k['due_at']}"
        + (
            f", {-k['days_left']} days overdue"
            if k["days_left"] < 0
            else f", in {k['days_left']} days"
        )
        for k in keys[:_MAX_LISTED]
    ]
    blocks: Blocks = [
        _header("Key rotation reminder"),
        section(_truncate("\n".join(lines))),
        section(
            "Rotate program upgrade keys with the key-rotation runbook (sign-off, "
            "SetAuthorityChecked, verified on chain); governance and emergency keys by "
            "their own procedure, then register the new key."
        ),
        *_link_button("Open the review", run_url),
    ]
    return text, blocks


def authority_change_proposed(
    *,
    proposal_id: int,
    program: str,
    current: str,
    new_authority: str | None,
    threshold: int,
    members: int,
    approval_message: str,
    run_url: str | None,
) -> tuple[str, Blocks]:
    """What members sign to move (or remove) a program's upgrade authority."""
    what = "make IMMUTABLE (forever)" if new_authority is None else f"move to `{new_authority}`"
    text = (
        f"Authority proposal #{proposal_id} for {program}: {what}; needs {threshold} of "
        f"{members} sign-offs"
    )
    blocks: Blocks = [
        _header(f"Upgrade authority proposal #{proposal_id}"),
        section(f"*Program* `{program}`\n*Current authority* `{current}`\n*Change* {what}"),
        section(
            f"{threshold} of {members} members must sign this exact message:\n"
            f"```{approval_message}```\n"
            'Sign with `solana sign-offchain-message -k <your keypair> "<message>"` or '
            '`runbooks sign --message "<message>" --keypair <file>`, then paste your pubkey '
            "and signature into the paused run's Resume form."
        ),
        *_link_button("Open the paused run", run_url),
    ]
    return text, blocks


def confirmation_request(
    *,
    title: str,
    text: str,
    run_id: str,
    key: str,
    choices: list[tuple[str, str]],
    run_url: str | None,
    confirm_text: str | None = None,
    allowed: Collection[str] = (),
) -> tuple[str, Blocks]:
    """Ask for a sign-off that needs no signature (a button resumes the paused run)."""
    blocks: Blocks = [
        _header(title[:150]),
        section(_truncate(text)),
        confirm_buttons(run_id, key, choices, confirm_text=confirm_text, allowed=allowed),
        *_link_button("Open the paused run", run_url),
    ]
    return f"{title}: {text}", blocks
