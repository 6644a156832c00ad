"""upgrade_manager in a real LiteSVM: M-of-N relayed sign-off, timelock, execute by CPI.

The managed program (demo_vault) is deployed through the real upgradeable loader and its
authority handed to the governance's PDA. Every refusal is checked for its own error
code and for leaving every account it touched exactly as it was.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from solders.account import Account
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.sysvar import INSTRUCTIONS
from solders.transaction import Transaction
from solders.transaction_status import InstructionErrorCustom, TransactionErrorInstructionError

from core.approval import STANDARD, ApprovalSubject
from programs import loader
from programs.anchor import AnchorError, account_discriminator, instruction_discriminator
from programs.demo_vault import client as vault_client
from programs.upgrade_manager import client
from programs.upgrade_manager.client import (
    Governance,
    GovernanceConfig,
    Proposal,
    ProposalKind,
    ProposalStatus,
)
from programs.upgrade_manager.client import UpgradeManagerError as E
from programs.upgrade_manager.sandbox import (
    MAINNET_GENESIS,
    START_TIME,
    Sandbox,
    Sent,
    new_sandbox,
    vault_so,
)

PROGRAM_DIR = Path(client.__file__).parent
IDL = json.loads((PROGRAM_DIR / "idl.json").read_text())
PACKET_DATA_SIZE = 1232
SYSVAR_OWNER = Pubkey.from_string("Sysvar1111111111111111111111111111111111111")


@pytest.fixture(scope="module")
def v2_so() -> bytes:
    return vault_so(2)


@pytest.fixture
def box() -> Sandbox:
    """5 members, threshold 3, timelock 1 day; emergency 4 of 5, 10 minutes."""
    return new_sandbox()


@pytest.fixture
def proposed(box: Sandbox, v2_so: bytes) -> int:
    """An upgrade of the managed demo_vault v1 to v2, proposed and not yet approved."""
    return box.propose_upgrade(box.write_buffer(v2_so))


# ------------------------------------------------------------------------ helpers


def snapshot(box: Sandbox, *addresses: Pubkey) -> dict[Pubkey, Account | None]:
    return {a: box.svm.get_account(a) for a in addresses}


def watched(box: Sandbox, index: int) -> list[Pubkey]:
    """Every account an approve/execute of proposal ``index`` could change."""
    p = box.proposal(index)
    accounts = [box.governance, box.proposal_account(index), box.program]
    accounts.append(loader.programdata_address(box.program))
    if p.buffer != Pubkey.default():
        accounts.append(p.buffer)
    return accounts


def assert_refused(box: Sandbox, index: int, code: int, attempt: Callable[[], Sent]) -> Sent:
    """Run ``attempt()``; it must fail with custom ``code`` and change nothing."""
    before = snapshot(box, *watched(box, index))
    result: Sent = attempt()
    assert not result.ok, "expected a refusal"
    assert result.custom_code == code, f"expected {code}, got {result.error}\n" + "\n".join(
        result.logs
    )
    assert snapshot(box, *before) == before
    return result


def hand_written_envelope(box: Sandbox, index: int, action: str = "approve") -> bytes:
    """The signed bytes, spelled out here rather than taken from core.approval."""
    p = box.proposal(index)
    text = (
        f"solana-runbooks v2; action: {action}; cluster: {MAINNET_GENESIS}; "
        f"governance: {box.governance}; "
        f"proposal: {index}; program: {p.program}; buffer: {p.buffer}; "
        f"sha256: {p.buffer_hash.hex()}"
    ).encode()
    return b"\xffsolana offchain" + b"\x00\x00" + struct.pack("<H", len(text)) + text


def ed25519_data(
    pubkey: Pubkey, signature: Signature, message: bytes, indices: tuple[int, int, int]
) -> bytes:
    """Ed25519SigVerify data with chosen instruction indices (pubkey, signature, message)."""
    pk_ix, sig_ix, msg_ix = indices
    header = struct.pack("<BBHHHHHHH", 1, 0, 48, sig_ix, 16, pk_ix, 112, len(message), msg_ix)
    return header + bytes(pubkey) + bytes(signature) + message


def ed25519(data: bytes) -> Instruction:
    return Instruction(client.ED25519_PROGRAM_ID, data, [])


# ------------------------------------------------------------------- wire format


def test_c_constants_match_the_client_discriminators() -> None:
    header = (PROGRAM_DIR / "upgrade_manager.h").read_text()
    constants = dict(re.findall(r"#define (IX_\w+|ACCOUNT_\w+) (0x[0-9a-f]+)ULL", header))
    for name in client.instruction_names():
        value = int(constants[f"IX_{name.upper()}"], 16)
        assert struct.pack("<Q", value) == instruction_discriminator(name), name
    for name in ("Governance", "Proposal"):
        value = int(constants[f"ACCOUNT_{name.upper()}"], 16)
        assert struct.pack("<Q", value) == account_discriminator(name), name
    codes = dict(re.findall(r"#define E_(\w+) (\d+)", header))
    program_codes = {int(v) for v in codes.values() if int(v) >= 6000}
    assert program_codes == {e.value for e in E}


def test_idl_discriminators_errors_and_accounts_match_the_client() -> None:
    assert IDL["address"] == str(client.PROGRAM_ID)
    assert IDL["metadata"]["spec"] == "0.1.0"
    assert [ix["name"] for ix in IDL["instructions"]] == list(client.instruction_names())
    for ix in IDL["instructions"]:
        assert bytes(ix["discriminator"]) == instruction_discriminator(ix["name"]), ix["name"]
    for account in IDL["accounts"]:
        assert bytes(account["discriminator"]) == account_discriminator(account["name"])
    assert {e["code"]: e["name"] for e in IDL["errors"]} == {e.value: e.name for e in E}

    # Each builder's account list: same length, order, writable and signer flags.
    g, p, prog, buf, who = (Keypair().pubkey() for _ in range(5))
    config = GovernanceConfig((who,), 1, 0, 1, 0)
    built = {
        "create_governance": client.create_governance(who, who, config, MAINNET_GENESIS),
        "propose_upgrade": client.propose_upgrade(g, 1, prog, buf, bytes(32), who),
        "propose_set_authority": client.propose_set_authority(g, 1, prog, who, who),
        "propose_config": client.propose_config(g, 1, config, who),
        "approve": client.vote(g, p, "approve"),
        "approve_signed": client.vote_signed(g, p, who, "approve"),
        "reject": client.vote(g, p, "reject"),
        "reject_signed": client.vote_signed(g, p, who, "reject"),
        "cancel": client.vote(g, p, "cancel"),
        "cancel_signed": client.vote_signed(g, p, who, "cancel"),
        "execute_upgrade": client.execute_upgrade(g, p, prog, buf, who),
        "execute_set_authority": client.execute_set_authority(g, p, prog, who),
        "execute_config": client.execute_config(g, p),
        "adopt_program": client.adopt_program(g, prog, who),
    }
    for ix in IDL["instructions"]:
        metas = built[ix["name"]].accounts
        assert built[ix["name"]].data[:8] == bytes(ix["discriminator"])
        assert len(metas) == len(ix["accounts"]), ix["name"]
        for meta, spec in zip(metas, ix["accounts"], strict=True):
            where = f"{ix['name']}.{spec['name']}"
            assert meta.is_writable == spec.get("writable", False), where
            assert meta.is_signer == spec.get("signer", False), where
            if "address" in spec:
                assert str(meta.pubkey) == spec["address"], where


_SIZES = {"u8": 1, "bool": 1, "u16": 2, "u32": 4, "u64": 8, "i64": 8, "pubkey": 32}


def _idl_decode(type_: object, data: bytes, at: int, types: dict[str, dict]) -> tuple[object, int]:
    """A tiny borsh decoder driven by the IDL (fixed-size types only)."""
    if isinstance(type_, str):
        size = _SIZES[type_]
        raw = data[at : at + size]
        if type_ == "pubkey":
            return Pubkey.from_bytes(raw), at + size
        return int.from_bytes(raw, "little", signed=type_.startswith("i")), at + size
    assert isinstance(type_, dict)
    if "array" in type_:
        item, n = type_["array"]
        out = []
        for _ in range(n):
            value, at = _idl_decode(item, data, at, types)
            out.append(value)
        return out, at
    name = type_["defined"]["name"]
    spec = types[name]["type"]
    if spec["kind"] == "enum":
        return spec["variants"][data[at]]["name"], at + 1
    fields = {}
    for field in spec["fields"]:
        fields[field["name"]], at = _idl_decode(field["type"], data, at, types)
    return fields, at


def test_idl_types_decode_real_accounts_like_the_client(box: Sandbox, proposed: int) -> None:
    types = {t["name"]: t for t in IDL["types"]}
    box.approve_all(proposed)
    for name, address, decoded in (
        ("Governance", box.governance, box.gov()),
        ("Proposal", box.proposal_account(proposed), box.proposal(proposed)),
    ):
        data = box.data(address)
        fields, end = _idl_decode({"defined": {"name": name}}, data, 8, types)
        assert end == len(data) == type(decoded).SIZE
        assert isinstance(fields, dict)
        for key, value in fields.items():
            if key.startswith("reserved") or key in ("members", "new_members"):
                continue
            if key in ("buffer_hash", "genesis_hash"):
                value = bytes(value)
            expected = getattr(decoded, key, None)
            if key in ("kind", "status"):  # IDL variant "EmergencyUpgrade" = EMERGENCY_UPGRADE
                expected = "".join(w.capitalize() for w in expected.name.split("_"))
            if hasattr(decoded, key):
                assert value == expected, key
        if isinstance(decoded, Governance):
            assert fields["members"][: fields["member_count"]] == list(decoded.members)


def test_upgrade_message_is_the_runbooks_approval_message(box: Sandbox, proposed: int) -> None:
    p = box.proposal(proposed)
    subject = ApprovalSubject(
        str(box.governance),
        str(proposed),
        str(p.program),
        str(p.buffer),
        p.buffer_hash.hex(),
        cluster=MAINNET_GENESIS,
    )
    assert p.cluster == box.gov().cluster == MAINNET_GENESIS
    for action in ("approve", "reject", "cancel"):
        assert client.approval_text(box.governance, p, action) == subject.message(action)
        assert client.approval_envelope(box.governance, p, action) == hand_written_envelope(
            box, proposed, action
        )


def test_ed25519_instruction_layout() -> None:
    member, message = Keypair(), b"\xffsolana offchain\x00\x00\x02\x00hi"
    signature = member.sign_message(message)
    ix = client.ed25519_instruction(member.pubkey(), signature, message)
    assert ix.program_id == client.ED25519_PROGRAM_ID and ix.accounts == []
    assert bytes(ix.data) == ed25519_data(member.pubkey(), signature, message, (0xFFFF,) * 3)


# -------------------------------------------------------------------- governance


def test_create_governance(box: Sandbox) -> None:
    g = box.gov()
    assert g.members == tuple(m.pubkey() for m in box.members)
    assert (g.threshold, g.timelock, g.emergency_threshold, g.emergency_timelock) == (
        3,
        86_400,
        4,
        600,
    )
    assert (g.proposal_count, g.config_version) == (0, 0)
    assert g.create_key == box.create_key.pubkey()
    assert g.authority == box.authority == client.authority_address(box.governance)
    assert box.programdata().authority == box.authority
    owner = box.svm.get_account(box.governance)
    assert owner is not None and owner.owner == client.PROGRAM_ID


def _raw_create(box: Sandbox, create_key: Keypair, args: bytes) -> Sent:
    ix = client.create_governance(
        create_key.pubkey(),
        box.payer.pubkey(),
        GovernanceConfig((Keypair().pubkey(),), 1, 0, 1, 0),
        MAINNET_GENESIS,
    )
    raw = Instruction(
        ix.program_id, instruction_discriminator("create_governance") + args, ix.accounts
    )
    return box.send([raw], create_key)


@pytest.mark.parametrize(
    ("threshold", "members", "timelock"),
    [
        (0, 3, 0),  # threshold 0
        (4, 3, 0),  # threshold above the member count
        (1, 0, 0),  # no members
        (1, client.MAX_MEMBERS + 1, 0),  # too many members
        (1, 3, client.MAX_TIMELOCK_SECONDS + 1),  # timelock out of range
        (2, -2, 0),  # a member listed twice
    ],
)
def test_create_governance_refuses_bad_configs(
    box: Sandbox, threshold: int, members: int, timelock: int
) -> None:
    keys = [bytes(Keypair().pubkey()) for _ in range(abs(members))]
    if members < 0:
        keys = [keys[0], keys[0]]
    emergency = max(threshold, 1)
    config = struct.pack("<BQBQ", threshold, timelock, emergency, 0) + bytes(32)  # no proposer
    args = bytes(Hash.from_string(MAINNET_GENESIS)) + config + struct.pack("<I", len(keys))
    args += b"".join(keys)
    create_key = Keypair()
    result = _raw_create(box, create_key, args)
    assert result.custom_code == E.InvalidConfig
    assert box.svm.get_account(client.governance_address(create_key.pubkey())) is None


def test_create_governance_needs_the_create_key_to_sign(box: Sandbox) -> None:
    create_key = Keypair()
    ix = client.create_governance(
        create_key.pubkey(),
        box.payer.pubkey(),
        GovernanceConfig((Keypair().pubkey(),), 1, 0, 1, 0),
        MAINNET_GENESIS,
    )
    metas = [
        AccountMeta(m.pubkey, False, m.is_writable) if m.pubkey == create_key.pubkey() else m
        for m in ix.accounts
    ]
    result = box.send([Instruction(ix.program_id, ix.data, metas)])
    assert result.custom_code == AnchorError.AccountNotSigner


# ------------------------------------------------------------------- happy path


def test_three_relayed_approvals_timelock_and_execute_upgrade(
    box: Sandbox, proposed: int, v2_so: bytes
) -> None:
    p = box.proposal(proposed)
    assert (p.kind, p.status, p.index, p.created_at) == (
        ProposalKind.UPGRADE,
        ProposalStatus.ACTIVE,
        1,
        START_TIME,
    )
    assert p.buffer_hash.hex() == loader.verifiable_hash(v2_so)
    assert box.gov().proposal_count == 1
    a, b, c = box.members[:3]

    # Member a signs bytes written out by hand, not by the client: the program must
    # rebuild exactly those bytes from on-chain state.
    message = hand_written_envelope(box, proposed)
    signature = a.sign_message(message)
    approve = client.vote(box.governance, box.proposal_account(proposed))
    box.ok([client.ed25519_instruction(a.pubkey(), signature, message), approve])
    box.set_time(START_TIME + 100)
    box.ok(box.relay_instructions(proposed, b))
    assert box.proposal(proposed).status == ProposalStatus.ACTIVE
    box.set_time(START_TIME + 200)
    box.ok(box.relay_instructions(proposed, c))

    p = box.proposal(proposed)
    assert p.status == ProposalStatus.APPROVED and p.approved_at == START_TIME + 200
    assert p.approved_by(box.gov()) == [a.pubkey(), b.pubkey(), c.pubkey()]
    # Members signed nothing on chain and hold no lamports.
    assert all(box.svm.get_balance(m.pubkey()) in (0, None) for m in (a, b, c))

    box.pass_timelock(proposed)
    assert box.now() == START_TIME + 200 + 86_400
    box.next_slot()
    spill_before = box.svm.get_balance(box.payer.pubkey())
    result = box.execute_upgrade(proposed)
    assert result.ok, result.logs
    assert any("Upgraded program" in line for line in result.logs)
    p = box.proposal(proposed)
    assert (p.status, p.closed_at) == (ProposalStatus.EXECUTED, box.now())
    assert box.svm.get_balance(box.payer.pubkey()) > spill_before  # the buffer's rent

    # The new code runs: v2 logs its version on every call.
    box.next_slot()
    programdata = box.data(loader.programdata_address(box.program))
    assert loader.programdata_hash(programdata) == loader.verifiable_hash(v2_so)
    config = Keypair()
    rent = box.svm.minimum_balance_for_rent_exemption(vault_client.Config.SIZE)
    ixs = vault_client.create_config_instructions(
        box.payer.pubkey(), config.pubkey(), box.payer.pubkey(), box.program, rent
    )
    assert any(vault_client.LOG_V2 in line for line in box.ok(ixs, config).logs)


def test_approve_by_signing_the_transaction(box: Sandbox, proposed: int) -> None:
    for member in box.members[:3]:
        box.ok(
            [client.vote_signed(box.governance, box.proposal_account(proposed), member.pubkey())],
            member,
        )
    assert box.proposal(proposed).status == ProposalStatus.APPROVED


def test_extra_approvals_after_the_threshold_keep_approved_at(box: Sandbox, proposed: int) -> None:
    box.approve_all(proposed)
    approved_at = box.proposal(proposed).approved_at
    box.set_time(START_TIME + 50)
    box.ok(box.relay_instructions(proposed, box.members[3]))
    p = box.proposal(proposed)
    assert p.approved_at == approved_at and bin(p.approvals).count("1") == 4


# ------------------------------------------------------------------ adversarial


def test_forged_signature_is_refused_by_the_precompile(box: Sandbox, proposed: int) -> None:
    p, member = box.proposal(proposed), box.members[0]
    ixs = client.relayed_vote_instructions(
        box.governance, box.proposal_account(proposed), p, member.pubkey(), Signature.new_unique()
    )
    before = snapshot(box, *watched(box, proposed))
    result = box.send(ixs)
    # Ed25519SigVerify (instruction 0) fails the transaction before the program runs.
    assert isinstance(result.error, TransactionErrorInstructionError)
    assert result.failed_instruction == 0
    assert isinstance(result.error.err, InstructionErrorCustom) and result.error.err.code == 2
    assert not any(str(client.PROGRAM_ID) in line for line in result.logs)
    assert snapshot(box, *before) == before


def test_valid_signature_of_a_non_member(box: Sandbox, proposed: int) -> None:
    outsider = Keypair()
    assert_refused(box, proposed, E.NotAMember, lambda: box.relay(proposed, outsider))


def test_signature_over_another_proposal_is_not_replayable(
    box: Sandbox, proposed: int, v2_so: bytes
) -> None:
    other = box.propose_upgrade(box.write_buffer(v2_so))
    member = box.members[0]
    message = client.approval_envelope(box.governance, box.proposal(other))
    signature = member.sign_message(message)  # a genuine approval of proposal `other`
    ixs = [
        client.ed25519_instruction(member.pubkey(), signature, message),
        client.vote(box.governance, box.proposal_account(proposed)),
    ]
    assert_refused(box, proposed, E.MessageMismatch, lambda: box.send(ixs))
    # Nor does a reject or cancel signature count as an approval.
    for action in ("reject", "cancel"):
        message = client.approval_envelope(box.governance, box.proposal(proposed), action)
        ixs = [
            client.ed25519_instruction(member.pubkey(), member.sign_message(message), message),
            client.vote(box.governance, box.proposal_account(proposed)),
        ]
        assert_refused(box, proposed, E.MessageMismatch, lambda ixs=ixs: box.send(ixs))
    # The same signature still approves the proposal it was made for.
    genuine = client.approval_envelope(box.governance, box.proposal(other))
    approve = client.vote(box.governance, box.proposal_account(other))
    box.ok([client.ed25519_instruction(member.pubkey(), signature, genuine), approve])


def test_precompile_offsets_pointing_into_another_instruction(box: Sandbox, proposed: int) -> None:
    """The classic introspection bug: verified bytes elsewhere, member's bytes in view."""
    member, attacker = box.members[0], Keypair()
    message = client.approval_envelope(box.governance, box.proposal(proposed))
    # Instruction 0 holds the attacker's genuine signature over the right message.
    carrier = ed25519(
        ed25519_data(attacker.pubkey(), attacker.sign_message(message), message, (0xFFFF,) * 3)
    )
    # Instruction 1 shows the member's key and the right message at its offsets, but its
    # offsets tell the precompile to verify instruction 0's bytes.
    lure = ed25519(ed25519_data(member.pubkey(), Signature.default(), message, (0, 0, 0)))
    approve = client.vote(box.governance, box.proposal_account(proposed))
    result = assert_refused(
        box, proposed, E.ForeignSignatureOffsets, lambda: box.send([carrier, lure, approve])
    )
    # The precompile accepted both: only the program's own check stops this.
    assert result.failed_instruction == 2


