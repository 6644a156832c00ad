"""The upgrade runbook on a real Prefect API, a real localnet and a real records database."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from cluster_like import CLUSTER_LIKE, on
from flow_driver import run_upgrade_flow
from landed import (
    LOADER_UPGRADE,
    assert_journal_holds,
    assert_landed_as_the_mode_lands,
    instructions_in,
    landed_signatures,
    landed_since,
)
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair
from sqlalchemy import Engine, func, select
from test_health_flow import run_artifact

from blocks import MultisigPolicy, SolanaKeypair
from core import approval, errors
from core.keys import keypair_to_json
from flows._signoff import approval_subject
from programs import loader, send
from runbooks.cli import main as runbooks_cli
from runbooks.demo import DemoChain, write_buffer
from store.models import Approval, Execution, Proposal
from store.records import audit
from store.records import proposals as proposals_records
from tasks.chain import send_upgrade


def programdata_hash(chain: DemoChain) -> str:
    account = chain.server.localnet.get_account(loader.programdata_address(chain.program_id))
    assert account is not None
    return loader.programdata_hash(bytes(account.data))


def stock_cli_signature(member: Keypair, message: str) -> str:
    """What an Agave 1.18/2.x `solana sign-offchain-message` produces: the legacy
    envelope, written out here."""
    body = message.encode()
    envelope = b"\xffsolana offchain\x00\x00" + len(body).to_bytes(2, "little") + body
    return str(member.sign_message(envelope))


def cli_signature(member: Keypair, proposal_id: int, tmp_path, capsys) -> str:
    keyfile = tmp_path / f"{member.pubkey()}.json"
    keyfile.write_text(keypair_to_json(member))
    capsys.readouterr()
    assert runbooks_cli(["sign", "--proposal", str(proposal_id), "--keypair", str(keyfile)]) == 0
    lines = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines())
    assert lines["pubkey"].strip() == str(member.pubkey())
    return lines["signature"].strip()


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            "proposals": conn.scalar(select(func.count()).select_from(Proposal)),
            "accepted": conn.scalar(
                select(func.count()).select_from(Approval).where(Approval.accepted.is_(True))
            ),
            "executions": conn.scalar(select(func.count()).select_from(Execution)),
        }


@pytest.mark.parametrize(
    ("db_url", "behaviour"),
    [on("sqlite", None), on("postgresql", None), on("sqlite", CLUSTER_LIKE)],
    indirect=["db_url"],
)
async def test_upgrade_end_to_end(
    chain: DemoChain, block_names, records_db: Engine, v2_buffer: str, tmp_path, capsys
) -> None:
    v1_hash, v2_hash = (loader.verifiable_hash(chain.binaries[v]) for v in ("v1", "v2"))
    assert programdata_hash(chain) == v1_hash
    mark = landed_signatures(chain.server.localnet)
    m = chain.members

    def answers(proposal: proposals_records.ProposalRecord) -> list[dict]:
        message = approval_subject(proposal).message("approve")
        return [
            # runbooks sign (standard envelope), an older CLI's legacy envelope, and the
            # library: all accepted, each recorded with its envelope.
            {
                "member": str(m[0].pubkey()),
                "signature": cli_signature(m[0], proposal.id, tmp_path, capsys),
            },
            {"member": str(m[1].pubkey()), "signature": stock_cli_signature(m[1], message)},
            {
                "member": str(m[0].pubkey()),
                "signature": str(approval.sign(m[0], message, form=approval.STANDARD)),
            },
            {
                "member": str(m[2].pubkey()),
                "signature": str(approval.sign(m[2], message, form=approval.STANDARD)),
                "comment": "reviewed the diff",
            },
        ]

    outcome = await run_upgrade_flow(
        chain, block_names, v2_buffer, answers, expected_sha256=v2_hash
    )
    assert outcome.state.is_completed(), outcome.state.message
    result = await outcome.state.aresult()
    assert result["old_hash"] == v1_hash and result["new_hash"] == v2_hash
    assert result["approvals"] == [str(k.pubkey()) for k in m[:3]]
    assert programdata_hash(chain) == v2_hash
    # Exactly one Upgrade landed, and every transaction of the run is journalled as landed.
    landed = landed_since(chain.server.localnet, mark)
    upgrades = instructions_in(landed, loader.LOADER_ID, LOADER_UPGRADE, 2)
    assert upgrades == {v2_buffer: 1}
    assert_journal_holds(records_db, landed)
    assert_landed_as_the_mode_lands(chain.server.localnet, landed)
    assert result["signature"] in {str(t.signature) for t in landed}

    proposal = outcome.proposal
    assert proposal is not None and proposal.status == "executed"
    assert proposal.threshold_met_at is not None and proposal.executed_at is not None
    assert (proposal.executed_at - proposal.threshold_met_at).total_seconds() >= 2  # timelock
    history = proposals_records.approvals(records_db, proposal.id)
    assert [(a.member, a.accepted) for a in history] == [
        (str(m[0].pubkey()), True),
        (str(m[1].pubkey()), True),
        (str(m[0].pubkey()), False),
        (str(m[2].pubkey()), True),
    ]
    assert "already signed off" in (history[2].reason or "")
    assert [a.envelope for a in history] == ["standard", "legacy", None, "standard"]
    # The run's approvals table shows the envelope of each sign-off.
    table = json.loads(
        (await run_artifact(outcome.run_id, f"upgrade-approvals-{proposal.id}"))["data"]
    )
    assert [(r["member"], r["envelope"]) for r in table] == [
        (a.member, a.envelope or "") for a in history
    ]
    execution = proposals_records.get_execution(records_db, proposal.id)
    assert execution is not None and execution.signature == result["signature"]
    assert (execution.old_hash, execution.new_hash) == (v1_hash, v2_hash)
    assert execution.slot_after > execution.slot_before
    actions = [
        e.action
        for e in audit.audit_events(records_db, proposals_records.proposal_subject(proposal.id))
    ]
    assert actions[0] == "proposal.created"
    assert "proposal.threshold_met" in actions
    assert all(
        e.flow_run_id == str(outcome.run_id)
        for e in audit.audit_events(records_db, proposals_records.proposal_subject(proposal.id))
    )

    # Executing again is a no-op that says so (the chain already holds the hash).
    again = await send_upgrade(
        await _cluster(block_names),
        proposals_records.get_proposal(records_db, proposal.id),
        3,
        block_names["authority_block"],
        block_names["fee_payer_block"],
    )
    assert again is None


async def _cluster(names):
    from blocks import SolanaCluster

    return await SolanaCluster.aload(names["cluster_block"])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_bad_signoffs_are_refused_recorded_and_never_approve(
    chain: DemoChain, block_names, records_db: Engine, v2_buffer: str
) -> None:
    v1_hash = programdata_hash(chain)
    m = chain.members
    outsider = Keypair()

    def answers(proposal: proposals_records.ProposalRecord) -> list[dict]:
        subject = approval_subject(proposal)
        message = subject.message("approve")
        other = type(subject)(**{**subject.__dict__, "proposal": str(proposal.id + 1000)})
        return [
            {"member": "not-a-pubkey", "signature": str(approval.sign(m[0], message))},
            {"member": str(outsider.pubkey()), "signature": str(approval.sign(outsider, message))},
            {"member": str(m[0].pubkey()), "signature": "3xBadSignature"},
            {"member": str(m[1].pubkey()), "signature": str(approval.sign(m[1], other.message()))},
            {"member": str(m[2].pubkey()), "signature": str(approval.sign(m[3], message))},
            {"member": str(m[0].pubkey()), "signature": str(approval.sign(m[0], message))},
            {"member": str(m[0].pubkey()), "signature": str(approval.sign(m[0], message))},
            {
                "member": str(m[4].pubkey()),
                "decision": "cancel",
                "signature": str(approval.sign(m[4], subject.message("cancel"))),
            },
        ]

    outcome = await run_upgrade_flow(chain, block_names, v2_buffer, answers)
    assert outcome.state.is_cancelled(), outcome.state
    assert outcome.proposal is not None and outcome.proposal.status == "cancelled"
    history = proposals_records.approvals(records_db, outcome.proposal.id)
    reasons = [(a.accepted, a.reason or "") for a in history]
    expected = [
        "not a base58 public key",
        "is not a member",
        "not a base58 ed25519 signature",
        "signature is not",  # over another proposal
        "signature is not",  # another member's signature
        "",
        "already signed off",
        "",
    ]
    assert [a for a, _ in reasons] == [False, False, False, False, False, True, False, True]
    for (_, reason), want in zip(reasons, expected, strict=True):
        assert want in reason
    assert history[-1].decision == "cancel"
    assert proposals_records.get_execution(records_db, outcome.proposal.id) is None
    assert programdata_hash(chain) == v1_hash  # no chain write


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_members_can_reject(chain: DemoChain, block_names, records_db, v2_buffer) -> None:
    def answers(proposal):
        message = approval_subject(proposal).message("reject")
        return [
            {
                "member": str(k.pubkey()),
                "decision": "reject",
                "signature": str(approval.sign(k, message)),
            }
            for k in chain.members[:3]
        ]

    outcome = await run_upgrade_flow(chain, block_names, v2_buffer, answers)
    assert outcome.state.is_failed()
    assert "rejected" in (outcome.state.message or "")
    assert outcome.proposal.status == "rejected"
    assert counts(records_db)["executions"] == 0
    assert programdata_hash(chain) == loader.verifiable_hash(chain.binaries["v1"])


async def _make_immutable(chain: DemoChain) -> None:
    async with AsyncClient(chain.url) as client:
        ix = loader.set_authority(
            loader.programdata_address(chain.program_id), chain.authority.pubkey(), None
        )
        await send.send_and_confirm(client, [ix], chain.authority)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("case", "error", "words"),
    [
        ("malformed program id", errors.InputError, "program id: 'xyz' is not a base58"),
        ("malformed buffer", errors.InputError, "buffer: '0xabc' is not a base58"),
        ("buffer missing", errors.AccountNotFound, "does not exist"),
        ("buffer is a wallet", errors.NotABuffer, "not the BPF Upgradeable Loader"),
        ("buffer is a program", errors.NotABuffer, "not a Buffer"),
        ("buffer of another authority", errors.AuthorityMismatch, "set-buffer-authority"),
        ("hash mismatch", errors.HashMismatch, "expected " + "0" * 64),
        ("threshold above members", errors.PolicyViolation, "above the member count"),
        ("program authority not ours", errors.AuthorityMismatch, "not this runbook's"),
        ("immutable program", errors.ProgramImmutable, "immutable"),
    ],
)
async def test_bad_input_stops_before_anything_is_recorded_or_sent(
    case: str, error: type, words: str, chain: DemoChain, block_names, records_db, v2_buffer
) -> None:
    params: dict = {}
    buffer = v2_buffer
    if case == "malformed program id":
        params["program_id"] = "xyz"
    elif case == "malformed buffer":
        buffer = "0xabc"
    elif case == "buffer missing":
        buffer = str(Keypair().pubkey())
    elif case == "buffer is a wallet":
        buffer = str(chain.authority.pubkey())
    elif case == "buffer is a program":
        buffer = str(chain.program_id)
    elif case == "buffer of another authority":
        buffer = str(await write_buffer(chain, chain.binaries["v2"], authority=Keypair()))
    elif case == "hash mismatch":
        params["expected_sha256"] = "0" * 64
    elif case == "threshold above members":
        policy = await MultisigPolicy.aload(block_names["policy_block"])
        policy.threshold = 6
        await policy.asave(block_names["policy_block"], overwrite=True)
    elif case == "program authority not ours":
        await SolanaKeypair.from_keypair(Keypair()).asave(
            block_names["authority_block"], overwrite=True
        )
    elif case == "immutable program":
        await _make_immutable(chain)
    before = programdata_hash(chain) if case != "immutable program" else None
    outcome = await run_upgrade_flow(chain, block_names, buffer, None, **params)
    assert outcome.state.is_failed()
    with pytest.raises(error) as info:
        await outcome.state.aresult()
    assert words in str(info.value)
    assert counts(records_db) == {"proposals": 0, "accepted": 0, "executions": 0}
    if before is not None:
        assert programdata_hash(chain) == before


def start_small(chain: DemoChain) -> DemoChain:
    """A second program on the same localnet whose ProgramData has no headroom: v2 is
    larger than v1, so its upgrade needs an ExtendProgram (test_upgrade_from_file)."""
    v1 = chain.binaries["v1"]
    program_id = chain.server.localnet.deploy_upgradeable(
        Keypair(), v1, chain.authority, max_data_len=len(v1)
    )
    return DemoChain(chain.server, chain.authority, chain.members, program_id, chain.binaries)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_execution_before_the_timelock_is_refused(
    chain: DemoChain, block_names, records_db: Engine, v2_buffer: str
) -> None:
    members = [str(k.pubkey()) for k in chain.members]
    proposal = proposals_records.record_proposal(
        records_db,
        key=f"manual-{uuid.uuid4()}",
        kind="upgrade",
        cluster="localnet",
        backend="keypair",
        governance=str(chain.authority.pubkey()),
        program_id=str(chain.program_id),
        buffer=v2_buffer,
        buffer_hash=loader.verifiable_hash(chain.binaries["v2"]),
        description="d",
        proposer="p",
        members=members,
        threshold=3,
        timelock_seconds=3600,
    )
    for member in members[:3]:
        proposals_records.record_approval(
            records_db, proposal.id, member=member, decision="approve", accepted=True
        )
    proposal = proposals_records.mark_threshold_met(records_db, proposal.id, datetime.now(UTC))
    before = programdata_hash(chain)
    with pytest.raises(errors.TimelockActive, match=r"the timelock has 3[56]\d\d s left"):
        await send_upgrade(
            await _cluster(block_names),
            proposal,
            3,
            block_names["authority_block"],
            block_names["fee_payer_block"],
        )
    assert programdata_hash(chain) == before
    assert proposals_records.get_execution(records_db, proposal.id) is None
