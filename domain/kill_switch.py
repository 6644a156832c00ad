"""The kill switch: what it refuses, in words, and the target programs' own pause.

Two layers, both engaged by the kill-switch runbook (``flows/kill_switch.py``):

- the *recorded* switch (``store.records.kill_switch``): every runbook that writes to a
  program checks it first and refuses while it is engaged (upgrade, migration,
  scheduled writes); only the emergency rollback writes under it;
- the program's own pause instruction where it has one (a ``ProgramPauser``,
  ``programs/plugin.py``), so users' transactions stop too, not only the runbooks'.

Releasing either needs a sign-off: members sign a ``KillSwitchRelease`` line of their
own (not an upgrade's), reviewed off-chain under the emergency threshold whatever the
policy's backend: releasing is a records change plus the program's own unpause, never a
loader write, so there is no on-chain proposal to approve. Plain Python: no Prefect import.

Under a Squads policy (``squads_release_policy``) the signers are the Squads multisig's
members with Vote permission and the count is its threshold, read from chain at release
time. Why these: the multisig's vault holds the upgrade authority, so its voters under its
threshold are the people who already decide every write to the program, and a member the
team removes from the multisig can no longer release. The policy block's member list is
only names and Slack ids under Squads (it may be empty or stale), so it never grants a
signature. Squads has one threshold and no emergency one (the rollback under Squads runs
under it too), so the block's emergency threshold is not consulted. The release stays an
off-chain signed line rather than a Squads proposal: it writes no program code and needs no
vault signature, and a Squads proposal would make releasing depend on the Squads program
and its time lock in the middle of an incident.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from core.approval import Action, check_restricted_ascii, line_head
from core.errors import InputError, KillSwitchEngaged
from domain.policy import Policy
from domain.report import fields_table
from programs.squads.client import Multisig
from store.models import ALL_PROGRAMS
from store.records.kill_switch import RELEASE_KIND, KillSwitchRecord
from store.records.proposals import ProposalRecord

# The sha256 field of a release of every program (``*``): there is no one binary.
NO_HASH = "none"


def refusal(switches: Sequence[KillSwitchRecord], action: str) -> KillSwitchEngaged:
    """The error a runbook raises when ``switches`` stop ``action``."""
    described = "; ".join(
        f"{s.scope} since {s.changed_at.isoformat(timespec='seconds')} by {s.actor} ({s.reason})"
        for s in switches
    )
    return KillSwitchEngaged(
        f"kill switch engaged: {action} refused. Engaged for {described}. Release it with the "
        "kill-switch runbook (action release, which needs a sign-off), then run this again."
    )


@dataclass(frozen=True)
class KillSwitchRelease:
    """What members sign to release a kill switch; every field is in the signed line.

    Its own wording (``kill-switch: release``, no governance or buffer), so a signature
    over an upgrade can never release a switch, nor a release signature approve an
    upgrade; the proposal id ties it to one release, the hash to the code that serves
    users once released.
    """

    cluster: str  # the cluster's genesis hash (base58), as in every approval line
    program: str  # base58, or * for every program of the cluster
    proposal: str  # the release proposal's id in the records
    sha256: str  # the program's verifiable-build hash now; "none" for *

    @classmethod
    def for_proposal(cls, proposal: ProposalRecord) -> KillSwitchRelease:
        if proposal.kind != RELEASE_KIND:
            raise InputError(f"proposal #{proposal.id} is a {proposal.kind}, not a {RELEASE_KIND}")
        return cls(
            cluster=proposal.genesis_hash or "",
            program=proposal.program_id,
            proposal=str(proposal.id),
            sha256=proposal.buffer_hash or NO_HASH,
        )

    def message(self, action: Action = "approve") -> str:
        text = (
            f"{line_head(action, self.cluster)}kill-switch: release; "
            f"program: {self.program}; proposal: {self.proposal}; sha256: {self.sha256}"
        )
        check_restricted_ascii(text)
        return text


def still_serving_warning(program_id: str) -> str:
    """What the run log and Slack say when the switch is engaged without a program pause."""
    scope = "every program" if program_id == ALL_PROGRAMS else program_id
    return (
        f"{scope} is STILL SERVING USERS: no program pause block was given, so only the "
        "runbooks stop, not users' transactions. To stop users too, create a Program Pause "
        "block (Prefect UI: Blocks > + > Program Pause: program id, pause account, admin "
        "keypair) and run kill-switch engage again with program_pause_block set to it."
    )


def squads_release_policy(policy: Policy, multisig: Multisig, address: str) -> Policy:
    """The release's signers under Squads: the multisig's voters and threshold, no wait;
    the policy block's profiles kept for names and Slack ids (see the module docstring)."""
    voters = tuple(str(k) for k in multisig.voters)
    if not 1 <= multisig.threshold <= len(voters):
        raise InputError(
            f"the Squads multisig {address} has threshold {multisig.threshold} of "
            f"{len(voters)} members with Vote permission: no release could pass; fix the "
            "multisig (a config transaction) before releasing"
        )
    return dataclasses.replace(
        policy,
        name=address,
        members=voters,
        threshold=multisig.threshold,
        timelock_seconds=0,
        emergency_threshold=None,
        emergency_timelock_seconds=None,
    )


def release_form_description(
    *,
    subject: KillSwitchRelease,
    switch: KillSwitchRecord,
    reason: str,
    requested_by: str,
    program_pause_block: str | None,
    threshold: int,
    members: Collection[str],
    approved_by: Collection[str],
    signing_section: Sequence[str],
    threshold_source: str = "emergency threshold",
) -> str:
    """The markdown of the release's sign-off form: what is being signed, in words."""
    scope = "every program" if subject.program == ALL_PROGRAMS else f"`{subject.program}`"
    pause = (
        f"block `{program_pause_block}`: the program is unpaused on release"
        if program_pause_block
        else "none given: only the runbooks' switch is released"
    )
    engaged = switch.changed_at.isoformat(timespec="seconds")
    return "\n".join(
        [
            f"## Sign off the release of the kill switch (proposal #{subject.proposal})",
            "",
            f"**You are signing the release of the kill switch of {scope} on "
            f"{switch.cluster}** (genesis hash `{subject.cluster}`). Once {threshold} members "
            "sign, the runbooks may write to it again (upgrade, migration, scheduled "
            "writes) and its own pause is lifted, so users' transactions go through again.",
            "",
            *fields_table(
                [
                    ("Cluster", subject.cluster),
                    ("Program", scope),
                    ("Engaged since", f"{engaged} by {switch.actor}: {switch.reason}"),
                    ("Program's own pause", pause),
                    ("sha256 now (verifiable build)", f"`{subject.sha256}`"),
                    ("Why release", reason),
                    ("Requested by", requested_by),
                    (
                        "Approvals",
                        f"{len(approved_by)} of {threshold} needed ({threshold_source})",
                    ),
                ],
                header=("Release proposal", f"#{subject.proposal}"),
            ),
            "",
            *signing_section,
            "Then paste your public key and the signature below. This line is reviewed here,",
            "off-chain (a release writes no program code). To reject or cancel the release,",
            "pick that decision and sign the same line with `action: reject` or",
            "`action: cancel` in place of `action: approve`.",
        ]
    )


__all__ = [
    "KillSwitchRelease",
    "refusal",
    "release_form_description",
    "squads_release_policy",
    "still_serving_warning",
]
