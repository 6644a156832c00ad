"""Client for upgrade_manager: on-chain M-of-N sign-off and timelock for program upgrades.

Plain Python over solders (no Prefect, no RPC): account decoders, PDAs, the approval
text the program rebuilds, the Ed25519SigVerify instruction, and instruction builders.
The program is ``programs/upgrade_manager/*.c`` (build name ``upgrade_manager``); its
Anchor IDL is ``programs/upgrade_manager/idl.json``.

PDAs (under the upgrade_manager program id)::

    governance  ["governance", create_key]
    authority   ["authority", governance]       the upgrade authority of managed programs
    proposal    ["proposal", governance, index u64 LE]   index 1, 2, ...

``Governance``, 464 bytes (C layout, every field little-endian)::

    0 disc[8] | 8 create_key[32] | 40 authority[32] | 72 proposal_count u64
    | 80 timelock u64 | 88 emergency_timelock u64 | 96 config_version u32
    | 100 threshold u8 | 101 emergency_threshold u8 | 102 member_count u8 | 103 bump u8
    | 104 authority_bump u8 | 105 reserved[7] | 112 members[9][32]
    | 400 genesis_hash[32] | 432 proposer[32]

``Proposal``, 656 bytes::

    0 disc[8] | 8 governance[32] | 40 index u64 | 48 proposer[32] | 80 kind u8
    | 81 status u8 | 82 bump u8 | 83 reserved u8 | 84 config_version u32
    | 88 approvals u32 | 92 rejections u32 (bit i: members[i])
    | 96 created_at i64 | 104 approved_at i64 | 112 closed_at i64
    | 120 program[32] | 152 buffer[32] | 184 buffer_hash[32] | 216 new_authority[32]
    | 248 new_timelock u64 | 256 new_emergency_timelock u64 | 264 new_threshold u8
    | 265 new_emergency_threshold u8 | 266 new_member_count u8 | 267 reserved[5]
    | 272 new_members[9][32] | 560 genesis_hash[32] | 592 spill[32] | 624 new_proposer[32]

Instructions: see the table in ``upgrade_manager.c`` and the builders below. A relayed
vote is two instructions in one transaction, ``[ed25519_instruction(...), approve(...)]``
(:func:`relayed_vote_instructions`); the fee payer can be anyone, members need no SOL.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.sysvar import CLOCK, INSTRUCTIONS, RENT

from core.approval import (
    LEGACY,
    STANDARD,
    Action,
    ApprovalSubject,
    SignedForm,
    check_restricted_ascii,
    envelope,
    line_head,
)
from core.ed25519 import is_large_order_point
from programs import loader
from programs.anchor import (
    Reader,
    account_discriminator,
    check_account_discriminator,
    instruction_data,
    pack_bool,
    pack_u8,
    pack_u32,
    pack_u64,
)

BUILD_NAME = "upgrade_manager"
# A vanity address nobody holds a key for: where the localnet and tests load the program.
# On a real cluster it is deployed at an address of its own; pass that as program_id.
PROGRAM_ID = Pubkey.from_string("UpgradeManager11111111111111111111111111111")
ED25519_PROGRAM_ID = Pubkey.from_string("Ed25519SigVerify111111111111111111111111111")

MAX_MEMBERS = 9
NO_PROPOSER = Pubkey.default()  # a governance without a proposer: members propose
MAX_TIMELOCK_SECONDS = 2**32
GOVERNANCE_DISCRIMINATOR = account_discriminator("Governance")
PROPOSAL_DISCRIMINATOR = account_discriminator("Proposal")
# Ed25519SigVerify: "this instruction" in an offset's instruction index; the only value
# upgrade_manager accepts.
THIS_INSTRUCTION = 0xFFFF


class ProposalKind(IntEnum):
    UPGRADE = 0
    EMERGENCY_UPGRADE = 1  # emergency threshold and timelock (rollbacks)
    SET_AUTHORITY = 2  # hand a managed program to another upgrade authority
    CONFIG = 3  # new members, thresholds, timelocks


class ProposalStatus(IntEnum):
    ACTIVE = 0
    APPROVED = 1  # threshold met at approved_at; the timelock runs from there
    EXECUTED = 2
    CANCELLED = 3
    REJECTED = 4


class UpgradeManagerError(IntEnum):
    """upgrade_manager's own error codes (custom program errors from 6000)."""

    InvalidConfig = 6000
    NotAMember = 6001
    AlreadyVoted = 6002
    ProposalExecuted = 6003
    ProposalCancelled = 6004
    ProposalRejected = 6005
    StaleProposal = 6006
    ThresholdNotMet = 6007
    TimelockActive = 6008
    WrongProposalKind = 6009
    GovernanceMismatch = 6010
    InvalidPda = 6011
    InvalidAuthority = 6012
    ProgramNotManaged = 6013
    InvalidProgram = 6014
    ProgramMismatch = 6015
    InvalidBuffer = 6016
    BufferMismatch = 6017
    BufferAuthorityMismatch = 6018
    HashMismatch = 6019
    InvalidInstructionsSysvar = 6020
    MissingSignatureVerification = 6021
    InvalidSignatureInstruction = 6022
    ForeignSignatureOffsets = 6023
    MessageMismatch = 6024
    NotProposerOrMember = 6025
    NewAuthorityMismatch = 6026
    Overflow = 6027
    # A relayed signature's standard off-chain envelope, when it is not the one accepted.
    EnvelopeSignerCount = 6028
    EnvelopeSigner = 6029
    EnvelopeFormat = 6030
    EnvelopeApplicationDomain = 6031
    EnvelopeLength = 6032
    NotAllowedToPropose = 6033  # neither a member nor the governance's proposer
    SpillMismatch = 6034  # execute_upgrade's spill is not the one fixed at proposal
    EmergencyThresholdBelowThreshold = 6035
    InvalidMemberKey = 6036  # not an ed25519 point of large order


