"""The one confirmation loop (programs.rpc.confirm_signatures) against the localnet:
landed, landed with an error, and never landed."""

from __future__ import annotations

import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.models import TxOpts
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction

from core.errors import ChainError, TransactionFailed
from programs import rpc

SKIP_PREFLIGHT = TxOpts(skip_preflight=True)


async def _send_transfer(client: AsyncClient, payer: Keypair, lamports: int) -> Signature:
    blockhash = (await client.get_latest_blockhash()).value.blockhash
    ix = transfer(
        TransferParams(from_pubkey=payer.pubkey(), to_pubkey=Pubkey.new_unique(), lamports=lamports)
    )
    tx = Transaction([payer], Message([ix], payer.pubkey()), blockhash)
    return (await client.send_transaction(tx, opts=SKIP_PREFLIGHT)).value


async def test_landed_and_failed_signatures(client: AsyncClient, payer: Keypair) -> None:
    good = [await _send_transfer(client, payer, 10**6 + i) for i in range(3)]
    bad = await _send_transfer(client, payer, 10**15)
    errors = await rpc.confirm_signatures(client, [*good, bad], timeout_seconds=10)
    assert list(errors) == [bad]
    await rpc.wait_confirmed(client, good[0], timeout_seconds=10)
    with pytest.raises(TransactionFailed, match=f"transaction {bad} failed"):
        await rpc.wait_confirmed(client, bad, timeout_seconds=10)


async def test_unconfirmed_signatures_time_out_with_a_hint(client: AsyncClient) -> None:
    missing = Signature.new_unique()
    with pytest.raises(ChainError, match=f"transaction {missing} not confirmed .*explorer"):
        await rpc.wait_confirmed(client, missing, timeout_seconds=0.3)
    several = [Signature.new_unique(), Signature.new_unique()]
    with pytest.raises(ChainError, match=r"2 migrate transactions not confirmed .*rerun"):
        await rpc.confirm_signatures(
            client, several, timeout_seconds=0.3, what="migrate transactions", hint="rerun"
        )