def test_offsets_naming_the_precompiles_own_index_are_refused_too(
    box: Sandbox, proposed: int
) -> None:
    """Only 0xFFFF is accepted (see upgrade_manager.c): one spelling, nothing to get wrong."""
    member = box.members[0]
    message = client.approval_envelope(box.governance, box.proposal(proposed))
    data = ed25519_data(member.pubkey(), member.sign_message(message), message, (0, 0, 0))
    approve = client.vote(box.governance, box.proposal_account(proposed))
    assert_refused(
        box, proposed, E.ForeignSignatureOffsets, lambda: box.send([ed25519(data), approve])
    )


def test_precompile_with_two_signatures_is_refused(box: Sandbox, proposed: int) -> None:
    member = box.members[0]
    message = client.approval_envelope(box.governance, box.proposal(proposed))
    one = ed25519_data(member.pubkey(), member.sign_message(message), message, (0xFFFF,) * 3)
    # Two offset records, both naming the one (valid) signature, 14 bytes further on.
    sig, sig_ix, pk, pk_ix, msg, size, msg_ix = struct.unpack("<7H", one[2:16])
    record = struct.pack("<7H", sig + 14, sig_ix, pk + 14, pk_ix, msg + 14, size, msg_ix)
    two = bytes([2, 0]) + record + record + one[16:]
    approve = client.vote(box.governance, box.proposal_account(proposed))
    assert_refused(
        box, proposed, E.InvalidSignatureInstruction, lambda: box.send([ed25519(two), approve])
    )