# --------------------------------------------------------------------------- accounts


def _members(r: Reader, count: int) -> tuple[Pubkey, ...]:
    keys = [r.pubkey() for _ in range(MAX_MEMBERS)]
    return tuple(keys[: min(count, MAX_MEMBERS)])


@dataclass(frozen=True)
class GovernanceConfig:
    """Members, thresholds, timelocks and the proposer: what create_governance and a
    config change set."""

    members: tuple[Pubkey, ...]
    threshold: int
    timelock: int  # seconds from approval to execution
    emergency_threshold: int
    emergency_timelock: int
    # Besides the members, the one key that may create proposals (the runbook's fee
    # payer, typically); the default key: members only.
    proposer: Pubkey = NO_PROPOSER

    def pack(self) -> bytes:
        """Borsh arguments: threshold u8, timelock u64, emergency u8/u64, proposer Pubkey,
        Vec<Pubkey>."""
        return (
            pack_u8(self.threshold)
            + pack_u64(self.timelock)
            + pack_u8(self.emergency_threshold)
            + pack_u64(self.emergency_timelock)
            + bytes(self.proposer)
            + pack_u32(len(self.members))
            + b"".join(bytes(m) for m in self.members)
        )


@dataclass(frozen=True)
class Governance:
    create_key: Pubkey
    authority: Pubkey
    proposal_count: int
    timelock: int
    emergency_timelock: int
    config_version: int
    threshold: int
    emergency_threshold: int
    bump: int
    authority_bump: int
    members: tuple[Pubkey, ...]
    genesis_hash: bytes  # the cluster's, given at creation
    proposer: Pubkey

    SIZE: ClassVar[int] = 464

    @classmethod
    def decode(cls, data: bytes) -> Governance:
        check_account_discriminator(data, "Governance")
        if len(data) != cls.SIZE:
            raise ValueError(f"Governance account is {len(data)} bytes, expected {cls.SIZE}")
        r = Reader(data, 8)
        create_key, authority = r.pubkey(), r.pubkey()
        proposal_count, timelock, emergency_timelock = r.u64(), r.u64(), r.u64()
        config_version = r.u32()
        threshold, emergency_threshold, member_count = r.u8(), r.u8(), r.u8()
        bump, authority_bump = r.u8(), r.u8()
        r.skip(7)
        return cls(
            create_key=create_key,
            authority=authority,
            proposal_count=proposal_count,
            timelock=timelock,
            emergency_timelock=emergency_timelock,
            config_version=config_version,
            threshold=threshold,
            emergency_threshold=emergency_threshold,
            bump=bump,
            authority_bump=authority_bump,
            members=_members(r, member_count),
            genesis_hash=r.take(32),
            proposer=r.pubkey(),
        )

    @property
    def config(self) -> GovernanceConfig:
        return GovernanceConfig(
            self.members,
            self.threshold,
            self.timelock,
            self.emergency_threshold,
            self.emergency_timelock,
            self.proposer,
        )

    @property
    def cluster(self) -> str:
        """The genesis hash (base58) of the cluster this governance was created for."""
        return str(Hash(self.genesis_hash))

    def threshold_for(self, kind: ProposalKind) -> int:
        return (
            self.emergency_threshold if kind == ProposalKind.EMERGENCY_UPGRADE else self.threshold
        )

    def timelock_for(self, kind: ProposalKind) -> int:
        return self.emergency_timelock if kind == ProposalKind.EMERGENCY_UPGRADE else self.timelock


