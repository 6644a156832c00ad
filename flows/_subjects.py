"""Which line members sign for a recorded proposal, by its kind.

``runbooks sign --proposal N`` and the demos read a proposal from the records and need
the exact line its sign-off form shows: an upgrade's or rollback's approval, or a
kill-switch release's own line.
"""

from __future__ import annotations

from core.errors import InputError
from domain.kill_switch import KillSwitchRelease
from domain.signoff import Signable
from store.records.kill_switch import RELEASE_KIND
from store.records.proposals import ProposalRecord


def signing_subject(proposal: ProposalRecord) -> Signable:
    """The subject whose ``message(action)`` members sign for ``proposal``."""
    if proposal.kind == RELEASE_KIND:
        return KillSwitchRelease.for_proposal(proposal)
    if proposal.kind in ("set-authority", "make-immutable"):
        # The new authority is not a field of the record: the form's line is the source.
        raise InputError(
            f"proposal #{proposal.id} is a {proposal.kind} proposal: sign the exact line its "
            'sign-off form shows with `runbooks sign --message "<line>" --keypair <file>`'
        )
    from flows.upgrade import approval_subject  # the upgrade flow's imports are heavy

    return approval_subject(proposal)