def test_approve_without_a_precompile_instruction(box: Sandbox, proposed: int) -> None:
    approve = client.vote(box.governance, box.proposal_account(proposed))
    assert_refused(box, proposed, E.MissingSignatureVerification, lambda: box.send([approve]))
    # Something else just before it is no better.
    other = transfer(
        TransferParams(from_pubkey=box.payer.pubkey(), to_pubkey=Pubkey.new_unique(), lamports=1)
    )
    assert_refused(
        box, proposed, E.MissingSignatureVerification, lambda: box.send([other, approve])
    )


def test_precompile_must_be_right_before_the_approve(box: Sandbox, proposed: int) -> None:
    ed, approve = box.relay_instructions(proposed, box.members[0])
    other = transfer(
        TransferParams(from_pubkey=box.payer.pubkey(), to_pubkey=Pubkey.new_unique(), lamports=1)
    )
    assert_refused(
        box, proposed, E.MissingSignatureVerification, lambda: box.send([ed, other, approve])
    )
    # One signature cannot feed two approvals in one transaction.
    second = box.relay_instructions(proposed, box.members[1])[1]
    assert_refused(
        box, proposed, E.MissingSignatureVerification, lambda: box.send([ed, approve, second])
    )


def test_duplicate_approval(box: Sandbox, proposed: int) -> None:
    member = box.members[0]
    box.ok(box.relay_instructions(proposed, member))
    assert_refused(box, proposed, E.AlreadyVoted, lambda: box.relay(proposed, member))
    signed = client.vote_signed(box.governance, box.proposal_account(proposed), member.pubkey())
    assert_refused(box, proposed, E.AlreadyVoted, lambda: box.send([signed], member))
    assert_refused(box, proposed, E.AlreadyVoted, lambda: box.relay(proposed, member, "reject"))


