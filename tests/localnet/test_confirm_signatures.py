"""The one confirmation loop (programs.send.confirm) against the localnet over HTTP:
landed, landed with an error, and never seen before the safety-net timeout."""

from __future__ import annotations

import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.models import TxOpts
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction

from core.errors import ChainError
from programs.send import SendOptions, Signed, confirm

SKIP_PREFLIGHT = TxOpts(skip_preflight=True)
OPTIONS = SendOptions(max_priority_fee=0)


async def _transfer(client: AsyncClient, payer: Keypair, lamports: int) -> Signed:
    latest = (await client.get_latest_blockhash()).value
    ix = transfer(
        TransferParams(from_pubkey=payer.pubkey(), to_pubkey=Pubkey.new_unique(), lamports=lamports)
    )
    tx = Transaction([payer], Message([ix], payer.pubkey()), latest.blockhash)
    return Signed.of(tx, latest.last_valid_block_height)


async def test_landed_and_failed_transactions(client: AsyncClient, payer: Keypair) -> None:
    good = [await _transfer(client, payer, 10**6 + i) for i in range(3)]
    bad = await _transfer(client, payer, 10**15)  # more than the payer has: lands, fails
    for item in [*good, bad]:
        await client.send_transaction(item.transaction(), opts=SKIP_PREFLIGHT)
    outcomes = await confirm(client, [*good, bad], OPTIONS)
    assert [outcomes[g.signature].landed for g in good] == [True] * 3
    failed = outcomes[bad.signature]
    assert not failed.landed and not failed.expired and not failed.refused
    assert (failed.error or "").startswith("transaction failed: ")


async def test_a_transaction_never_seen_times_out_naming_it(
    client: AsyncClient, payer: Keypair
) -> None:
    never_sent = await _transfer(client, payer, 10**6)
    hasty = SendOptions(max_priority_fee=0, timeout_seconds=0.3)
    with pytest.raises(
        ChainError, match=f"1 transaction\\(s\\) not confirmed .*{never_sent.signature}"
    ):
        await confirm(client, [never_sent], hasty)
