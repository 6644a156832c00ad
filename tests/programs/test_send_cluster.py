"""programs.send against the cluster-like localnet over HTTP: a write dropped by the
cluster still lands once through resends, a write that never lands ends expired in the
journal, and the priority fee paid is the 75th percentile of recent fees, capped."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from solana.rpc.async_api import AsyncClient
from solders.compute_budget import ID as COMPUTE_BUDGET_ID
from solders.compute_budget import set_compute_unit_price
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction
from test_send import SOL, ListJournal, _pay

from core.errors import TransactionExpired
from localnet import Localnet, LocalnetServer
from localnet.cluster_mode import ClusterBehaviour
from programs import send
from programs.send import SendOptions

# SetComputeUnitPrice: tag 3, then the price as a little-endian u64.
_PRICE_TAG = 3


def _price_of(tx: Transaction) -> int | None:
    """The compute-unit price a signed transaction pays, None when it sets none."""
    keys = tx.message.account_keys
    for ix in tx.message.instructions:
        data = bytes(ix.data)
        if keys[ix.program_id_index] == COMPUTE_BUDGET_ID and data[0] == _PRICE_TAG:
            return int.from_bytes(data[1:9], "little")
    return None


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> Iterator[LocalnetServer]:
    """A cluster-like localnet of the behaviour the test names (``indirect``)."""
    with LocalnetServer(port=0, behaviour=request.param) as srv:
        yield srv


@pytest.fixture
async def client(cluster: LocalnetServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(cluster.url) as c:
        yield c


@pytest.fixture
def payer(cluster: LocalnetServer) -> Keypair:
    kp = Keypair()
    cluster.localnet.airdrop(kp.pubkey(), 10 * SOL)
    return kp


def _count_submits(net: Localnet) -> Counter[str]:
    """Every sendTransaction the localnet receives, per signature."""
    counts: Counter[str] = Counter()
    submit = net.submit_transaction

    def counting(tx: Any, **kwargs: Any) -> Signature:
        signature = submit(tx, **kwargs)
        counts[str(signature)] += 1
        return signature

    net.submit_transaction = counting  # type: ignore[method-assign]
    return counts


# Seed 1: the first send is dropped (the RNG's first draw is 0.13).
HALF_DROPPED = ClusterBehaviour(slot_seconds=0.1, drop_fraction=0.5, seed=1)


@pytest.mark.parametrize("cluster", [HALF_DROPPED], indirect=True, ids=["half-dropped"])
async def test_a_write_dropped_by_the_cluster_lands_once_through_resends(
    cluster: LocalnetServer, client: AsyncClient, payer: Keypair
) -> None:
    net = cluster.localnet
    submits = _count_submits(net)
    options = SendOptions(max_priority_fee=0, resend_seconds=0.3)
    recipients = [Pubkey.new_unique() for _ in range(4)]
    journals = [ListJournal(net) for _ in recipients]
    for to, journal in zip(recipients, journals, strict=True):
        signature = await send.send_and_confirm(
            client, [_pay(payer, to, 1_000_000)], payer, options=options, journal=journal
        )
        # One transaction per write, landed, and the journal names it.
        assert journal.statuses() == ["landed"]
        assert journal.landed() == [str(signature)]
        status = net.signature_status(signature)
        assert status is not None and status.err is None
    assert [net.get_balance(to) for to in recipients] == [1_000_000] * 4
    # Only the journalled signatures were ever sent, and some of them more than once.
    assert set(submits) == {j.landed()[0] for j in journals}
    assert max(submits.values()) > 1, submits


@pytest.mark.parametrize(
    "cluster",
    [ClusterBehaviour(slot_seconds=0.1, drop_fraction=1.0, max_processing_age=5)],
    indirect=True,
    ids=["all-dropped"],
)
async def test_a_write_that_never_lands_expires_and_the_journal_says_so(
    cluster: LocalnetServer, client: AsyncClient, payer: Keypair
) -> None:
    net = cluster.localnet
    journal = ListJournal(net)
    to = Pubkey.new_unique()
    options = SendOptions(max_priority_fee=0, resend_seconds=0.2, timeout_seconds=30)
    with pytest.raises(TransactionExpired, match="read the chain, then sign again"):
        await send.send_and_confirm(
            client, [_pay(payer, to)], payer, options=options, journal=journal
        )
    assert journal.statuses() == ["expired"]
    [(signature, row)] = journal.rows.items()
    assert "expired" in str(row["error"])
    assert net.signature_status(Signature.from_string(signature)) is None
    assert net.get_balance(to) == 0


# The clock held still (ticked by hand once the write is signed), so the recent slots
# are known: the payer's airdrop (no fee) and one slot per priced transaction.
HELD = ClusterBehaviour(slot_seconds=3600, drop_fraction=0.0)
PRICES = [1_000 * n for n in range(1, 11)]


@pytest.mark.parametrize("cluster", [HELD], indirect=True, ids=["held-clock"])
@pytest.mark.parametrize(("cap", "paid"), [(100_000, 8_000), (5_000, 5_000), (0, None)])
async def test_the_priority_fee_is_the_75th_percentile_of_recent_fees_capped(
    cluster: LocalnetServer, client: AsyncClient, payer: Keypair, cap: int, paid: int | None
) -> None:
    net = cluster.localnet
    hot = Pubkey.new_unique()
    funder = Keypair()
    net.airdrop(funder.pubkey(), SOL)
    for price in PRICES:  # each lands at once, in a slot of its own, write-locking ``hot``
        blockhash, _ = net.latest_blockhash()
        tx = Transaction.new_signed_with_payer(
            [set_compute_unit_price(price), _pay(funder, hot, SOL // 100 + price)],
            funder.pubkey(),
            [funder],
            blockhash,
        )
        assert net.send_transaction(tx).ok
    # The recent fees as the RPC reports them: 0 for the setup slots, then PRICES; with
    # one or two zero slots in front, the 75th percentile is the 8th price.
    recent = sorted(
        f.prioritization_fee for f in (await client.get_recent_prioritization_fees([hot])).value
    )
    assert recent[-len(PRICES) :] == PRICES and set(recent[: -len(PRICES)]) == {0}
    assert recent[(len(recent) * 3) // 4] == 8_000

    journal = ListJournal(net)

    async def tick_once_signed() -> None:
        while not journal.rows:  # the fee is chosen before the write-ahead
            await asyncio.sleep(0.01)
        while True:
            net.tick()
            await asyncio.sleep(0.05)

    ticker = asyncio.create_task(tick_once_signed())
    try:
        signature = await send.send_and_confirm(
            client,
            [_pay(payer, hot)],
            payer,
            options=SendOptions(max_priority_fee=cap, resend_seconds=0.3),
            journal=journal,
        )
    finally:
        ticker.cancel()
    [(journalled, row)] = journal.rows.items()
    assert journalled == str(signature) and row["status"] == "landed"
    assert _price_of(row["signed"].transaction()) == paid  # type: ignore[attr-defined]
    landed = net.landed_transaction(signature)
    assert landed is not None and landed.compute_unit_price == (paid or 0)