@dataclass(frozen=True)
class Proposal:
    governance: Pubkey
    index: int
    proposer: Pubkey
    kind: ProposalKind
    status: ProposalStatus
    bump: int
    config_version: int
    approvals: int  # bitmap over the governance's members
    rejections: int
    created_at: int
    approved_at: int
    closed_at: int
    program: Pubkey
    buffer: Pubkey
    buffer_hash: bytes
    new_authority: Pubkey
    new_config: GovernanceConfig | None  # config changes only
    genesis_hash: bytes  # the governance's: the signed line names this cluster
    spill: Pubkey  # upgrades: where the buffer's lamports go at execution

    SIZE: ClassVar[int] = 656

    @classmethod
    def decode(cls, data: bytes) -> Proposal:
        check_account_discriminator(data, "Proposal")
        if len(data) != cls.SIZE:
            raise ValueError(f"Proposal account is {len(data)} bytes, expected {cls.SIZE}")
        r = Reader(data, 8)
        governance, index, proposer = r.pubkey(), r.u64(), r.pubkey()
        kind, status, bump = ProposalKind(r.u8()), ProposalStatus(r.u8()), r.u8()
        r.skip(1)
        config_version, approvals, rejections = r.u32(), r.u32(), r.u32()
        created_at, approved_at, closed_at = r.i64(), r.i64(), r.i64()
        program, buffer, buffer_hash, new_authority = r.pubkey(), r.pubkey(), r.take(32), r.pubkey()
        new_timelock, new_emergency_timelock = r.u64(), r.u64()
        new_threshold, new_emergency_threshold, new_count = r.u8(), r.u8(), r.u8()
        r.skip(5)
        new_members = _members(r, new_count)
        genesis_hash, spill, new_proposer = r.take(32), r.pubkey(), r.pubkey()
        new_config = (
            GovernanceConfig(
                new_members,
                new_threshold,
                new_timelock,
                new_emergency_threshold,
                new_emergency_timelock,
                new_proposer,
            )
            if kind == ProposalKind.CONFIG
            else None
        )
        return cls(
            governance=governance,
            index=index,
            proposer=proposer,
            kind=kind,
            status=status,
            bump=bump,
            config_version=config_version,
            approvals=approvals,
            rejections=rejections,
            created_at=created_at,
            approved_at=approved_at,
            closed_at=closed_at,
            program=program,
            buffer=buffer,
            buffer_hash=buffer_hash,
            new_authority=new_authority,
            new_config=new_config,
            genesis_hash=genesis_hash,
            spill=spill,
        )

    @property
    def cluster(self) -> str:
        """The genesis hash (base58) its signed line names."""
        return str(Hash(self.genesis_hash))

    def approved_by(self, governance: Governance) -> list[Pubkey]:
        """Members whose approvals are recorded (meaningful while the proposal is current)."""
        return [m for i, m in enumerate(governance.members) if self.approvals >> i & 1]

    def rejected_by(self, governance: Governance) -> list[Pubkey]:
        return [m for i, m in enumerate(governance.members) if self.rejections >> i & 1]

    def executable_at(self, governance: Governance) -> int | None:
        """Unix time from which execute may run; None until approved."""
        if self.status != ProposalStatus.APPROVED:
            return None
        return self.approved_at + governance.timelock_for(self.kind)


