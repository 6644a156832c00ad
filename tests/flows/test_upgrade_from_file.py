"""The upgrade runbook given the built .so instead of a buffer: it checks the file, writes
the buffer itself, hands it to the authority, extends a ProgramData too small, upgrades.

A real Prefect API, a real localnet (the real loader) and a records database.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flow_driver import run_upgrade_flow
from landed import count_landed
from sqlalchemy import Engine
from test_upgrade_flow import counts, programdata_hash, start_small
from test_upgrade_onchain import sign

from core import errors
from programs import loader
from programs.upgrade_manager import client as um
from runbooks.demo import DemoChain, save_blocks, setup_governance, start_demo_chain
from store.records import audit, proposals, transactions
from tasks.buffer import EXTENDED_ACTION


def write_so(tmp_path: Path, elf: bytes, name: str = "vault.so") -> str:
    path = tmp_path / name
    path.write_bytes(elf)
    return str(path)


def extend_data(additional: int) -> bytes:
    return struct.pack("<II", 6, additional)


def landed_writes(chain: DemoChain) -> dict[str, int]:
    """Write instructions landed per buffer, from now on (any offset)."""
    net = chain.server.localnet
    counts: dict[str, int] = {}
    send = net.send_transaction

    def counting(tx, **kwargs):  # type: ignore[no-untyped-def]
        outcome = send(tx, **kwargs)
        if outcome.landed and outcome.ok:
            keys = tx.message.account_keys
            for ix in tx.message.instructions:
                data = bytes(ix.data)
                if keys[ix.program_id_index] == loader.LOADER_ID and data[:4] == b"\x01\0\0\0":
                    buffer = str(keys[ix.accounts[0]])
                    counts[buffer] = counts.get(buffer, 0) + 1
        return outcome

    net.send_transaction = counting  # type: ignore[method-assign]
    return counts


async def test_keypair_backend_writes_extends_and_upgrades_from_the_file(
    chain: DemoChain, block_names, records_db: Engine, tmp_path: Path
) -> None:
    """v2 is larger than v1's ProgramData (no headroom): one run writes the buffer from
    the .so, extends the ProgramData once (audited) and upgrades."""
    small = start_small(chain)
    v2 = chain.binaries["v2"]
    v2_hash = loader.verifiable_hash(v2)
    program_key = str(small.program_id)
    writes = landed_writes(small)
    programdata = loader.programdata_address(small.program_id)
    before = small.server.localnet.get_account(programdata)
    assert before is not None
    capacity = len(before.data) - loader.PROGRAMDATA_METADATA_SIZE
    assert capacity < len(v2)
    additional = loader.extension_bytes(capacity, len(v2))
    extended = count_landed(small.server.localnet, loader.LOADER_ID, extend_data(additional), 0)
    m = small.members

    outcome = await run_upgrade_flow(
        small,
        block_names,
        None,
        lambda p: [sign(m[0], p), sign(m[1], p), sign(m[2], p)],
        program_id=program_key,
        program_file=write_so(tmp_path, v2),
        expected_sha256=v2_hash,
    )
    assert outcome.state.is_completed(), outcome.state.message
    assert programdata_hash(small) == v2_hash
    proposal = outcome.proposal
    assert proposal is not None and proposal.status == "executed"
    # Every chunk of the file landed once, into the one buffer the proposal names.
    assert writes == {proposal.buffer: len(list(loader.write_chunks(v2)))}
    assert sum(extended.values()) == 1  # the extension landed once
    after = small.server.localnet.get_account(programdata)
    assert after is not None and len(after.data) - loader.PROGRAMDATA_METADATA_SIZE >= len(v2)
    (row,) = audit.audit_events(
        records_db, proposals.proposal_subject(proposal.id), action=EXTENDED_ACTION
    )
    assert row.details["additional_bytes"] == additional >= loader.MIN_EXTEND_BYTES
    assert row.details["capacity"] == capacity + additional
    # No secret in the journal: the buffer's address, never its keypair.
    rows = transactions.transactions_like(records_db, "write-buffer:")
    assert rows and all(set(r.details or {}) <= {"buffer", "sha256"} for r in rows)


@pytest.fixture
def tight_chain(demo_binaries: dict[str, bytes]) -> Iterator[DemoChain]:
    """demo_vault v1 deployed with no headroom: v2 needs an ExtendProgram."""
    chain = start_demo_chain(binaries=demo_binaries, headroom=1.0)
    yield chain
    chain.server.stop()


async def test_onchain_backend_writes_hands_over_extends_and_upgrades(
    prefect_api: None, tight_chain: DemoChain, records_db: Engine, tmp_path: Path
) -> None:
    chain = tight_chain
    await setup_governance(chain, timelock_seconds=2)
    prefix = f"t-{uuid.uuid4().hex[:10]}"
    names = await save_blocks(chain, prefix=prefix, timelock_seconds=2, backend="onchain")
    v2 = chain.binaries["v2"]
    v2_hash = loader.verifiable_hash(v2)
    writes = landed_writes(chain)
    m = chain.members

    outcome = await run_upgrade_flow(
        chain,
        names,
        None,
        lambda p: [sign(m[0], p), sign(m[1], p), sign(m[2], p)],
        program_file=write_so(tmp_path, v2),
        expected_sha256=v2_hash,
    )
    assert outcome.state.is_completed(), outcome.state.message
    result = await outcome.state.aresult()
    assert result["backend"] == "onchain"
    assert programdata_hash(chain) == v2_hash
    proposal = outcome.proposal
    assert proposal is not None and proposal.status == "executed"
    assert list(writes) == [proposal.buffer]
    # The hand-over to the governance's PDA landed once (upgrade_manager requires it).
    (handed,) = [
        r
        for r in transactions.transactions_like(records_db, "write-buffer:")
        if r.purpose.endswith(":authority")
    ]
    assert handed.status == "landed"
    state = loader.decode_state(
        bytes(chain.server.localnet.get_account(loader.programdata_address(chain.program_id)).data)  # type: ignore[union-attr]
    )
    assert isinstance(state, loader.ProgramData)
    assert state.authority == um.authority_address(chain.governance)
    assert audit.audit_events(
        records_db, proposals.proposal_subject(proposal.id), action=EXTENDED_ACTION
    )


def not_an_elf(tmp_path: Path, chain: DemoChain) -> str:
    return write_so(tmp_path, b"#!/bin/sh\necho not a program\n" * 4)


def x86_elf(tmp_path: Path, chain: DemoChain) -> str:
    elf = bytearray(chain.binaries["v2"])
    elf[18:20] = (62).to_bytes(2, "little")  # EM_X86_64
    return write_so(tmp_path, bytes(elf))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("case", "error", "words"),
    [
        ("wrong hash", errors.HashMismatch, "expected " + "0" * 64),
        ("missing file", errors.InputError, "not a file on this worker"),
        ("not an elf", errors.InputError, "not an ELF file"),
        ("not sbpf", errors.InputError, "not an sBPF program"),
        ("both", errors.InputError, "not both"),
        ("neither", errors.InputError, "not neither"),
        ("file without hash", errors.InputError, "program_file needs expected_sha256"),
    ],
)
async def test_a_bad_file_stops_before_anything_is_recorded_or_sent(
    case: str,
    error: type,
    words: str,
    chain: DemoChain,
    block_names,
    records_db: Engine,
    v2_buffer: str,
    tmp_path: Path,
) -> None:
    v2 = chain.binaries["v2"]
    good = write_so(tmp_path, v2)
    params: dict = {"program_file": good, "expected_sha256": loader.verifiable_hash(v2)}
    buffer = None
    if case == "wrong hash":
        params["expected_sha256"] = "0" * 64
    elif case == "missing file":
        params["program_file"] = str(tmp_path / "nowhere.so")
    elif case == "not an elf":
        params["program_file"] = not_an_elf(tmp_path, chain)
    elif case == "not sbpf":
        params["program_file"] = x86_elf(tmp_path, chain)
    elif case == "both":
        buffer = v2_buffer
    elif case == "neither":
        params["program_file"] = ""
    elif case == "file without hash":
        params["expected_sha256"] = None
    sent = chain.server.localnet.transaction_count
    outcome = await run_upgrade_flow(chain, block_names, buffer, None, **params)
    assert outcome.state.is_failed()
    with pytest.raises(error) as info:
        await outcome.state.aresult()
    assert words in str(info.value)
    if case == "wrong hash":  # both hashes named
        assert loader.verifiable_hash(v2) in str(info.value)
    assert counts(records_db) == {"proposals": 0, "accepted": 0, "executions": 0}
    assert transactions.transactions_like(records_db, "") == []
    assert chain.server.localnet.transaction_count == sent
    assert programdata_hash(chain) == loader.verifiable_hash(chain.binaries["v1"])


def test_an_oversized_program_is_refused() -> None:
    elf = bytearray(b"\x7fELF" + bytes([2, 1, 1]) + bytes(57))
    elf[16:20] = struct.pack("<HH", 3, 247)
    loader.check_program_elf(bytes(elf))
    with pytest.raises(errors.InputError, match="at most"):
        loader.check_program_elf(bytes(elf) + bytes(loader.MAX_PROGRAM_LEN))