def test_fake_instructions_sysvar_account(box: Sandbox, proposed: int) -> None:
    """An account whose data claims the member's signature was verified; not the sysvar."""
    member = box.members[0]
    message = client.approval_envelope(box.governance, box.proposal(proposed))
    ed_data = ed25519_data(member.pubkey(), Signature.default(), message, (0xFFFF,) * 3)
    approve_data = instruction_discriminator("approve")

    def entry(program: Pubkey, data: bytes) -> bytes:
        return struct.pack("<H", 0) + bytes(program) + struct.pack("<H", len(data)) + data

    first = entry(client.ED25519_PROGRAM_ID, ed_data)
    second = entry(client.PROGRAM_ID, approve_data)
    head = 2 + 2 * 2
    fake = struct.pack("<HHH", 2, head, head + len(first)) + first + second + struct.pack("<H", 1)
    forged = Pubkey.new_unique()
    box.svm.set_account(forged, Account(10**9, fake, SYSVAR_OWNER, False, 0))
    ix = client.vote(box.governance, box.proposal_account(proposed))
    metas = [
        AccountMeta(forged, False, False) if m.pubkey == INSTRUCTIONS else m for m in ix.accounts
    ]
    attempt = Instruction(ix.program_id, ix.data, metas)
    assert_refused(box, proposed, E.InvalidInstructionsSysvar, lambda: box.send([attempt]))