# ------------------------------------------------------------------------------- PDAs


def governance_address(create_key: Pubkey, program_id: Pubkey = PROGRAM_ID) -> Pubkey:
    return Pubkey.find_program_address([b"governance", bytes(create_key)], program_id)[0]


def authority_address(governance: Pubkey, program_id: Pubkey = PROGRAM_ID) -> Pubkey:
    """The PDA that is the upgrade authority of every program this governance manages."""
    return Pubkey.find_program_address([b"authority", bytes(governance)], program_id)[0]


def proposal_address(governance: Pubkey, index: int, program_id: Pubkey = PROGRAM_ID) -> Pubkey:
    seeds = [b"proposal", bytes(governance), pack_u64(index)]
    return Pubkey.find_program_address(seeds, program_id)[0]


# ---------------------------------------------------------------------- approval text


def approval_text(governance: Pubkey, proposal: Proposal, action: Action = "approve") -> str:
    """The restricted-ASCII line a member signs for ``action``, as the program rebuilds it.

    An upgrade's text is exactly :meth:`core.approval.ApprovalSubject.message`; other
    kinds add a ``kind:`` field and name what they change.
    """
    if proposal.kind == ProposalKind.UPGRADE:
        return ApprovalSubject(
            governance=str(governance),
            proposal=str(proposal.index),
            program=str(proposal.program),
            buffer=str(proposal.buffer),
            sha256=proposal.buffer_hash.hex(),
            cluster=proposal.cluster,
        ).message(action)
    head = f"{line_head(action, proposal.cluster)}governance: {governance}; "
    head += f"proposal: {proposal.index}; "
    if proposal.kind == ProposalKind.EMERGENCY_UPGRADE:
        body = (
            f"kind: emergency-upgrade; program: {proposal.program}; buffer: {proposal.buffer}; "
            f"sha256: {proposal.buffer_hash.hex()}"
        )
    elif proposal.kind == ProposalKind.SET_AUTHORITY:
        body = (
            f"kind: set-authority; program: {proposal.program}; "
            f"new_authority: {proposal.new_authority}"
        )
    else:
        c = proposal.new_config
        assert c is not None
        body = (
            f"kind: config; threshold: {c.threshold}; timelock: {c.timelock}; "
            f"emergency_threshold: {c.emergency_threshold}; "
            f"emergency_timelock: {c.emergency_timelock}; "
            f"members: {','.join(str(m) for m in c.members)}"
        )
    text = head + body
    check_restricted_ascii(text)
    return text


def approval_envelope(
    governance: Pubkey,
    proposal: Proposal,
    action: Action = "approve",
    signer: Pubkey | None = None,
    form: SignedForm = LEGACY,
) -> bytes:
    """The exact bytes ``signer``'s key signs in ``form`` (the standard envelope names its
    signer and application domain: zero, or ``governance``'s address)."""
    return envelope(approval_text(governance, proposal, action), signer, form)


# ----------------------------------------------------------------------- instructions

_ED25519_HEADER = 16  # num_signatures u8, padding u8, seven u16 offsets


