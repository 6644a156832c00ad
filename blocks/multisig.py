"""The multisig policy a runbook enforces: members, threshold, timelocks, backend."""

from __future__ import annotations

from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field

from domain.policy import DEFAULT_MIN_TIMELOCK_SECONDS, Member, Policy
from programs.upgrade_manager.client import PROGRAM_ID as UPGRADE_MANAGER_ID


class MultisigPolicy(Block):
    """M-of-N sign-off with a timelock, enforced by one of three backends."""

    _block_type_name = "Multisig Policy"
    _block_type_slug = "multisig-policy"
    _description = "Members, threshold and timelock of the upgrade sign-off."

    # A saved block whose members are plain base58 strings still loads (Member accepts one).
    members: list[Member] = Field(
        title="Members",
        description="Who signs off: a name, the base58 public key they sign with, and "
        "optionally their Slack user id (mentioned in Slack; may press its buttons).",
    )
    threshold: int = Field(title="Threshold", description="Approvals needed (M of N).", ge=1)
    timelock_seconds: int = Field(
        title="Timelock (seconds)",
        description="Wait between the threshold being met and execution.",
        ge=0,
    )
    min_timelock_seconds: int = Field(
        default=DEFAULT_MIN_TIMELOCK_SECONDS,
        title="Minimum timelock (seconds)",
        description="The audit refuses a timelock below this; 48 h unless a localnet lowers it.",
        ge=0,
    )
    backend: Literal["keypair", "onchain", "squads"] = Field(
        default="keypair",
        title="Backend",
        description=(
            "keypair: the flow verifies signatures and signs with the authority key "
            "(devnets; weaker: whoever holds the key can upgrade). onchain: the "
            "upgrade_manager program enforces sign-off. squads: Squads v4."
        ),
    )
    signoff_timeout_seconds: int = Field(
        default=7 * 24 * 3600,
        title="Sign-off window (seconds)",
        description="How long each sign-off pause waits before the proposal fails.",
        ge=1,
    )
    governance: str | None = Field(
        default=None,
        title="Governance account (onchain backend)",
        description="The upgrade_manager Governance account whose authority PDA is the "
        "programs' upgrade authority; its members, threshold and timelock must match above.",
    )
    governance_program: str = Field(
        default=str(UPGRADE_MANAGER_ID),
        title="upgrade_manager program id (onchain backend)",
        description="Where the upgrade_manager program is deployed on this cluster.",
    )
    squads_multisig: str = Field(
        default="",
        title="Squads multisig (squads backend)",
        description="The Squads v4 multisig account (not its vault) whose vault is the "
        "programs' upgrade authority; the audit reads its members, permissions, threshold "
        "and time lock from chain.",
    )
    squads_spill: str = Field(
        default="",
        title="Spill address (squads backend)",
        description="Where an upgrade's buffer lamports go, fixed in the vault transaction; "
        "empty: the runbook's fee payer.",
    )
    squads_poll_seconds: int = Field(
        default=30,
        title="Proposal poll interval (seconds, squads backend)",
        description="How often the runbook reads the Squads proposal while it waits.",
        ge=1,
    )
    emergency_threshold: int | None = Field(default=None, title="Emergency threshold")
    emergency_timelock_seconds: int | None = Field(default=None, title="Emergency timelock (s)")

    def policy(self, name: str = "") -> Policy:
        return Policy(
            name=name or (self._block_document_name or "multisig"),
            members=tuple(m.pubkey for m in self.members),
            threshold=self.threshold,
            timelock_seconds=self.timelock_seconds,
            min_timelock_seconds=self.min_timelock_seconds,
            emergency_threshold=self.emergency_threshold,
            emergency_timelock_seconds=self.emergency_timelock_seconds,
            backend=self.backend,
            profiles=tuple(self.members),
        )
