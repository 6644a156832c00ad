"""The localnet's RPC methods, through solana-py's AsyncClient as the flows use them."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import httpx
import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.core import RPCException
from solana.rpc.jsonrpc import JsonRpcRequest, SolanaJsonRpcError
from solana.rpc.models import DataSliceOpts, TxOpts
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.rpc.errors import (
    InvalidParamsMessage,
    RpcCustomErrorFieldless,
    SendTransactionPreflightFailureMessage,
)
from solders.signature import Signature
from solders.system_program import (
    AdvanceNonceAccountParams,
    TransferParams,
    advance_nonce_account,
    create_nonce_account,
    transfer,
)
from solders.sysvar import CLOCK
from solders.transaction import Transaction, VersionedTransaction
from solders.transaction_status import (
    InstructionErrorCustom,
    TransactionConfirmationStatus,
    TransactionErrorFieldless,
    TransactionErrorInstructionError,
)

from core.base58 import b58decode, b58encode
from localnet import Localnet, LocalnetServer, PreflightFailure

LAMPORTS_PER_SOL = 1_000_000_000
SKIP_PREFLIGHT = TxOpts(skip_preflight=True)


def transfer_tx(payer: Keypair, to: Pubkey, lamports: int, blockhash: Hash) -> Transaction:
    ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to, lamports=lamports))
    return Transaction([payer], Message([ix], payer.pubkey()), blockhash)


def versioned(tx: Transaction) -> VersionedTransaction:
    return VersionedTransaction.from_legacy(tx)


async def blockhash(client: AsyncClient) -> Hash:
    return (await client.get_latest_blockhash()).value.blockhash


async def raw(client: AsyncClient, method: str, params: list[Any] | None = None) -> Any:
    return await client.send_rpc_request(JsonRpcRequest(method=method, params=params), Any)


async def post(server: LocalnetServer, body: bytes) -> Any:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            server.url, content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 200
    return response.json()


# --- chain info -----------------------------------------------------------------------


async def test_health_version_genesis(server: LocalnetServer, client: AsyncClient) -> None:
    assert await client.is_connected()  # getHealth
    assert await raw(client, "getHealth") == "ok"
    async with httpx.AsyncClient() as http:
        assert (await http.get(server.url + "/health")).text == "ok"
    version = (await client.get_version()).value
    assert version.solana_core.endswith("-localnet")
    assert isinstance(version.feature_set, int)
    wire = await raw(client, "getVersion")
    assert set(wire) == {"solana-core", "feature-set"}
    genesis = (await client.get_genesis_hash()).value
    assert genesis == server.localnet.genesis_hash
    assert (await client.get_genesis_hash()).value == genesis  # stable


async def test_slot_height_epoch_rent(net: Localnet, client: AsyncClient, payer: Keypair) -> None:
    slot = (await client.get_slot()).value
    height = (await client.get_block_height()).value
    info = (await client.get_epoch_info()).value
    assert info.absolute_slot == slot and info.block_height == height
    assert 0 <= info.slot_index < info.slots_in_epoch
    assert info.transaction_count == net.transaction_count
    # Nothing happens between transactions: the slot stays put.
    assert (await client.get_slot()).value == slot
    # One slot (and block) per landed transaction.
    await client.send_transaction(
        transfer_tx(payer, Pubkey.new_unique(), 10**6, await blockhash(client))
    )
    assert (await client.get_slot()).value == slot + 1
    assert (await client.get_block_height()).value == height + 1
    assert (await client.get_epoch_info()).value.transaction_count == info.transaction_count + 1  # type: ignore[operator]
    rent = (await client.get_minimum_balance_for_rent_exemption(100)).value
    assert rent == net.minimum_balance_for_rent_exemption(100) > 0


async def test_clock_sysvar_follows_wall_time(net: Localnet, client: AsyncClient) -> None:
    def clock_time(data: bytes) -> int:
        return int.from_bytes(data[32:40], "little", signed=True)  # Clock.unix_timestamp

    account = (await client.get_account_info(CLOCK)).value
    assert account is not None
    assert abs(clock_time(account.data) - time.time()) < 5
    assert int.from_bytes(account.data[:8], "little") == net.slot
    net.clock_offset_seconds = 3600
    try:
        account = (await client.get_account_info(CLOCK)).value
        assert account is not None
        assert abs(clock_time(account.data) - (time.time() + 3600)) < 5
    finally:
        net.clock_offset_seconds = 0


# --- airdrop, balances, accounts ------------------------------------------------------


async def test_request_airdrop_and_status(client: AsyncClient) -> None:
    who = Keypair().pubkey()
    sig = (await client.request_airdrop(who, 2 * LAMPORTS_PER_SOL)).value
    assert isinstance(sig, Signature)
    status = (await client.get_signature_statuses([sig])).value[0]
    assert status is not None
    assert status.err is None
    assert status.confirmation_status == TransactionConfirmationStatus.Finalized
    assert status.slot < (await client.get_slot()).value
    assert (await client.get_balance(who)).value == 2 * LAMPORTS_PER_SOL
    # The same airdrop again is a new transaction (a new slot, a new blockhash).
    again = (await client.request_airdrop(who, 2 * LAMPORTS_PER_SOL)).value
    assert again != sig
    assert (await client.get_balance(who)).value == 4 * LAMPORTS_PER_SOL


async def test_transfer_and_accounts(client: AsyncClient, payer: Keypair) -> None:
    to = Pubkey.new_unique()
    missing = Pubkey.new_unique()
    before = (await client.get_balance(payer.pubkey())).value
    sig = (
        await client.send_transaction(transfer_tx(payer, to, 10**7, await blockhash(client)))
    ).value
    assert (await client.get_balance(to)).value == 10**7
    assert (await client.get_balance(payer.pubkey())).value == before - 10**7 - 5000
    assert (await client.get_balance(missing)).value == 0

    info = await client.get_account_info(to)
    assert info.value is not None and info.value.lamports == 10**7
    assert info.value.owner == Pubkey.default()
    assert info.context.slot == (await client.get_slot()).value
    assert (await client.get_account_info(missing)).value is None

    many = (await client.get_multiple_accounts([to, missing, payer.pubkey()])).value
    assert many[0] is not None and many[0].lamports == 10**7
    assert many[1] is None
    assert many[2] is not None

    status = (await client.get_signature_statuses([sig, Signature.new_unique()])).value
    assert status[0] is not None and status[0].err is None
    assert status[1] is None


async def test_account_encodings_and_slices(client: AsyncClient, net: Localnet) -> None:
    # A program-owned account with known data.
    from solders.account import Account

    key = Pubkey.new_unique()
    data = bytes(range(200))
    with net.lock:
        net.svm.set_account(key, Account(10**9, data, Pubkey.new_unique(), False, 0))

    b64 = await raw(client, "getAccountInfo", [str(key), {"encoding": "base64"}])
    assert b64["value"]["data"] == [base64.b64encode(data).decode(), "base64"]
    assert b64["value"]["space"] == 200

    sliced = await client.get_account_info(key, data_slice=DataSliceOpts(offset=10, length=5))
    assert sliced.value is not None and bytes(sliced.value.data) == data[10:15]

    b58 = await raw(
        client,
        "getAccountInfo",
        [str(key), {"encoding": "base58", "dataSlice": {"offset": 0, "length": 100}}],
    )
    assert b58["value"]["data"] == [b58encode(data[:100]), "base58"]
    assert b58["value"]["space"] == 200
    binary = await raw(
        client, "getAccountInfo", [str(key), {"dataSlice": {"offset": 0, "length": 3}}]
    )
    assert binary["value"]["data"] == b58encode(data[:3])  # Agave's default: plain base58

    # jsonParsed has no parser here and falls back to base64, as Agave does.
    parsed = await client.get_account_info_json_parsed(key)
    assert parsed.value is not None and bytes(parsed.value.data) == data  # type: ignore[arg-type]

    # Agave refuses base58 for more than 128 bytes: -32600.
    with pytest.raises(SolanaJsonRpcError) as too_big:
        await raw(client, "getAccountInfo", [str(key), {"encoding": "base58"}])
    assert too_big.value.code == -32600
    assert "please use Base64 encoding" in too_big.value.message


async def test_multiple_accounts_limit(client: AsyncClient) -> None:
    keys = [Pubkey.new_unique() for _ in range(100)]
    assert len((await client.get_multiple_accounts(keys)).value) == 100
    with pytest.raises(RPCException) as err:
        await client.get_multiple_accounts([*keys, Pubkey.new_unique()])
    assert isinstance(err.value.args[0], InvalidParamsMessage)
    assert "max 100" in err.value.args[0].message


# --- sending: errors and their shapes -------------------------------------------------


async def test_failing_transaction_preflight_shape(
    server: LocalnetServer, client: AsyncClient, payer: Keypair
) -> None:
    slot = (await client.get_slot()).value
    balance = (await client.get_balance(payer.pubkey())).value
    tx = transfer_tx(payer, Pubkey.new_unique(), 10**15, await blockhash(client))
    with pytest.raises(RPCException) as exc:
        await client.send_transaction(tx)
    failure = exc.value.args[0]
    assert isinstance(failure, SendTransactionPreflightFailureMessage)
    assert failure.message == (
        "Transaction simulation failed: Error processing Instruction 0: custom program error: 0x1"
    )
    assert failure.data.err == TransactionErrorInstructionError(0, InstructionErrorCustom(1))
    assert failure.data.logs and any("insufficient lamports" in line for line in failure.data.logs)
    assert failure.data.units_consumed == 150
    # Preflight failures are never executed: no fee, no slot.
    assert (await client.get_balance(payer.pubkey())).value == balance
    assert (await client.get_slot()).value == slot
    assert (await client.get_signature_statuses([tx.signatures[0]])).value[0] is None

    # The raw wire shape: code -32002 and Solana's data fields.
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "sendTransaction",
        "params": [base64.b64encode(bytes(tx)).decode(), {"encoding": "base64"}],
    }
    reply = await post(server, json.dumps(body).encode())
    assert reply["id"] == 7
    error = reply["error"]
    assert error["code"] == -32002
    assert error["message"].startswith("Transaction simulation failed: ")
    data = error["data"]
    assert data["err"] == {"InstructionError": [0, {"Custom": 1}]}
    assert data["accounts"] is None and data["returnData"] is None
    assert data["unitsConsumed"] == 150 and data["logs"]


async def test_failing_transaction_skip_preflight_lands(
    client: AsyncClient, payer: Keypair
) -> None:
    slot = (await client.get_slot()).value
    balance = (await client.get_balance(payer.pubkey())).value
    tx = transfer_tx(payer, Pubkey.new_unique(), 10**15, await blockhash(client))
    sig = (await client.send_transaction(tx, opts=SKIP_PREFLIGHT)).value
    status = (await client.get_signature_statuses([sig])).value[0]
    assert status is not None and status.slot == slot
    assert status.err == TransactionErrorInstructionError(0, InstructionErrorCustom(1))
    # Landed and failed: the fee is paid and the slot is used.
    assert (await client.get_balance(payer.pubkey())).value == balance - 5000
    assert (await client.get_slot()).value == slot + 1


async def test_identical_transaction_twice(client: AsyncClient, payer: Keypair) -> None:
    tx = transfer_tx(payer, Pubkey.new_unique(), 10**6, await blockhash(client))
    first = (await client.send_transaction(tx)).value
    slot = (await client.get_slot()).value
    with pytest.raises(RPCException) as exc:
        await client.send_transaction(tx)
    failure = exc.value.args[0]
    assert isinstance(failure, SendTransactionPreflightFailureMessage)
    assert failure.data.err == TransactionErrorFieldless.AlreadyProcessed
    assert failure.message.endswith("This transaction has already been processed")
    # Without preflight the duplicate is dropped: same signature back, nothing executed.
    assert (await client.send_transaction(tx, opts=SKIP_PREFLIGHT)).value == first
    assert (await client.get_slot()).value == slot
    status = (await client.get_signature_statuses([first])).value[0]
    assert status is not None and status.err is None


async def test_concurrent_sends_with_one_blockhash(client: AsyncClient, payer: Keypair) -> None:
    recent = await blockhash(client)
    to = Pubkey.new_unique()
    slot = (await client.get_slot()).value
    txs = [transfer_tx(payer, to, 10**6 + i, recent) for i in range(20)]
    sigs = [r.value for r in await asyncio.gather(*(client.send_transaction(tx) for tx in txs))]
    assert (await client.get_balance(to)).value == sum(10**6 + i for i in range(20))
    statuses = (await client.get_signature_statuses(sigs)).value
    slots = sorted(s.slot for s in statuses if s is not None and s.err is None)
    assert slots == list(range(slot, slot + 20))  # one slot each


async def test_blockhash_expires_after_150_blocks(
    net: Localnet, client: AsyncClient, payer: Keypair
) -> None:
    latest = (await client.get_latest_blockhash()).value
    height = (await client.get_block_height()).value
    assert latest.last_valid_block_height == height + 150
    assert (await raw(client, "isBlockhashValid", [str(latest.blockhash)]))["value"] is True

    net.advance_slot(150)  # height == last valid height: still usable
    await client.send_transaction(transfer_tx(payer, Pubkey.new_unique(), 10**6, latest.blockhash))
    # That transaction took the block at the last valid height; the blockhash is now too old.
    assert (await raw(client, "isBlockhashValid", [str(latest.blockhash)]))["value"] is False
    stale = transfer_tx(payer, Pubkey.new_unique(), 10**6, latest.blockhash)
    with pytest.raises(RPCException) as exc:
        await client.send_transaction(stale)
    failure = exc.value.args[0]
    assert failure.message == "Transaction simulation failed: Blockhash not found"
    assert failure.data.err == TransactionErrorFieldless.BlockhashNotFound
    # Skipping preflight does not help: the cluster drops it, its status stays unknown.
    sig = (await client.send_transaction(stale, opts=SKIP_PREFLIGHT)).value
    assert (await client.get_signature_statuses([sig])).value[0] is None
    unknown = Hash.new_unique()
    assert (await raw(client, "isBlockhashValid", [str(unknown)]))["value"] is False


async def test_confirm_transaction(client: AsyncClient, payer: Keypair) -> None:
    latest = (await client.get_latest_blockhash()).value
    tx = transfer_tx(payer, Pubkey.new_unique(), 10**6, latest.blockhash)
    opts = TxOpts(skip_confirmation=False, last_valid_block_height=latest.last_valid_block_height)
    sig = (await client.send_transaction(tx, opts=opts)).value
    confirmed = await client.confirm_transaction(
        sig, last_valid_block_height=latest.last_valid_block_height, sleep_seconds=0.01
    )
    assert confirmed.value[0] is not None


async def test_versioned_transaction_and_base58(
    server: LocalnetServer, client: AsyncClient, payer: Keypair
) -> None:
    to = Pubkey.new_unique()
    ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to, lamports=10**6))
    msg = MessageV0.try_compile(payer.pubkey(), [ix], [], await blockhash(client))
    await client.send_transaction(VersionedTransaction(msg, [payer]))
    assert (await client.get_balance(to)).value == 10**6
    # base58 is the default encoding of sendTransaction.
    tx = transfer_tx(payer, to, 10**6, await blockhash(client))
    sig = await raw(client, "sendTransaction", [b58encode(bytes(tx))])
    assert Signature.from_string(sig) == tx.signatures[0]
    assert (await client.get_balance(to)).value == 2 * 10**6


async def test_bad_signature(client: AsyncClient, payer: Keypair) -> None:
    tx = transfer_tx(payer, Pubkey.new_unique(), 10**6, await blockhash(client))
    forged = Transaction.populate(tx.message, [Signature.new_unique()])
    with pytest.raises(RPCException) as exc:
        await client.send_transaction(forged)
    assert exc.value.args[0] == RpcCustomErrorFieldless.TransactionSignatureVerificationFailure
    with pytest.raises(SolanaJsonRpcError) as wire:
        await raw(client, "sendTransaction", [b58encode(bytes(forged))])
    assert wire.value.code == -32003
    assert wire.value.message == "Transaction signature verification failure"


async def test_malformed_requests(server: LocalnetServer, client: AsyncClient) -> None:
    # Undecodable transaction bytes: invalid params, as from Agave.
    with pytest.raises(RPCException) as exc:
        await client.send_raw_transaction(b"\x01\x02\x03")
    assert isinstance(exc.value.args[0], InvalidParamsMessage)
    assert exc.value.args[0].message.startswith("failed to deserialize")
    cases = [
        (["not base58 0OIl"], "invalid base58 encoding"),
        (["AAAA", {"encoding": "hex"}], "unsupported encoding: hex"),
        (["%%%", {"encoding": "base64"}], "invalid base64 encoding"),
    ]
    for params, message in cases:
        with pytest.raises(SolanaJsonRpcError) as wire:
            await raw(client, "sendTransaction", params)
        assert wire.value.code == -32602 and message in wire.value.message
    with pytest.raises(SolanaJsonRpcError) as wire:
        await raw(client, "getBalance", ["not-a-pubkey"])
    assert wire.value.code == -32602
    with pytest.raises(SolanaJsonRpcError) as wire:
        await raw(client, "getBlockProduction")
    assert (wire.value.code, wire.value.message) == (-32601, "Method not found")

    # Protocol-level errors keep JSON-RPC's codes.
    assert (await post(server, b"{nope"))["error"]["code"] == -32700
    assert (await post(server, b'{"id": 1, "method": "getSlot"}'))["error"]["code"] == -32600
    batch = await post(
        server,
        json.dumps(
            [
                {"jsonrpc": "2.0", "id": 1, "method": "getSlot"},
                {"jsonrpc": "2.0", "id": 2, "method": "getHealth"},
            ]
        ).encode(),
    )
    assert [r["id"] for r in batch] == [1, 2] and batch[1]["result"] == "ok"


async def test_min_context_slot(client: AsyncClient) -> None:
    slot = (await client.get_slot()).value
    with pytest.raises(SolanaJsonRpcError) as wire:
        await raw(client, "getBalance", [str(Pubkey.new_unique()), {"minContextSlot": slot + 10}])
    assert wire.value.code == -32016 and wire.value.data == {"contextSlot": slot}


# --- simulation -----------------------------------------------------------------------


async def test_simulate_transaction(client: AsyncClient, payer: Keypair) -> None:
    to = Pubkey.new_unique()
    slot = (await client.get_slot()).value
    tx = transfer_tx(payer, to, 10**6, await blockhash(client))
    sim = (await client.simulate_transaction(versioned(tx), accounts_addresses=[to])).value
    assert sim.err is None and sim.units_consumed == 150
    assert sim.logs and sim.logs[-1].endswith("success")
    assert sim.accounts is not None and sim.accounts[0] is not None
    assert sim.accounts[0].lamports == 10**6  # the state the transaction would leave
    # Nothing changed.
    assert (await client.get_balance(to)).value == 0
    assert (await client.get_slot()).value == slot

    failing = transfer_tx(payer, to, 10**15, await blockhash(client))
    sim = (await client.simulate_transaction(versioned(failing))).value
    assert sim.err == TransactionErrorInstructionError(0, InstructionErrorCustom(1))
    assert sim.logs


async def test_simulate_signatures_and_blockhash(
    net: Localnet, client: AsyncClient, payer: Keypair
) -> None:
    old = await blockhash(client)
    unsigned = Transaction.new_unsigned(
        Message(
            [
                transfer(
                    TransferParams(
                        from_pubkey=payer.pubkey(), to_pubkey=Pubkey.new_unique(), lamports=10**6
                    )
                )
            ],
            payer.pubkey(),
        )
    )
    # Unsigned, with a stale blockhash: simulation without sigVerify and with the
    # blockhash replaced works, as on a cluster, and says which blockhash it used.
    net.advance_slot(151)
    with_old = VersionedTransaction.populate(
        Message.new_with_compiled_instructions(
            unsigned.message.header.num_required_signatures,
            unsigned.message.header.num_readonly_signed_accounts,
            unsigned.message.header.num_readonly_unsigned_accounts,
            unsigned.message.account_keys,
            old,
            unsigned.message.instructions,
        ),
        [Signature.default()],
    )
    stale = (await client.simulate_transaction(with_old)).value
    assert stale.err == TransactionErrorFieldless.BlockhashNotFound
    replaced = (await client.simulate_transaction(with_old, replace_recent_blockhash=True)).value
    assert replaced.err is None
    assert replaced.replacement_blockhash is not None
    assert replaced.replacement_blockhash.blockhash == net.latest_blockhash()[0]

    with pytest.raises(RPCException) as exc:
        await client.simulate_transaction(with_old, sig_verify=True)
    assert exc.value.args[0] == RpcCustomErrorFieldless.TransactionSignatureVerificationFailure
    with pytest.raises(RPCException):
        await client.simulate_transaction(with_old, sig_verify=True, replace_recent_blockhash=True)


# --- durable nonces and the Python API ------------------------------------------------


async def test_durable_nonce_outlives_blockhash(
    net: Localnet, client: AsyncClient, payer: Keypair
) -> None:
    nonce = Keypair()
    rent = (await client.get_minimum_balance_for_rent_exemption(80)).value
    create = create_nonce_account(payer.pubkey(), nonce.pubkey(), payer.pubkey(), rent)
    await client.send_transaction(
        Transaction([payer, nonce], Message(list(create), payer.pubkey()), await blockhash(client))
    )
    account = (await client.get_account_info(nonce.pubkey())).value
    assert account is not None
    stored = Hash(bytes(account.data[40:72]))
    net.advance_slot(200)  # far past any blockhash's age
    to = Pubkey.new_unique()
    advance = advance_nonce_account(
        AdvanceNonceAccountParams(nonce_pubkey=nonce.pubkey(), authorized_pubkey=payer.pubkey())
    )
    pay = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to, lamports=10**6))
    tx = Transaction([payer], Message([advance, pay], payer.pubkey()), stored)
    await client.send_transaction(tx)
    assert (await client.get_balance(to)).value == 10**6


def test_python_api_errors(net: Localnet, payer: Keypair) -> None:
    tx = transfer_tx(payer, Pubkey.new_unique(), 10**15, net.latest_blockhash()[0])
    with pytest.raises(PreflightFailure) as exc:
        net.send_transaction(tx)
    assert exc.value.logs and "custom program error: 0x1" in str(exc.value)
    outcome = net.send_transaction(tx, skip_preflight=True)
    assert outcome.landed and not outcome.ok
    assert net.signature_status(outcome.signature) is not None


def test_base58_codec() -> None:
    for data in (b"", b"\0", b"\0\0\1", bytes(range(256)), b"\xff" * 64):
        assert b58decode(b58encode(data)) == data
    key = Pubkey.new_unique()
    assert b58encode(bytes(key)) == str(key)