def ed25519_instruction(pubkey: Pubkey, signature: Signature, message: bytes) -> Instruction:
    """Ed25519SigVerify of one signature, every offset pointing into this instruction.

    Data: ``u8 1 | u8 0 | u16 signature_offset, u16 0xFFFF, u16 public_key_offset,
    u16 0xFFFF, u16 message_offset, u16 message_size, u16 0xFFFF`` then the public key,
    the signature and the message (the layout solana-sdk's builder writes).
    """
    pubkey_offset = _ED25519_HEADER
    signature_offset = pubkey_offset + 32
    message_offset = signature_offset + 64
    if message_offset + len(message) > 0xFFFF:
        raise ValueError(f"message of {len(message)} bytes is too long for Ed25519SigVerify")
    header = struct.pack(
        "<BBHHHHHHH",
        1,
        0,
        signature_offset,
        THIS_INSTRUCTION,
        pubkey_offset,
        THIS_INSTRUCTION,
        message_offset,
        len(message),
        THIS_INSTRUCTION,
    )
    return Instruction(ED25519_PROGRAM_ID, header + bytes(pubkey) + bytes(signature) + message, [])


def _w(key: Pubkey, signer: bool = False) -> AccountMeta:
    return AccountMeta(key, is_signer=signer, is_writable=True)


def _r(key: Pubkey, signer: bool = False) -> AccountMeta:
    return AccountMeta(key, is_signer=signer, is_writable=False)


def check_config(config: GovernanceConfig) -> None:
    """What the program refuses at create_governance and config changes, before sending."""
    n = len(config.members)
    if not 1 <= n <= MAX_MEMBERS:
        raise ValueError(f"a governance has 1..{MAX_MEMBERS} members, got {n}")
    if len(set(config.members)) != n:
        raise ValueError("members must be distinct")
    for member in config.members:
        if not is_large_order_point(bytes(member)):
            raise ValueError(
                f"member {member} is not an ed25519 public key of large order (the identity "
                "or another small-order point, or not on the curve): nobody, or everybody, "
                "can sign for it"
            )
    for name in ("threshold", "emergency_threshold"):
        value = getattr(config, name)
        if not 1 <= value <= n:
            raise ValueError(f"{name} must be 1..{n} (the member count), got {value}")
    for name in ("timelock", "emergency_timelock"):
        value = getattr(config, name)
        if not 0 <= value <= MAX_TIMELOCK_SECONDS:
            raise ValueError(f"{name} must be 0..{MAX_TIMELOCK_SECONDS} seconds, got {value}")
    if config.emergency_threshold < config.threshold:
        raise ValueError(
            f"emergency_threshold {config.emergency_threshold} is below threshold "
            f"{config.threshold}: the emergency path must not need fewer members"
        )


def genesis_bytes(genesis_hash: str | bytes | Hash) -> bytes:
    """32 bytes of a genesis hash given as base58 (``getGenesisHash``), bytes or Hash."""
    if isinstance(genesis_hash, Hash):
        return bytes(genesis_hash)
    if isinstance(genesis_hash, str):
        try:
            return bytes(Hash.from_string(genesis_hash))
        except ValueError:
            raise ValueError(f"genesis hash {genesis_hash!r} is not base58 of 32 bytes") from None
    if len(genesis_hash) != 32:
        raise ValueError(f"genesis hash must be 32 bytes, got {len(genesis_hash)}")
    return bytes(genesis_hash)


def create_governance(
    create_key: Pubkey,
    payer: Pubkey,
    config: GovernanceConfig,
    genesis_hash: str | bytes | Hash,
    program_id: Pubkey = PROGRAM_ID,
) -> Instruction:
    """Bootstrap a governance for the cluster whose ``getGenesisHash`` is
    ``genesis_hash`` (signers: create_key, payer); later changes are proposals."""
    check_config(config)
    genesis = genesis_bytes(genesis_hash)
    if genesis == bytes(32):
        raise ValueError("genesis hash is all zero: pass the cluster's getGenesisHash")
    return Instruction(
        program_id,
        instruction_data("create_governance", genesis, config.pack()),
        [
            _w(governance_address(create_key, program_id)),
            _r(create_key, signer=True),
            _w(payer, signer=True),
            _r(SYSTEM_PROGRAM_ID),
        ],
    )


