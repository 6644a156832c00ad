"""The on-chain sign-off backend over JSON-RPC: reading the upgrade_manager's governance
and proposals, and turning its refusals into sentences for the records.

Plain async functions over solana-py's ``AsyncClient`` (no Prefect); ``tasks.governance``
wraps them. The chain is the source of truth: members, threshold and timelock are the
governance account's, approvals are the proposal's bitmap, and the timelock runs on the
cluster's Clock.
"""

from __future__ import annotations

import dataclasses
import re
import struct
from dataclasses import dataclass

from solana.rpc.async_api import AsyncClient
from solders.pubkey import Pubkey
from solders.sysvar import CLOCK

from core.approval import ACTIONS, Action, ApprovalSubject
from core.errors import (
    AccountNotFound,
    ChainError,
    InputError,
    PolicyViolation,
    TransactionFailed,
)
from domain.policy import Policy
from programs.rpc import fetch_account
from programs.upgrade_manager import client as um
from programs.upgrade_manager.client import Governance, Proposal, ProposalStatus
from programs.upgrade_manager.client import UpgradeManagerError as E

# What the records keep when the program refuses a relayed sign-off.
REFUSALS: dict[E, str] = {
    E.NotAMember: "the program refused it: the key is not a member of the governance",
    E.AlreadyVoted: "the program refused it: this member has already signed off on chain",
    E.MessageMismatch: (
        "the program refused it: the signature is not over this proposal's message "
        "for this decision"
    ),
    E.ProposalExecuted: "the program refused it: the proposal has already executed",
    E.ProposalCancelled: "the program refused it: the proposal was cancelled on chain",
    E.ProposalRejected: "the program refused it: the proposal was rejected on chain",
    E.EnvelopeSignerCount: (
        "the program refused it: the signed envelope must name exactly one signer, you"
    ),
    E.EnvelopeSigner: "the program refused it: the signed envelope names another signer key",
    E.EnvelopeFormat: "the program refused it: the message format is not 0 (restricted ASCII)",
    E.EnvelopeApplicationDomain: (
        "the program refused it: the application domain is neither zero nor the governance"
    ),
    E.EnvelopeLength: "the program refused it: the envelope's length disagrees with the line",
    E.StaleProposal: (
        "the program refused it: the governance's members or thresholds changed after "
        "this proposal was made; cancel it and propose again"
    ),
}
_CUSTOM_ERROR = re.compile(r"custom program error: 0x([0-9a-fA-F]+)")
_CLOCK_UNIX_TIMESTAMP = 32  # slot, epoch_start_timestamp, epoch, leader_schedule_epoch


async def read_governance(
    client: AsyncClient, address: Pubkey, program_id: Pubkey = um.PROGRAM_ID
) -> Governance:
    account = await fetch_account(client, address)
    if account is None:
        raise AccountNotFound(
            f"governance {address} does not exist on this cluster; create it with "
            "upgrade_manager's create_governance, or fix the multisig block's governance"
        )
    if account.owner != program_id:
        raise ChainError(
            f"{address} is owned by {account.owner}, not the upgrade_manager program "
            f"{program_id}: not a governance account"
        )
    try:
        return Governance.decode(bytes(account.data))
    except ValueError as exc:
        raise ChainError(f"{address} is not a governance account: {exc}") from None


async def read_proposal(client: AsyncClient, address: Pubkey) -> Proposal | None:
    """The on-chain proposal at ``address``; None if there is no account there."""
    account = await fetch_account(client, address)
    if account is None:
        return None
    try:
        return Proposal.decode(bytes(account.data))
    except ValueError as exc:
        raise ChainError(f"{address} is not an upgrade_manager proposal: {exc}") from None


async def onchain_approval_line(
    client: AsyncClient, address: Pubkey, action: Action = "approve"
) -> tuple[str, Governance, Proposal]:
    """The exact line a member signs for the on-chain proposal at ``address``, rebuilt from
    the Proposal and Governance accounts as upgrade_manager rebuilds it (no records
    database needed), with both accounts for the caller to show."""
    account = await fetch_account(client, address)
    if account is None:
        raise AccountNotFound(
            f"no account at {address} on this cluster: check the address (the form's "
            "'On-chain proposal account') and the RPC URL"
        )
    try:
        proposal = Proposal.decode(bytes(account.data))
    except ValueError as exc:
        raise ChainError(f"{address} is not an upgrade_manager proposal: {exc}") from None
    # A lookalike account would pass decoding; only the program's own PDA is the proposal.
    program_id = account.owner
    if um.proposal_address(proposal.governance, proposal.index, program_id) != address:
        raise ChainError(
            f"{address} is not proposal {proposal.index} of governance {proposal.governance} "
            f"under program {program_id}: not a genuine upgrade_manager proposal"
        )
    governance = await read_governance(client, proposal.governance, program_id)
    return um.approval_text(proposal.governance, proposal, action), governance, proposal