def test_execute_below_threshold(box: Sandbox, proposed: int) -> None:
    box.approve_all(proposed, box.members[:2])
    box.set_time(START_TIME + 10 * 86_400)
    assert_refused(box, proposed, E.ThresholdNotMet, lambda: box.execute_upgrade(proposed))


def test_execute_one_second_before_the_timelock(box: Sandbox, proposed: int) -> None:
    box.approve_all(proposed)
    executable_at = box.proposal(proposed).executable_at(box.gov())
    assert executable_at == START_TIME + 86_400
    box.set_time(executable_at - 1)
    assert_refused(box, proposed, E.TimelockActive, lambda: box.execute_upgrade(proposed))
    box.set_time(executable_at)
    assert box.execute_upgrade(proposed).ok


def test_execute_twice(box: Sandbox, proposed: int) -> None:
    box.approve_all(proposed)
    box.pass_timelock(proposed)
    assert box.execute_upgrade(proposed).ok
    box.next_slot()
    assert_refused(box, proposed, E.ProposalExecuted, lambda: box.execute_upgrade(proposed))
    assert_refused(box, proposed, E.ProposalExecuted, lambda: box.relay(proposed, box.members[4]))


def test_approve_or_execute_after_cancel(box: Sandbox, proposed: int) -> None:
    box.approve_all(proposed)
    # One member's relayed cancel stops an approved upgrade during its timelock.
    box.ok(box.relay_instructions(proposed, box.members[4], "cancel"))
    p = box.proposal(proposed)
    assert (p.status, p.closed_at) == (ProposalStatus.CANCELLED, START_TIME)
    box.set_time(START_TIME + 2 * 86_400)
    assert_refused(box, proposed, E.ProposalCancelled, lambda: box.relay(proposed, box.members[3]))
    assert_refused(box, proposed, E.ProposalCancelled, lambda: box.execute_upgrade(proposed))