def propose_upgrade(
    governance: Pubkey,
    index: int,
    program: Pubkey,
    buffer: Pubkey,
    buffer_hash: bytes | str,
    proposer: Pubkey,
    *,
    spill: Pubkey | None = None,
    emergency: bool = False,
    program_id: Pubkey = PROGRAM_ID,
) -> Instruction:
    """Propose upgrading ``program`` from ``buffer`` as proposal ``index``.

    ``index`` is the governance's proposal_count + 1; the buffer's authority must already
    be the governance's authority PDA and its verifiable-build hash ``buffer_hash``.
    ``proposer`` (a member or the governance's proposer) signs and pays; ``spill``
    (default: the proposer) is where the buffer's lamports go at execution, fixed now.
    """
    digest = bytes.fromhex(buffer_hash) if isinstance(buffer_hash, str) else bytes(buffer_hash)
    if len(digest) != 32:
        raise ValueError(f"buffer_hash must be 32 bytes, got {len(digest)}")
    return Instruction(
        program_id,
        instruction_data("propose_upgrade", digest, pack_bool(emergency)),
        [
            _w(governance),
            _w(proposal_address(governance, index, program_id)),
            _r(program),
            _r(loader.programdata_address(program)),
            _r(buffer),
            _r(spill or proposer),
            _w(proposer, signer=True),
            _r(SYSTEM_PROGRAM_ID),
        ],
    )


def propose_set_authority(
    governance: Pubkey,
    index: int,
    program: Pubkey,
    new_authority: Pubkey,
    proposer: Pubkey,
    program_id: Pubkey = PROGRAM_ID,
) -> Instruction:
    """Propose handing ``program``'s upgrade authority to ``new_authority``."""
    return Instruction(
        program_id,
        instruction_data("propose_set_authority"),
        [
            _w(governance),
            _w(proposal_address(governance, index, program_id)),
            _r(program),
            _r(loader.programdata_address(program)),
            _r(new_authority),
            _w(proposer, signer=True),
            _r(SYSTEM_PROGRAM_ID),
        ],
    )


def propose_config(
    governance: Pubkey,
    index: int,
    config: GovernanceConfig,
    proposer: Pubkey,
    program_id: Pubkey = PROGRAM_ID,
) -> Instruction:
    """Propose new members, thresholds and timelocks."""
    check_config(config)
    return Instruction(
        program_id,
        instruction_data("propose_config", config.pack()),
        [
            _w(governance),
            _w(proposal_address(governance, index, program_id)),
            _w(proposer, signer=True),
            _r(SYSTEM_PROGRAM_ID),
        ],
    )


_RELAYED = {"approve": "approve", "reject": "reject", "cancel": "cancel"}


def vote(
    governance: Pubkey,
    proposal: Pubkey,
    action: Action = "approve",
    program_id: Pubkey = PROGRAM_ID,
) -> Instruction:
    """approve / reject / cancel, relayed: must follow the member's Ed25519SigVerify."""
    return Instruction(
        program_id,
        instruction_data(_RELAYED[action]),
        [_r(governance), _w(proposal), _r(INSTRUCTIONS)],
    )


def vote_signed(
    governance: Pubkey,
    proposal: Pubkey,
    signer: Pubkey,
    action: Action = "approve",
    program_id: Pubkey = PROGRAM_ID,
) -> Instruction:
    """approve_signed / reject_signed / cancel_signed: the member (or proposer) signs."""
    return Instruction(
        program_id,
        instruction_data(f"{_RELAYED[action]}_signed"),
        [_r(governance), _w(proposal), _r(signer, signer=True)],
    )


