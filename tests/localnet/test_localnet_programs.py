"""Upgradeable programs on the localnet: deploy and upgrade through the real loader over
RPC, the Python preload API, and getProgramAccounts filters over loader accounts."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.jsonrpc import JsonRpcRequest, SolanaJsonRpcError
from solana.rpc.models import MemcmpOpts
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction, VersionedTransaction

from core.base58 import b58encode
from core.errors import InputError
from localnet import Localnet, LocalnetTransactionError
from programs import loader

MEMO_V1 = Pubkey.from_string("Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo")


async def send(
    client: AsyncClient, payer: Keypair, signers: list[Keypair], ixs: list[Instruction]
) -> Signature:
    recent = (await client.get_latest_blockhash()).value.blockhash
    tx = Transaction([payer, *signers], Message(ixs, payer.pubkey()), recent)
    return (await client.send_transaction(tx)).value


async def write_buffer(
    client: AsyncClient, payer: Keypair, authority: Keypair, elf: bytes
) -> Pubkey:
    """create_buffer, then every Write at once, all with one blockhash (as the Solana CLI
    does: writes are independent and may land in any order)."""
    buffer = Keypair()
    rent = (
        await client.get_minimum_balance_for_rent_exemption(loader.BUFFER_METADATA_SIZE + len(elf))
    ).value
    await send(
        client,
        payer,
        [buffer],
        loader.create_buffer(payer.pubkey(), buffer.pubkey(), authority.pubkey(), rent, len(elf)),
    )
    recent = (await client.get_latest_blockhash()).value.blockhash
    writes = [
        Transaction(
            [payer, authority],
            Message(
                [loader.write(buffer.pubkey(), authority.pubkey(), offset, chunk)], payer.pubkey()
            ),
            recent,
        )
        for offset, chunk in loader.write_chunks(elf)
    ]
    assert all(len(bytes(tx)) <= 1232 for tx in writes)
    await asyncio.gather(*(client.send_transaction(tx) for tx in writes))
    return buffer.pubkey()


async def memo_logs(client: AsyncClient, payer: Keypair, program: Pubkey) -> list[str]:
    ix = Instruction(program, b"hello", [AccountMeta(payer.pubkey(), True, False)])
    recent = (await client.get_latest_blockhash()).value.blockhash
    tx = VersionedTransaction(Message.new_with_blockhash([ix], payer.pubkey(), recent), [payer])
    sim = (await client.simulate_transaction(tx)).value
    return list(sim.logs or [])


async def status_slot(client: AsyncClient, sig: Signature) -> int:
    status = (await client.get_signature_statuses([sig])).value[0]
    assert status is not None and status.err is None
    return status.slot


async def test_deploy_and_upgrade_through_rpc(
    client: AsyncClient, payer: Keypair, memo_elf: bytes, token_elf: bytes
) -> None:
    authority, program = Keypair(), Keypair()
    buffer = await write_buffer(client, payer, authority, memo_elf)
    buffer_account = (await client.get_account_info(buffer)).value
    assert buffer_account is not None
    assert loader.buffer_hash(bytes(buffer_account.data)) == loader.verifiable_hash(memo_elf)

    rent = (await client.get_minimum_balance_for_rent_exemption(loader.PROGRAM_ACCOUNT_SIZE)).value
    deploy_sig = await send(
        client,
        payer,
        [program, authority],
        loader.deploy_program(
            payer.pubkey(), program.pubkey(), buffer, authority.pubkey(), rent, len(token_elf)
        ),
    )
    program_account = (await client.get_account_info(program.pubkey())).value
    assert program_account is not None and program_account.executable
    assert program_account.owner == loader.LOADER_ID
    assert (await client.get_account_info(buffer)).value is None  # drained into ProgramData
    programdata = loader.programdata_address(program.pubkey())
    pd_account = (await client.get_account_info(programdata)).value
    assert pd_account is not None
    state = loader.decode_state(bytes(pd_account.data))
    assert isinstance(state, loader.ProgramData) and state.authority == authority.pubkey()
    assert state.slot == await status_slot(client, deploy_sig)

    logs = await memo_logs(client, payer, program.pubkey())
    assert "Program log: Memo (len 5)" in logs

    # Upgrade to a different program right away: the deploy's block is already closed.
    new_buffer = await write_buffer(client, payer, authority, token_elf)
    upgrade_sig = await send(
        client,
        payer,
        [authority],
        [loader.upgrade(program.pubkey(), new_buffer, authority.pubkey(), payer.pubkey())],
    )
    assert await status_slot(client, upgrade_sig) > state.slot
    pd_account = (await client.get_account_info(programdata)).value
    assert pd_account is not None
    assert loader.programdata_hash(bytes(pd_account.data)) == loader.verifiable_hash(token_elf)
    # The new code runs at once: SPL Token does not understand a memo.
    logs = await memo_logs(client, payer, program.pubkey())
    assert "Program log: Error: Invalid instruction" in logs


async def test_preloaded_program_at_bare_id(
    net: Localnet, client: AsyncClient, payer: Keypair, memo_elf: bytes
) -> None:
    authority = Keypair()
    program_id = Pubkey.new_unique()  # no keypair, like --upgradeable-program
    slot = net.slot
    assert net.deploy_upgradeable(program_id, memo_elf, authority) == program_id
    assert net.slot > slot
    account = (await client.get_account_info(program_id)).value
    assert account is not None and account.executable
    pd = (await client.get_account_info(loader.programdata_address(program_id))).value
    assert pd is not None
    assert loader.decode_state(bytes(pd.data)) == loader.ProgramData(
        slot=net.slot - 1, authority=authority.pubkey()
    )
    assert len(pd.data) == loader.PROGRAMDATA_METADATA_SIZE + len(memo_elf)
    assert (await client.get_balance(authority.pubkey())).value == 0  # a fresh payer paid
    assert "Program log: Memo (len 5)" in await memo_logs(client, payer, program_id)

    # The authority can upgrade in the very next transaction.
    buffer = await write_buffer(client, payer, authority, memo_elf)
    await send(
        client,
        payer,
        [authority],
        [loader.upgrade(program_id, buffer, authority.pubkey(), payer.pubkey())],
    )

    with pytest.raises(InputError, match="already exists"):
        net.deploy_upgradeable(program_id, memo_elf, authority)


def test_loader_refuses_bad_elf(net: Localnet) -> None:
    # Memo v1 was built for the deprecated loader; the upgradeable loader's verifier
    # rejects it, as on a cluster.
    old_elf = bytes(LiteSVM().get_account(MEMO_V1).data)
    with pytest.raises(LocalnetTransactionError) as exc:
        net.deploy_upgradeable(Keypair(), old_elf, Keypair())
    assert any("Unresolved symbol" in line for line in exc.value.logs)


async def raw(client: AsyncClient, method: str, params: list[Any]) -> Any:
    return await client.send_rpc_request(JsonRpcRequest(method=method, params=params), Any)


async def test_get_program_accounts_filters(
    net: Localnet, client: AsyncClient, payer: Keypair, memo_elf: bytes
) -> None:
    authority = Keypair()
    program = net.deploy_upgradeable(Keypair(), memo_elf, authority)
    programdata = loader.programdata_address(program)
    buffer = await write_buffer(client, payer, authority, memo_elf[:500])
    owner = authority.pubkey()

    def keys(resp: Any) -> list[Pubkey]:
        return [entry.pubkey for entry in resp.value]

    # The program account points at its ProgramData (offset 4).
    found = await client.get_program_accounts(
        loader.LOADER_ID,
        encoding="base64",
        filters=[loader.PROGRAM_ACCOUNT_SIZE, MemcmpOpts(offset=4, bytes=str(programdata))],
    )
    assert keys(found) == [program]
    # ProgramData by upgrade authority (Option tag at 12, key at 13).
    found = await client.get_program_accounts(
        loader.LOADER_ID, encoding="base64", filters=[MemcmpOpts(offset=13, bytes=str(owner))]
    )
    assert keys(found) == [programdata]
    # Buffers by authority: state tag 1, then the key at 5.
    buffer_tag = b58encode((1).to_bytes(4, "little"))
    found = await client.get_program_accounts(
        loader.LOADER_ID,
        encoding="base64",
        filters=[MemcmpOpts(offset=0, bytes=buffer_tag), MemcmpOpts(offset=5, bytes=str(owner))],
    )
    assert keys(found) == [buffer]
    assert found.value[0].account.data[:4] == b"\x01\0\0\0"

    # withContext, base64 memcmp bytes and dataSlice, on the wire.
    config = {
        "encoding": "base64",
        "withContext": True,
        "dataSlice": {"offset": 0, "length": 4},
        "filters": [
            {
                "memcmp": {
                    "offset": 5,
                    "bytes": base64.b64encode(bytes(owner)).decode(),
                    "encoding": "base64",
                }
            },
        ],
    }
    result = await raw(client, "getProgramAccounts", [str(loader.LOADER_ID), config])
    assert result["context"]["slot"] == net.slot
    [entry] = result["value"]
    assert entry["pubkey"] == str(buffer)
    assert entry["account"]["data"] == [base64.b64encode(b"\x01\0\0\0").decode(), "base64"]
    assert entry["account"]["space"] == loader.BUFFER_METADATA_SIZE + 500

    # A memcmp past the end of the data matches nothing; an unknown program owns nothing.
    far = MemcmpOpts(offset=10**6, bytes=str(owner))
    assert (await client.get_program_accounts(loader.LOADER_ID, filters=[far])).value == []
    assert (await client.get_program_accounts(Pubkey.new_unique())).value == []

    with pytest.raises(SolanaJsonRpcError) as exc:
        await raw(
            client,
            "getProgramAccounts",
            [str(loader.LOADER_ID), {"filters": [{"dataSize": 36}] * 5}],
        )
    assert exc.value.code == -32602 and "max 4" in exc.value.message