def test_cancel_by_the_proposer_or_a_member_only(box: Sandbox, v2_so: bytes) -> None:
    buffer = box.write_buffer(v2_so)
    first, second = box.propose_upgrade(buffer), box.propose_upgrade(buffer)
    outsider = Keypair()
    cancel = client.vote_signed(
        box.governance, box.proposal_account(first), outsider.pubkey(), "cancel"
    )
    assert_refused(box, first, E.NotProposerOrMember, lambda: box.send([cancel], outsider))
    # A non-member's cancel signature is refused as well.
    assert_refused(box, first, E.NotAMember, lambda: box.relay(first, outsider, "cancel"))
    proposer = client.vote_signed(
        box.governance, box.proposal_account(first), box.payer.pubkey(), "cancel"
    )
    box.ok([proposer])
    member = box.members[2]
    box.ok(
        [
            client.vote_signed(
                box.governance, box.proposal_account(second), member.pubkey(), "cancel"
            )
        ],
        member,
    )
    assert box.proposal(first).status == box.proposal(second).status == ProposalStatus.CANCELLED


def test_execute_with_another_buffer(box: Sandbox, proposed: int, v2_so: bytes) -> None:
    box.approve_all(proposed)
    box.pass_timelock(proposed)
    other = box.write_buffer(vault_so(1))  # also owned by the PDA, but not the one approved
    assert_refused(box, proposed, E.BufferMismatch, lambda: box.execute_upgrade(proposed, other))


def test_buffer_recreated_at_the_same_address(box: Sandbox, v2_so: bytes) -> None:
    """Two proposals name one buffer; once the first consumes it, its keypair holder
    re-creates the address: with their own authority, then with the PDA's and new bytes."""
    buffer_key = Keypair()
    buffer = box.write_buffer(v2_so, buffer=buffer_key)
    first, second = box.propose_upgrade(buffer), box.propose_upgrade(buffer)
    box.approve_all(first)
    box.approve_all(second)
    box.pass_timelock(second)
    assert box.execute_upgrade(first).ok
    box.next_slot()
    assert box.svm.get_account(buffer) is None  # the loader consumed it

    box.write_buffer(v2_so, to_pda=False, buffer=buffer_key)
    assert_refused(box, second, E.BufferAuthorityMismatch, lambda: box.execute_upgrade(second))

    # Same address, the PDA as authority, other bytes: the hash is checked again.
    box.svm.set_account(buffer, Account(0, b"", Pubkey.default(), False, 0))
    box.write_buffer(vault_so(1), buffer=buffer_key)
    assert_refused(box, second, E.HashMismatch, lambda: box.execute_upgrade(second))


