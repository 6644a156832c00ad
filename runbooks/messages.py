"""Slack Block Kit messages for runbook events (plain data, no Slack client here).

Each builder returns ``(text, blocks)``: ``text`` is the notification fallback Slack
shows in alerts and logs, ``blocks`` the Block Kit layout.
"""

from __future__ import annotations

from typing import Any

Blocks = list[dict[str, Any]]


def _section(markdown: str) -> dict[str, Any]:
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
) -> tuple[str, Blocks]:
    text = f"Upgrade proposal #{proposal_id} for {program} needs {threshold} of {members} sign-offs"
    blocks: Blocks = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"Upgrade proposal #{proposal_id}"},
        },
        _section(
            f"*Program* `{program}`\n*Buffer* `{buffer}`\n*sha256* `{sha256}`\n"
            f"*Proposer* {proposer}\n*Why* {description}"
        ),
        _section(
            f"{threshold} of {members} members must sign this exact message:\n"
            f"```{approval_message}```\n"
            'Sign with `solana sign-offchain-message "<message>" -k <your keypair>` or '
            f"`runbooks sign --proposal {proposal_id} --keypair <file>`, then paste your "
            "pubkey and signature into the paused run's Resume form."
        ),
        *_link_button("Open the paused run", run_url),
    ]
    return text, blocks


def approval_progress(
    *, proposal_id: int, member: str, accepted: bool, reason: str | None, have: int, need: int
) -> tuple[str, Blocks]:
    if accepted:
        text = f"Proposal #{proposal_id}: approval from {member} accepted ({have}/{need})"
    else:
        text = f"Proposal #{proposal_id}: sign-off from {member} refused: {reason}"
    return text, [_section(text)]


def timelock_started(*, proposal_id: int, executes_after: str) -> tuple[str, Blocks]:
    text = f"Proposal #{proposal_id} reached its threshold; the timelock ends {executes_after}"
    return text, [_section(text)]


def executed(
    *, proposal_id: int, program: str, signature: str | None, new_hash: str, outcome: str
) -> tuple[str, Blocks]:
    text = f"Proposal #{proposal_id}: {program} {outcome}, now at sha256 {new_hash}"
    if signature:
        text += f" (tx {signature})"
    return text, [_section(text)]


def failed(*, what: str, error: str, run_url: str | None) -> tuple[str, Blocks]:
    text = f"{what} failed: {error}"
    return text, [_section(f":rotating_light: {text}"), *_link_button("Open the run", run_url)]
