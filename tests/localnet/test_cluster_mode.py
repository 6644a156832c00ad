"""The localnet's cluster-like mode, over HTTP through solana-py's AsyncClient.

Most tests hold the slot clock still (an hour a slot) and move it with ``tick()``, so
landing, commitment and expiry are checked slot by slot without timing; one test runs
the real clock with generous bounds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed, Finalized
from solana.rpc.core import RPCException
from solana.rpc.models import DataSliceOpts, TxOpts
from solders.account import Account
from solders.compute_budget import set_compute_unit_price
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.rpc.responses import (
    GetRecentPrioritizationFeesResp,
    GetSignaturesForAddressResp,
    GetSignatureStatusesResp,
    GetTransactionResp,
)
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction
from solders.transaction_status import TransactionConfirmationStatus

from core.errors import InputError
from localnet import Localnet, LocalnetServer
from localnet.cli import main as localnet_main
from localnet.cluster_mode import STATUS_CACHE_SLOTS, ClusterBehaviour

REPO = Path(__file__).resolve().parents[2]
SOL = 1_000_000_000
# Above the rent-exempt minimum of an empty account, so a transfer may create it.
LAMPORTS = 1_000_000
SEND = TxOpts(skip_confirmation=True)
SKIP_PREFLIGHT = TxOpts(skip_confirmation=True, skip_preflight=True)
# Slots that only move when a test ticks them, and no rate limit in the way.
STILL = ClusterBehaviour(
    slot_seconds=3600.0,
    drop_fraction=0.0,
    requests_per_second=100_000.0,
    confirmation_lag_slots=1,
    finalization_lag_slots=3,
)


@contextmanager
def cluster(**changes: Any) -> Iterator[LocalnetServer]:
    with LocalnetServer(behaviour=dataclasses.replace(STILL, **changes)) as server:
        yield server


@pytest.fixture
def server() -> Iterator[LocalnetServer]:
    with cluster() as srv:
        yield srv


@pytest.fixture
async def client(server: LocalnetServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.url) as c:
        yield c


def funded(net: Localnet) -> Keypair:
    kp = Keypair()
    net.airdrop(kp.pubkey(), 10 * SOL)  # a direct call: lands at once
    return kp


def transfer_tx(
    payer: Keypair, to: Pubkey, lamports: int, blockhash: Hash, price: int | None = None
) -> Transaction:
    ixs: list[Instruction] = [] if price is None else [set_compute_unit_price(price)]
    ixs.append(
        transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to, lamports=lamports))
    )
    return Transaction([payer], Message(ixs, payer.pubkey()), blockhash)


async def send(client: AsyncClient, tx: Transaction, opts: TxOpts = SEND) -> Signature:
    return (await client.send_raw_transaction(bytes(tx), opts=opts)).value


async def latest(client: AsyncClient) -> Hash:
    return (await client.get_latest_blockhash()).value.blockhash


async def status(client: AsyncClient, sig: Signature, history: bool = False) -> Any:
    return (await client.get_signature_statuses([sig], search_transaction_history=history)).value[0]


# --- the slot clock -------------------------------------------------------------------


async def test_slots_advance_on_the_clock_and_the_clock_stops_with_the_server() -> None:
    with cluster(slot_seconds=0.1) as server:
        async with AsyncClient(server.url) as client:
            slot0 = (await client.get_slot()).value
            height0 = (await client.get_block_height()).value
            hash0 = await latest(client)
            started = time.monotonic()
            await asyncio.sleep(1.0)
            slots = (await client.get_slot()).value - slot0
            elapsed = time.monotonic() - started
            # ~10 slots; generous bounds for a loaded machine.
            assert 3 <= slots <= elapsed / 0.1 + 2
            assert (await client.get_block_height()).value - height0 == slots
            assert await latest(client) != hash0  # one new blockhash per slot
    assert not [t for t in threading.enumerate() if t.name == "localnet-slot-clock"]


async def test_a_sent_transaction_lands_one_or_two_slots_later_several_per_slot(
    server: LocalnetServer, client: AsyncClient
) -> None:
    net = server.localnet
    payer = funded(net)
    to = [Keypair().pubkey() for _ in range(6)]
    blockhash = await latest(client)
    sent_slot = net.slot
    sigs = [await send(client, transfer_tx(payer, key, 1_000_000, blockhash)) for key in to]
    # Accepted, not landed: no status, no balance.
    assert [await status(client, sig) for sig in sigs] == [None] * 6
    assert (await client.get_balance(to[0])).value == 0
    net.tick()
    net.tick()
    landed = [await status(client, sig) for sig in sigs]
    assert all(s is not None and s.err is None for s in landed)
    slots = {s.slot for s in landed}
    assert slots <= {sent_slot + 1, sent_slot + 2}
    assert len(slots) < len(sigs)  # several transactions share a slot
    assert [(await client.get_balance(key)).value for key in to] == [1_000_000] * 6


async def test_status_goes_processed_confirmed_finalized(
    server: LocalnetServer, client: AsyncClient
) -> None:
    net = server.localnet
    payer = funded(net)
    sig = await send(client, transfer_tx(payer, Keypair().pubkey(), LAMPORTS, await latest(client)))
    while await status(client, sig) is None:
        net.tick()
    seen = []
    for _ in range(4):
        s = await status(client, sig)
        seen.append((s.confirmation_status, s.confirmations))
        net.tick()
    assert seen == [
        (TransactionConfirmationStatus.Processed, 0),
        (TransactionConfirmationStatus.Confirmed, 1),
        (TransactionConfirmationStatus.Confirmed, 2),
        (TransactionConfirmationStatus.Finalized, None),
    ]


async def test_the_status_cache_forgets_unless_history_is_searched(
    server: LocalnetServer, client: AsyncClient
) -> None:
    net = server.localnet
    payer = funded(net)
    sig = await send(client, transfer_tx(payer, Keypair().pubkey(), LAMPORTS, await latest(client)))
    net.tick()
    net.tick()
    assert await status(client, sig) is not None
    net.advance_slot(STATUS_CACHE_SLOTS + 1)
    assert await status(client, sig) is None
    old = await status(client, sig, history=True)
    assert old.confirmation_status == TransactionConfirmationStatus.Finalized


# --- blockhash expiry and drops -------------------------------------------------------


async def test_an_expired_blockhash_is_refused_and_a_queued_transaction_with_it_dropped() -> None:
    with cluster(max_processing_age=2, landing_slots=(3, 3)) as server:
        net = server.localnet
        async with AsyncClient(server.url) as client:
            payer = funded(net)
            to = Keypair().pubkey()
            blockhash = await latest(client)
            # Valid when sent, expired (3 blocks later, age 2) by its landing slot.
            queued = await send(client, transfer_tx(payer, to, LAMPORTS, blockhash))
            for _ in range(3):
                net.tick()
            valid = await rpc(server.url, "isBlockhashValid", [str(blockhash)])
            assert json.loads(valid)["result"]["value"] is False
            assert await status(client, queued, history=True) is None
            assert (await client.get_balance(to)).value == 0
            with pytest.raises(RPCException) as refused:
                await send(client, transfer_tx(payer, to, LAMPORTS + 1, blockhash))
            assert "Blockhash not found" in str(refused.value)
            net.tick()
            assert (await client.get_balance(to)).value == 0


async def test_drop_fraction_one_drops_everything_yet_returns_signatures() -> None:
    with cluster(drop_fraction=1.0) as server:
        net = server.localnet
        async with AsyncClient(server.url) as client:
            payer = funded(net)
            to = Keypair().pubkey()
            blockhash = await latest(client)
            txs = [transfer_tx(payer, to, LAMPORTS + n, blockhash) for n in range(1, 5)]
            sigs = [await send(client, tx) for tx in txs]
            assert sigs == [tx.signatures[0] for tx in txs]
            for _ in range(3):
                net.tick()
            assert [await status(client, sig, history=True) for sig in sigs] == [None] * 4
            assert (await client.get_balance(to)).value == 0
            # A resend of the same bytes may land once the drop is over.
            net.behaviour = dataclasses.replace(STILL, drop_fraction=0.0)
            again = await send(client, txs[0])
            await send(client, txs[0])  # a second resend while queued lands it once
            net.tick()
            net.tick()
            assert again == sigs[0]
            assert (await status(client, again)).err is None
            assert (await client.get_balance(to)).value == LAMPORTS + 1


async def test_skip_preflight_failures_are_dropped_at_landing(
    server: LocalnetServer, client: AsyncClient
) -> None:
    broke = Keypair()  # never funded: the fee cannot be paid
    sig = await send(
        client,
        transfer_tx(broke, Keypair().pubkey(), LAMPORTS, await latest(client)),
        SKIP_PREFLIGHT,
    )
    server.localnet.tick()
    server.localnet.tick()
    assert await status(client, sig, history=True) is None


# --- rate limit and scans -------------------------------------------------------------


async def test_over_rate_requests_get_429_with_retry_after() -> None:
    with cluster(requests_per_second=5.0) as server:
        body = {"jsonrpc": "2.0", "id": 1, "method": "getSlot"}
        async with httpx.AsyncClient() as http:
            started = time.monotonic()
            replies = [await http.post(server.url, json=body) for _ in range(15)]
            elapsed = time.monotonic() - started
            limited = [r for r in replies if r.status_code == 429]
            # A burst of 5, then 5 a second: what the elapsed time refilled, and no more.
            passed = len(replies) - len(limited)
            assert 5 <= passed <= 5 + math.ceil(5 * elapsed) and limited, (passed, elapsed)
            for reply in limited:
                assert int(reply.headers["Retry-After"]) >= 1
                error = reply.json()["error"]
                assert error["code"] == 429 and "Too many requests" in error["message"]
            assert (await http.get(server.url + "/health")).status_code in (200, 429)
            await asyncio.sleep(int(limited[-1].headers["Retry-After"]))
            again = await http.post(server.url, json=body)
            assert again.status_code == 200 and "result" in again.json()


async def test_an_oversized_program_account_scan_is_refused_a_sliced_one_answered() -> None:
    with cluster(program_accounts_max_bytes=1_000) as server:
        owner = Pubkey.new_unique()
        keys = [Pubkey.new_unique() for _ in range(3)]
        for n, key in enumerate(keys):
            server.localnet.svm.set_account(key, Account(SOL, bytes([n]) * 500, owner, False, 0))
        async with AsyncClient(server.url) as client:
            with pytest.raises(RPCException) as refused:
                await client.get_program_accounts(owner, encoding="base64")
            message = str(refused.value)
            assert "1500 bytes" in message and "limit of 1000 bytes" in message
            assert "dataSlice" in message and "filters" in message
            sliced = await client.get_program_accounts(
                owner, encoding="base64", data_slice=DataSliceOpts(offset=0, length=0)
            )
            assert sorted(str(a.pubkey) for a in sliced.value) == sorted(map(str, keys))
            assert all(bytes(a.account.data) == b"" for a in sliced.value)


# --- the history methods --------------------------------------------------------------


async def rpc(url: str, method: str, params: list[Any]) -> str:
    async with httpx.AsyncClient() as http:
        reply = await http.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        )
    return reply.text


@pytest.mark.parametrize("cluster_like", [False, True])
async def test_history_methods_answer_as_a_validator(cluster_like: bool) -> None:
    behaviour = dataclasses.replace(STILL, landing_slots=(1, 1)) if cluster_like else None
    with LocalnetServer(behaviour=behaviour) as server:
        net = server.localnet
        async with AsyncClient(server.url) as client:
            payer, other = funded(net), funded(net)
            hot, cold = Keypair().pubkey(), Keypair().pubkey()
            blockhash = await latest(client)
            first = await send(client, transfer_tx(payer, hot, LAMPORTS, blockhash, price=100))
            second = await send(client, transfer_tx(other, cold, 2 * LAMPORTS, blockhash, price=7))
            third = await send(client, transfer_tx(payer, cold, 3 * LAMPORTS, blockhash))
            if cluster_like:
                for _ in range(STILL.finalization_lag_slots + 1):
                    net.tick()
            else:
                net.advance_slot()

            tx = (await client.get_transaction(first, max_supported_transaction_version=0)).value
            assert tx is not None and tx.block_time is not None
            meta = tx.transaction.meta
            assert (
                meta is not None and meta.err is None and meta.fee > 5_000
            )  # a signature plus its priority fee
            assert meta.compute_units_consumed and meta.log_messages
            keys = tx.transaction.transaction.message.account_keys
            i_hot = keys.index(hot)
            assert meta.post_balances[i_hot] - meta.pre_balances[i_hot] == LAMPORTS
            base64_tx = await client.get_transaction(second, encoding="base64")
            assert base64_tx.value is not None
            raw = await rpc(server.url, "getTransaction", [str(second), {"encoding": "base64"}])
            parsed = GetTransactionResp.from_json(raw)
            assert parsed.value is not None and parsed.value.slot == base64_tx.value.slot
            unknown = await client.get_transaction(Signature.new_unique())
            assert unknown.value is None

            listed = (await client.get_signatures_for_address(payer.pubkey())).value
            assert [s.signature for s in listed][:2] == [third, first]  # newest first
            assert all(
                s.confirmation_status == TransactionConfirmationStatus.Finalized for s in listed
            )
            until = (await client.get_signatures_for_address(payer.pubkey(), until=first)).value
            assert [s.signature for s in until] == [third]
            before = await client.get_signatures_for_address(payer.pubkey(), before=third, limit=1)
            assert [s.signature for s in before.value] == [first]
            raw = await rpc(server.url, "getSignaturesForAddress", [str(cold), {"limit": 1000}])
            assert [s.signature for s in GetSignaturesForAddressResp.from_json(raw).value] == [
                third,
                second,
            ]
            too_many = json.loads(
                await rpc(server.url, "getSignaturesForAddress", [str(cold), {"limit": 1001}])
            )
            assert "max 1000" in too_many["error"]["message"]

            landed_slot = tx.slot
            fees = dict(
                (f.slot, f.prioritization_fee)
                for f in (await client.get_recent_prioritization_fees()).value
            )
            if cluster_like:
                # One slot held all three: its minimum price, raised for a hot account.
                assert fees[landed_slot] == 0
                by_hot = await client.get_recent_prioritization_fees([hot])
                assert (
                    dict((f.slot, f.prioritization_fee) for f in by_hot.value)[landed_slot] == 100
                )
            else:
                assert fees[landed_slot] == 100  # a slot of its own
            raw = await rpc(server.url, "getRecentPrioritizationFees", [[str(hot)]])
            assert len(GetRecentPrioritizationFeesResp.from_json(raw).value) <= 150
            raw = await rpc(
                server.url,
                "getSignatureStatuses",
                [[str(first), str(Signature.new_unique())], {"searchTransactionHistory": True}],
            )
            statuses = GetSignatureStatusesResp.from_json(raw).value
            assert statuses[0] is not None and statuses[0].slot == landed_slot
            assert statuses[1] is None


async def test_history_methods_wait_for_the_asked_commitment(
    server: LocalnetServer, client: AsyncClient
) -> None:
    net = server.localnet
    payer = funded(net)
    sig = await send(client, transfer_tx(payer, Keypair().pubkey(), LAMPORTS, await latest(client)))
    while await status(client, sig) is None:
        net.tick()
    net.tick()  # confirmed, not finalized
    assert (await client.get_transaction(sig, commitment=Finalized)).value is None
    assert (await client.get_transaction(sig, commitment=Confirmed)).value is not None
    listed = (await client.get_signatures_for_address(payer.pubkey(), commitment=Confirmed)).value
    assert listed[0].confirmation_status == TransactionConfirmationStatus.Confirmed
    refused = json.loads(
        await rpc(server.url, "getTransaction", [str(sig), {"commitment": "processed"}])
    )
    assert "commitment below `confirmed`" in refused["error"]["message"]


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"slot_seconds": 0}, "slot_seconds"),
        ({"slot_seconds": float("nan")}, "slot_seconds"),
        ({"landing_slots": (2, 1)}, "landing_slots"),
        ({"landing_slots": (0, 1)}, "landing_slots"),
        ({"landing_slots": [1, 2]}, "landing_slots"),
        ({"confirmation_lag_slots": -1}, "confirmation_lag_slots"),
        ({"confirmation_lag_slots": 5, "finalization_lag_slots": 2}, "finalization_lag_slots"),
        ({"max_processing_age": 0}, "max_processing_age"),
        ({"drop_fraction": 1.5}, "drop_fraction"),
        ({"drop_fraction": "0.1"}, "drop_fraction"),
        ({"requests_per_second": 0}, "requests_per_second"),
        ({"program_accounts_max_bytes": True}, "program_accounts_max_bytes"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_behaviour_values_are_refused_by_name(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError, match=rf"ClusterBehaviour\.{field}"):
        ClusterBehaviour(**changes)


def test_a_behaviour_given_twice_is_refused() -> None:
    with pytest.raises(InputError, match="not both"):
        LocalnetServer(Localnet(), behaviour=STILL)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--cluster-like", "--slot-ms", "0"], "argument --slot-ms: 0 ms: use 1..60000"),
        (["--cluster-like", "--drop-rate", "nan"], "argument --drop-rate: nan is not a fraction"),
        (["--cluster-like", "--drop-rate", "x"], "argument --drop-rate: 'x' is not a number"),
        (["--cluster-like", "--rps", "-3"], "argument --rps: -3: use a number"),
        (["--cluster-like", "--seed", "1.5"], "argument --seed: '1.5' is not a whole number"),
        (["--rps", "10"], "--rps only applies with --cluster-like"),
    ],
)
def test_bad_cluster_options_are_refused_by_name(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        localnet_main(["--port", "0", *argv])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_runbooks_demo_and_up_refuse_bad_cluster_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from runbooks.cli import main as runbooks_cli

    for argv, says in (
        (["demo", "--slot-ms", "400"], "--slot-ms only applies with --cluster-like"),
        (["up", "--cluster-like", "--drop-rate", "2"], "argument --drop-rate: 2 is not a fraction"),
    ):
        with pytest.raises(SystemExit) as exited:
            runbooks_cli(argv)
        assert exited.value.code == 2
        assert says in capsys.readouterr().err


def test_the_cli_serves_a_cluster_like_localnet(tmp_path: Path) -> None:
    ready = tmp_path / "url"
    argv = ["--port", "0", "--cluster-like", "--slot-ms", "50", "--rps", "1000"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "localnet", *argv, "--ready-file", str(ready)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "localnet did not start"
            time.sleep(0.02)
        url = ready.read_text().strip()
        body = {"jsonrpc": "2.0", "id": 1, "method": "getSlot"}
        first = httpx.post(url, json=body).json()["result"]
        time.sleep(0.5)
        assert httpx.post(url, json=body).json()["result"] - first >= 3
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.mark.parametrize("command", ["demo", "up"])
def test_runbooks_demo_and_up_pass_the_behaviour_on(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runbooks import cli

    seen: list[ClusterBehaviour | None] = []

    def door(args: Any) -> int:
        seen.append(args.behaviour)
        return 0

    monkeypatch.setattr(cli, f"_{command}", door)
    argv = [command, "--cluster-like", "--slot-ms", "250", "--drop-rate", "0.2", "--seed", "7"]
    assert cli.main(argv) == 0
    assert cli.main([command]) == 0  # the default path: no behaviour
    assert seen == [
        ClusterBehaviour(slot_seconds=0.25, drop_fraction=0.2, seed=7),
        None,
    ]


async def test_the_demo_chain_is_set_up_at_once_on_a_cluster_like_localnet() -> None:
    from runbooks.demo import start_demo_chain

    behaviour = dataclasses.replace(STILL, slot_seconds=0.05)
    chain = start_demo_chain(members=1, behaviour=behaviour)
    try:
        assert chain.server.localnet.behaviour is behaviour
        async with AsyncClient(chain.url) as client:
            # Deployed by direct calls: there and final before any slot ticked by.
            program = (await client.get_account_info(chain.program_id)).value
            assert program is not None and program.executable
            slot = (await client.get_slot()).value
            await asyncio.sleep(0.5)
            assert (await client.get_slot()).value - slot >= 3
    finally:
        chain.server.stop()
    assert not [t for t in threading.enumerate() if t.name == "localnet-slot-clock"]