def test_propose_checks_the_buffer_and_the_program(box: Sandbox, v2_so: bytes) -> None:
    payer = box.payer.pubkey()
    not_pda = box.write_buffer(v2_so, to_pda=False)
    digest = loader.verifiable_hash(v2_so)

    def propose(program: Pubkey, buffer: Pubkey, sha: str) -> Sent:
        return box.send([client.propose_upgrade(box.governance, 1, program, buffer, sha, payer)])

    assert propose(box.program, not_pda, digest).custom_code == E.BufferAuthorityMismatch
    buffer = box.write_buffer(v2_so)
    assert propose(box.program, buffer, "00" * 32).custom_code == E.HashMismatch
    assert propose(box.program, box.program, digest).custom_code == E.InvalidBuffer
    # A program deployed but never handed to the governance.
    unmanaged = Keypair()
    so = vault_so(1)
    rent = box.svm.minimum_balance_for_rent_exemption(loader.PROGRAM_ACCOUNT_SIZE)
    box.ok(
        loader.deploy_program(
            payer, unmanaged.pubkey(), box.write_buffer(so, to_pda=False), payer, rent, 2 * len(so)
        ),
        unmanaged,
    )
    assert propose(unmanaged.pubkey(), buffer, digest).custom_code == E.ProgramNotManaged
    # The proposal address must be number proposal_count + 1.
    wrong = client.propose_upgrade(box.governance, 2, box.program, buffer, digest, payer)
    assert box.send([wrong]).custom_code == E.InvalidPda
    assert box.gov().proposal_count == 0
    assert propose(box.program, buffer, digest).ok


def test_prefunding_the_next_proposal_address_does_not_block_it(box: Sandbox, v2_so: bytes) -> None:
    buffer = box.write_buffer(v2_so)
    box.ok(
        [
            transfer(
                TransferParams(
                    from_pubkey=box.payer.pubkey(),
                    to_pubkey=box.proposal_account(1),
                    lamports=box.svm.minimum_balance_for_rent_exemption(0),
                )
            )
        ]
    )
    index = box.propose_upgrade(buffer)
    account = box.svm.get_account(box.proposal_account(index))
    assert account is not None and account.owner == client.PROGRAM_ID
    assert account.lamports == box.svm.minimum_balance_for_rent_exemption(Proposal.SIZE)


def test_rejections_close_a_proposal_that_can_no_longer_pass(box: Sandbox, proposed: int) -> None:
    a, b, c = box.members[:3]
    box.ok(box.relay_instructions(proposed, a, "reject"))
    box.ok(
        [client.vote_signed(box.governance, box.proposal_account(proposed), b.pubkey(), "reject")],
        b,
    )
    assert box.proposal(proposed).status == ProposalStatus.ACTIVE  # 3 of 5 still possible
    box.ok(box.relay_instructions(proposed, c, "reject"))
    p = box.proposal(proposed)
    assert p.status == ProposalStatus.REJECTED and p.rejected_by(box.gov()) == [
        a.pubkey(),
        b.pubkey(),
        c.pubkey(),
    ]
    assert_refused(box, proposed, E.ProposalRejected, lambda: box.relay(proposed, box.members[3]))
    box.set_time(START_TIME + 10 * 86_400)
    assert_refused(box, proposed, E.ProposalRejected, lambda: box.execute_upgrade(proposed))


def test_proposal_of_another_governance(box: Sandbox, proposed: int) -> None:
    other_key = Keypair()
    config = GovernanceConfig(tuple(m.pubkey() for m in box.members), 1, 0, 1, 0)
    create = client.create_governance(
        other_key.pubkey(), box.payer.pubkey(), config, MAINNET_GENESIS
    )
    box.ok([create], other_key)
    other = client.governance_address(other_key.pubkey())
    ixs = box.relay_instructions(proposed, box.members[0])
    ixs[1] = client.vote(other, box.proposal_account(proposed))
    assert_refused(box, proposed, E.GovernanceMismatch, lambda: box.send(ixs))


def test_execute_with_a_wrong_authority_account(box: Sandbox, proposed: int) -> None:
    box.approve_all(proposed)
    box.pass_timelock(proposed)
    ix = client.execute_upgrade(
        box.governance,
        box.proposal_account(proposed),
        box.program,
        box.proposal(proposed).buffer,
        box.payer.pubkey(),
    )
    metas = list(ix.accounts)
    metas[2] = AccountMeta(box.payer.pubkey(), False, False)
    attempt = Instruction(ix.program_id, ix.data, metas)
    assert_refused(box, proposed, E.InvalidAuthority, lambda: box.send([attempt]))


# ------------------------------------------------------------- other proposal kinds


def test_emergency_upgrade_uses_the_emergency_threshold_and_timelock(
    box: Sandbox, v2_so: bytes
) -> None:
    index = box.propose_upgrade(box.write_buffer(v2_so), emergency=True)
    text = client.approval_text(box.governance, box.proposal(index))
    assert "; kind: emergency-upgrade; program: " in text
    box.approve_all(index, box.members[:3])
    assert box.proposal(index).status == ProposalStatus.ACTIVE  # needs 4
    box.ok(box.relay_instructions(index, box.members[3]))
    assert box.proposal(index).executable_at(box.gov()) == START_TIME + 600
    box.set_time(START_TIME + 599)
    assert_refused(box, index, E.TimelockActive, lambda: box.execute_upgrade(index))
    box.set_time(START_TIME + 600)
    assert box.execute_upgrade(index).ok