def relayed_vote_instructions(
    governance: Pubkey,
    proposal_account: Pubkey,
    proposal: Proposal,
    member: Pubkey,
    signature: Signature,
    action: Action = "approve",
    program_id: Pubkey = PROGRAM_ID,
    form: SignedForm = STANDARD,
) -> list[Instruction]:
    """[Ed25519SigVerify of ``member``'s signature, the vote], for one transaction.

    The signed message is rebuilt from the decoded ``proposal``, exactly as the program
    rebuilds it, in the envelope ``form`` the member signed (the sign-off review found
    it); a signature over anything else fails in the precompile.
    """
    message = approval_envelope(governance, proposal, action, member, form)
    return [
        ed25519_instruction(member, signature, message),
        vote(governance, proposal_account, action, program_id),
    ]


def relayed_approval_instructions(
    governance: Pubkey,
    proposal_account: Pubkey,
    proposal: Proposal,
    member: Pubkey,
    signature: Signature,
    program_id: Pubkey = PROGRAM_ID,
    form: SignedForm = STANDARD,
) -> list[Instruction]:
    """[ed25519_ix, approve_ix]: relay one member's approval (the runbook's main path)."""
    return relayed_vote_instructions(
        governance, proposal_account, proposal, member, signature, "approve", program_id, form
    )


def execute_upgrade(
    governance: Pubkey,
    proposal_account: Pubkey,
    program: Pubkey,
    buffer: Pubkey,
    spill: Pubkey,
    program_id: Pubkey = PROGRAM_ID,
) -> Instruction:
    """Upgrade ``program`` from ``buffer`` by CPI, signed by the authority PDA.

    The buffer's lamports go to ``spill``, which must be the proposal's (fixed when it was
    proposed). Anyone may send it once the proposal is approved and its timelock has run
    out.
    """
    return Instruction(
        program_id,
        instruction_data("execute_upgrade"),
        [
            _r(governance),
            _w(proposal_account),
            _r(authority_address(governance, program_id)),
            _w(loader.programdata_address(program)),
            _w(program),
            _w(buffer),
            _w(spill),
            _r(RENT),
            _r(CLOCK),
            _r(loader.LOADER_ID),
        ],
    )


def execute_set_authority(
    governance: Pubkey,
    proposal_account: Pubkey,
    program: Pubkey,
    new_authority: Pubkey,
    program_id: Pubkey = PROGRAM_ID,
) -> Instruction:
    return Instruction(
        program_id,
        instruction_data("execute_set_authority"),
        [
            _r(governance),
            _w(proposal_account),
            _r(authority_address(governance, program_id)),
            _r(program),
            _w(loader.programdata_address(program)),
            _r(new_authority),
            _r(loader.LOADER_ID),
        ],
    )


def execute_config(
    governance: Pubkey, proposal_account: Pubkey, program_id: Pubkey = PROGRAM_ID
) -> Instruction:
    return Instruction(
        program_id,
        instruction_data("execute_config"),
        [_w(governance), _w(proposal_account)],
    )


def adopt_program(
    governance: Pubkey,
    program: Pubkey,
    current_authority: Pubkey,
    program_id: Pubkey = PROGRAM_ID,
) -> Instruction:
    """Hand ``program`` to ``governance``: its current upgrade authority signs, and
    upgrade_manager signs for the governance's authority PDA as the new authority
    (the loader's SetAuthorityChecked), so only a real governance can receive it."""
    return Instruction(
        program_id,
        instruction_data("adopt_program"),
        [
            _r(governance),
            _r(program),
            _w(loader.programdata_address(program)),
            _r(current_authority, signer=True),
            _r(authority_address(governance, program_id)),
            _r(loader.LOADER_ID),
        ],
    )


def instruction_names() -> Sequence[str]:
    """Every instruction the program dispatches on, in the IDL's order."""
    return (
        "create_governance",
        "propose_upgrade",
        "propose_set_authority",
        "propose_config",
        "approve",
        "approve_signed",
        "reject",
        "reject_signed",
        "cancel",
        "cancel_signed",
        "execute_upgrade",
        "execute_set_authority",
        "execute_config",
        "adopt_program",
    )
