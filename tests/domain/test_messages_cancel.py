"""A cancel closes the proposal: its announcement must never read as a step towards
approval (it once said "cancel from Alice accepted (1/3)", as approvals do)."""

from __future__ import annotations

from domain import messages


def test_a_cancel_is_announced_as_a_cancel_not_as_an_approval() -> None:
    text, blocks = messages.approval_progress(
        proposal_id=4,
        member="Alice (K1)",
        accepted=True,
        reason=None,
        have=1,
        need=3,
        decision="cancel",
        waiting_for=[("Bob (K2)", "U0BOB")],
    )
    assert text == "Proposal 4 cancelled by Alice (K1): it will not be executed"
    assert "accepted" not in text and "1/3" not in text
    assert "Still waiting" not in str(blocks)  # nobody is waited for any more


def test_a_rejection_and_an_approval_say_which_they_are() -> None:
    approve, _ = messages.approval_progress(
        proposal_id=4, member="Bob", accepted=True, reason=None, have=2, need=3
    )
    reject, _ = messages.approval_progress(
        proposal_id=4,
        member="Carol",
        accepted=True,
        reason=None,
        have=2,
        need=3,
        decision="reject",
    )
    refused, _ = messages.approval_progress(
        proposal_id=4,
        member="Dan",
        accepted=False,
        reason="bad signature",
        have=2,
        need=3,
        decision="cancel",
    )
    assert approve == "Proposal 4: approve from Bob accepted (2/3)"
    assert reject == "Proposal 4: reject from Carol accepted (2/3 approvals)"
    assert refused == "Proposal 4: cancel from Dan refused: bad signature"