def test_config_change_needs_m_of_n_and_makes_older_proposals_stale(
    box: Sandbox, proposed: int
) -> None:
    members = tuple(m.pubkey() for m in box.members[:4])  # drop the fifth member
    config = GovernanceConfig(members, 2, 3_600, 3, 60, box.payer.pubkey())
    index = box.propose_config(config)
    p = box.proposal(index)
    assert p.kind == ProposalKind.CONFIG and p.new_config == config
    text = client.approval_text(box.governance, p)
    assert "kind: config; threshold: 2; timelock: 3600; emergency_threshold: 3;" in text
    assert text.endswith("members: " + ",".join(str(m) for m in members))

    box.approve_all(index, box.members[:2])
    box.set_time(START_TIME + 2 * 86_400)
    execute = client.execute_config(box.governance, box.proposal_account(index))
    assert_refused(box, index, E.ThresholdNotMet, lambda: box.send([execute]))
    box.ok(box.relay_instructions(index, box.members[2]))
    assert_refused(box, index, E.TimelockActive, lambda: box.send([execute]))
    box.pass_timelock(index)
    box.ok([execute])

    g = box.gov()
    assert g.config == config and g.config_version == 1
    assert box.proposal(index).status == ProposalStatus.EXECUTED
    # The upgrade proposed under the old config no longer counts; it can be cancelled.
    assert_refused(box, proposed, E.StaleProposal, lambda: box.relay(proposed, box.members[0]))
    box.ok(box.relay_instructions(proposed, box.members[0], "cancel"))
    # The removed member cannot vote any more; the new threshold of 2 applies.
    upgrade = box.propose_upgrade(box.write_buffer(vault_so(2)))
    assert_refused(box, upgrade, E.NotAMember, lambda: box.relay(upgrade, box.members[4]))
    box.approve_all(upgrade)
    assert box.proposal(upgrade).status == ProposalStatus.APPROVED
    assert bin(box.proposal(upgrade).approvals).count("1") == 2


def test_config_proposal_with_every_member_fits_one_relayed_transaction(box: Sandbox) -> None:
    # Keys that base58-encode to 44 characters, the longest.
    members = []
    while len(members) < client.MAX_MEMBERS:
        key = Keypair()
        if len(str(key.pubkey())) == 44:
            members.append(key)
    n = client.MAX_MEMBERS
    config = GovernanceConfig(
        tuple(m.pubkey() for m in members), n, 4_294_967_296, n, 4_294_967_296, Keypair().pubkey()
    )
    index = box.propose_config(config)
    # The standard envelope, the longer one (it names the signer); genesis hash in the line.
    ixs = box.relay_instructions(index, box.members[0], form=STANDARD)
    tx = Transaction([box.payer], Message(ixs, box.payer.pubkey()), box.svm.latest_blockhash())
    assert len(bytes(tx)) <= PACKET_DATA_SIZE
    assert box.send(ixs).ok


def test_set_authority_hands_the_program_over(box: Sandbox) -> None:
    new_authority = Keypair().pubkey()
    index = box.gov().proposal_count + 1
    box.ok(
        [
            client.propose_set_authority(
                box.governance, index, box.program, new_authority, box.payer.pubkey()
            )
        ]
    )
    text = client.approval_text(box.governance, box.proposal(index))
    assert text.endswith(
        f"kind: set-authority; program: {box.program}; new_authority: {new_authority}"
    )
    box.approve_all(index)
    box.pass_timelock(index)
    wrong = client.execute_set_authority(
        box.governance, box.proposal_account(index), box.program, Keypair().pubkey()
    )
    assert_refused(box, index, E.NewAuthorityMismatch, lambda: box.send([wrong]))
    upgrade = client.execute_upgrade(
        box.governance, box.proposal_account(index), box.program, box.program, box.payer.pubkey()
    )
    assert_refused(box, index, E.WrongProposalKind, lambda: box.send([upgrade]))
    box.ok(
        [
            client.execute_set_authority(
                box.governance, box.proposal_account(index), box.program, new_authority
            )
        ]
    )
    assert box.programdata().authority == new_authority
    assert box.proposal(index).status == ProposalStatus.EXECUTED


@pytest.mark.parametrize("padding", [1, 7, 8, 1003])
def test_buffer_hash_ignores_zero_padding(box: Sandbox, v2_so: bytes, padding: int) -> None:
    """A buffer allocated larger than its program (write-buffer --max-len) hashes the same:
    trailing zeros are stripped a byte, then a word at a time."""
    buffer = box.write_buffer(v2_so + bytes(padding))
    assert loader.buffer_hash(box.data(buffer)) == loader.verifiable_hash(v2_so)
    index = box.propose_upgrade(buffer)
    assert box.proposal(index).buffer_hash.hex() == loader.verifiable_hash(v2_so)