async def chain_time(client: AsyncClient) -> int:
    """The cluster's Clock unix_timestamp: what the program checks the timelock against."""
    account = await fetch_account(client, CLOCK)
    if account is None:
        raise ChainError("the cluster returned no Clock sysvar account")
    return int(struct.unpack_from("<q", bytes(account.data), _CLOCK_UNIX_TIMESTAMP)[0])


def check_policy_matches(policy: Policy, governance: Governance, address: Pubkey) -> None:
    """The multisig block must say what the chain enforces; list every difference."""
    findings = []
    chain_members = sorted(str(m) for m in governance.members)
    if sorted(policy.members) != chain_members:
        findings.append(
            f"members differ from governance {address}'s on chain ({', '.join(chain_members)})"
        )
    if policy.threshold != governance.threshold:
        findings.append(
            f"threshold {policy.threshold} but governance {address} requires {governance.threshold}"
        )
    if policy.timelock_seconds != governance.timelock:
        findings.append(
            f"timelock {policy.timelock_seconds} s but governance {address} enforces "
            f"{governance.timelock} s"
        )
    if findings:
        # Either the block is stale or the governance is not the one the team meant.
        raise PolicyViolation(
            [
                *findings,
                "update the block to the governance on chain (or point it at the right one)",
            ]
        )


def with_chain_emergency(policy: Policy, governance: Governance, address: str) -> Policy:
    """``policy`` with the emergency threshold and timelock the governance enforces; a block
    that sets other values is refused (it would tell members the wrong rules)."""
    findings = []
    if policy.emergency_threshold not in (None, governance.emergency_threshold):
        findings.append(
            f"emergency threshold {policy.emergency_threshold} but governance {address} "
            f"requires {governance.emergency_threshold}"
        )
    if policy.emergency_timelock_seconds not in (None, governance.emergency_timelock):
        findings.append(
            f"emergency timelock {policy.emergency_timelock_seconds} s but governance "
            f"{address} enforces {governance.emergency_timelock} s"
        )
    if findings:
        raise PolicyViolation(
            [*findings, "update the block to the governance on chain (or leave them empty)"]
        )
    return dataclasses.replace(
        policy,
        emergency_threshold=governance.emergency_threshold,
        emergency_timelock_seconds=governance.emergency_timelock,
    )


def decisions(governance: Governance, proposal: Proposal) -> dict[str, str]:
    """Member -> "approve" / "reject", as the proposal's bitmaps record them on chain."""
    out = {str(m): "approve" for m in proposal.approved_by(governance)}
    out.update({str(m): "reject" for m in proposal.rejected_by(governance)})
    return out


def closed_status(proposal: Proposal) -> str | None:
    """ "cancelled", "rejected" or "executed" once the chain has closed the proposal."""
    return {
        ProposalStatus.CANCELLED: "cancelled",
        ProposalStatus.REJECTED: "rejected",
        ProposalStatus.EXECUTED: "executed",
    }.get(proposal.status)


def program_error(exc: TransactionFailed, program_id: Pubkey = um.PROGRAM_ID) -> E | None:
    """The upgrade_manager error a failed transaction carries in its logs, if any."""
    prefix = f"Program {program_id} failed: "
    for line in exc.logs:
        match = _CUSTOM_ERROR.search(line)
        if match and line.startswith(prefix):
            try:
                return E(int(match.group(1), 16))
            except ValueError:
                return None
    return None


def refusal(exc: TransactionFailed, program_id: Pubkey = um.PROGRAM_ID) -> str:
    """Why the chain refused a relayed sign-off, in words the records keep."""
    code = program_error(exc, program_id)
    if code is not None:
        return REFUSALS.get(code, f"the program refused it: {code.name} ({code.value})")
    if any("Ed25519SigVerify" in line for line in exc.logs) or "Custom(2)" in str(exc):
        return "the signature does not verify (Ed25519SigVerify refused it)"
    return f"the chain refused it: {exc}"


@dataclass(frozen=True)
class ChainLine(ApprovalSubject):
    """What members sign for an on-chain proposal of any kind, as upgrade_manager rebuilds
    it from its accounts (``um.approval_text``): read from the chain, never rebuilt here,
    so the form and the relay always show the program's own line."""

    lines: tuple[tuple[str, str], ...] = ()  # (action, line) for approve, reject, cancel

    def message(self, action: Action = "approve") -> str:
        for name, line in self.lines:
            if name == action:
                return line
        raise InputError(f"action: {action!r} is not one of {', '.join(n for n, _ in self.lines)}")


def chain_line(governance: Pubkey, proposal: Proposal) -> ChainLine:
    """The lines of ``proposal`` (a decoded on-chain proposal of ``governance``)."""
    return ChainLine(
        governance=str(governance),
        proposal=str(proposal.index),
        program=str(proposal.program),
        buffer=str(proposal.buffer) if proposal.kind in _BUFFER_KINDS else "",
        sha256=proposal.buffer_hash.hex() if proposal.kind in _BUFFER_KINDS else "",
        cluster=proposal.cluster,
        lines=tuple((a, um.approval_text(governance, proposal, a)) for a in ACTIONS),
    )


_BUFFER_KINDS = (um.ProposalKind.UPGRADE, um.ProposalKind.EMERGENCY_UPGRADE)
