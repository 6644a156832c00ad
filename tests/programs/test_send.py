"""The one send-and-confirm path (programs.send) against the localnet over HTTP: compute
budget from a simulation, write-ahead before the first send, settling what a killed
attempt left, expiry, and refusals that leave nothing behind."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence

import pytest
from solana.rpc.async_api import AsyncClient
from solders.compute_budget import ID as COMPUTE_BUDGET_ID
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction

from core.errors import InputError, TransactionFailed
from localnet import Localnet, LocalnetServer
from programs import loader, send
from programs.send import SendOptions, Settlement, Signed

SOL = 1_000_000_000
NO_FEE = SendOptions(max_priority_fee=0)


class ListJournal:
    """A journal in memory that also checks the write-ahead order: when a signature is
    written ahead, the chain must not know it yet."""

    def __init__(self, net: Localnet) -> None:
        self.net = net
        self.rows: dict[str, dict[str, object]] = {}

    def unsettled(self) -> list[Signed]:
        return [row["signed"] for row in self.rows.values() if row["status"] == "sent"]  # type: ignore[misc]

    def landed(self) -> list[str]:
        return [sig for sig, row in self.rows.items() if row["status"] == "landed"]

    def write_ahead(self, signed: Sequence[Signed]) -> None:
        for item in signed:
            assert self.net.signature_status(Signature.from_string(item.signature)) is None
            self.rows[item.signature] = {"signed": item, "status": "sent", "error": None}

    def settle(self, signature: str, status: Settlement, error: str | None = None) -> None:
        if self.rows[signature]["status"] == "sent":
            self.rows[signature].update(status=status, error=error)

    def statuses(self) -> list[str]:
        return [str(row["status"]) for row in self.rows.values()]


@pytest.fixture(scope="module")
def server() -> Iterator[LocalnetServer]:
    with LocalnetServer(port=0) as srv:
        yield srv


@pytest.fixture
async def client(server: LocalnetServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.url) as c:
        yield c


@pytest.fixture
def net(server: LocalnetServer) -> Localnet:
    return server.localnet


@pytest.fixture
def payer(net: Localnet) -> Keypair:
    kp = Keypair()
    net.airdrop(kp.pubkey(), 10 * SOL)
    return kp


def _pay(payer: Keypair, to: Pubkey, lamports: int = 1_000_000) -> Instruction:
    return transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to, lamports=lamports))


def _budget(wire: Signed) -> list[Instruction]:
    tx = wire.transaction()
    keys = tx.message.account_keys
    return [
        Instruction(keys[ix.program_id_index], bytes(ix.data), [])
        for ix in tx.message.instructions
        if keys[ix.program_id_index] == COMPUTE_BUDGET_ID
    ]


async def test_a_write_is_journalled_before_it_is_sent_and_settled_landed(
    client: AsyncClient, net: Localnet, payer: Keypair
) -> None:
    journal = ListJournal(net)
    to = Pubkey.new_unique()
    signature = await send.send_and_confirm(
        client, [_pay(payer, to)], payer, options=NO_FEE, journal=journal
    )
    assert net.get_balance(to) == 1_000_000
    assert journal.statuses() == ["landed"]
    (row,) = journal.rows.values()
    signed = row["signed"]
    assert isinstance(signed, Signed) and signed.signature == str(signature)
    # The compute-unit limit comes from the simulation: a transfer and the budget
    # instruction cost a few hundred units, far below the default 200,000 a transaction.
    (limit,) = _budget(signed)  # no price instruction: the cap is 0
    units = int.from_bytes(bytes(limit.data)[1:5], "little")
    assert bytes(limit.data)[0] == 2 and 150 <= units <= 2_000


async def test_an_earlier_landed_write_is_not_sent_again(
    client: AsyncClient, net: Localnet, payer: Keypair
) -> None:
    journal = ListJournal(net)
    to = Pubkey.new_unique()
    first = await send.send_and_confirm(
        client, [_pay(payer, to)], payer, options=NO_FEE, journal=journal
    )
    again = await send.send_and_confirm(
        client, [_pay(payer, to)], payer, options=NO_FEE, journal=journal
    )
    assert again == first
    assert net.get_balance(to) == 1_000_000  # paid once


async def test_a_write_ahead_never_sent_is_sent_by_the_next_attempt(
    client: AsyncClient, net: Localnet, payer: Keypair
) -> None:
    """Killed between the write-ahead and the send: the rerun sends those very bytes."""
    journal = ListJournal(net)
    to = Pubkey.new_unique()
    blockhash, last_valid = net.latest_blockhash()
    tx = Transaction.new_signed_with_payer([_pay(payer, to)], payer.pubkey(), [payer], blockhash)
    journal.write_ahead([Signed.of(tx, last_valid)])
    signature = await send.send_and_confirm(
        client, [_pay(payer, to)], payer, options=NO_FEE, journal=journal
    )
    assert signature == tx.signatures[0]
    assert net.get_balance(to) == 1_000_000
    assert journal.statuses() == ["landed"]


async def test_an_expired_write_ahead_is_settled_expired_and_a_new_one_signed(
    client: AsyncClient, net: Localnet, payer: Keypair
) -> None:
    journal = ListJournal(net)
    to = Pubkey.new_unique()
    blockhash, last_valid = net.latest_blockhash()
    stale = Transaction.new_signed_with_payer([_pay(payer, to)], payer.pubkey(), [payer], blockhash)
    journal.write_ahead([Signed.of(stale, last_valid)])
    net.advance_slot(last_valid - net.block_height + 1)
    outcomes = await send.settle_unsettled(client, journal, NO_FEE)
    assert [o.expired for o in outcomes] == [True]
    assert journal.statuses() == ["expired"]
    assert net.get_balance(to) == 0
    fresh = await send.send_and_confirm(
        client, [_pay(payer, to)], payer, options=NO_FEE, journal=journal
    )
    assert fresh != stale.signatures[0]
    assert journal.statuses() == ["expired", "landed"]
    assert net.get_balance(to) == 1_000_000


async def test_a_failing_simulation_sends_and_journals_nothing(
    client: AsyncClient, net: Localnet, payer: Keypair
) -> None:
    journal = ListJournal(net)
    before = net.transaction_count
    too_much = _pay(payer, Pubkey.new_unique(), 1_000 * SOL)
    with pytest.raises(TransactionFailed, match="simulation failed") as failure:
        await send.send_and_confirm(client, [too_much], payer, options=NO_FEE, journal=journal)
    assert any("insufficient lamports" in line for line in failure.value.logs)
    assert journal.rows == {}
    assert net.transaction_count == before


async def test_a_batch_gives_an_outcome_per_transaction(
    client: AsyncClient, net: Localnet, payer: Keypair
) -> None:
    journal = ListJournal(net)
    targets = [Pubkey.new_unique() for _ in range(5)]
    outcomes = await send.send_batch(
        client, [[_pay(payer, t)] for t in targets], payer, options=NO_FEE, journal=journal
    )
    assert [o.landed for o in outcomes] == [True] * 5
    assert len({o.signature for o in outcomes}) == 5
    assert [net.get_balance(t) for t in targets] == [1_000_000] * 5
    assert journal.statuses() == ["landed"] * 5


async def test_a_transaction_past_its_last_valid_block_height_is_expired(
    client: AsyncClient, net: Localnet, payer: Keypair
) -> None:
    """Sent once and never seen (dropped): once the block height passes its last valid
    one it can never land, and it is settled expired without waiting longer."""
    journal = ListJournal(net)
    to = Pubkey.new_unique()
    blockhash, last_valid = net.latest_blockhash()
    lost = Transaction.new_signed_with_payer([_pay(payer, to)], payer.pubkey(), [payer], blockhash)
    journal.write_ahead([Signed.of(lost, last_valid)])
    net.advance_slot(last_valid - net.block_height + 1)
    outcomes = await send.confirm(client, journal.unsettled(), NO_FEE, journal=journal)
    (outcome,) = outcomes.values()
    assert outcome.expired and not outcome.landed
    assert journal.statuses() == ["expired"]
    assert net.get_balance(to) == 0


def test_send_options_refuse_bad_values() -> None:
    with pytest.raises(InputError, match="commitment 'final'"):
        SendOptions(commitment="final")
    with pytest.raises(InputError, match="max_priority_fee"):
        SendOptions(max_priority_fee=-1)
    with pytest.raises(InputError, match="compute_unit_margin"):
        SendOptions(compute_unit_margin=0.5)


def test_sign_transaction_signs_as_solders_does_with_only_the_keys_needed() -> None:
    payer, authority, unused = Keypair(), Keypair(), Keypair()
    buffer = Pubkey.new_unique()
    ixs = [loader.write(buffer, authority.pubkey(), 0, b"\x01" * 32)]
    blockhash = Hash.new_unique()
    keys = {k.pubkey(): k for k in (payer, authority, unused)}
    signed = send.sign_transaction(ixs, payer.pubkey(), keys, blockhash)
    expected = Transaction.new_signed_with_payer(ixs, payer.pubkey(), [payer, authority], blockhash)
    assert bytes(signed) == bytes(expected)
    assert signed.verify_with_results() == [True, True]


def test_sign_transaction_refuses_a_missing_signer_by_its_key() -> None:
    payer, authority = Keypair(), Keypair()
    ixs = [loader.write(Pubkey.new_unique(), authority.pubkey(), 0, b"\x01")]
    with pytest.raises(InputError, match=f"no keypair to sign for {authority.pubkey()}"):
        send.sign_transaction(ixs, payer.pubkey(), {payer.pubkey(): payer}, Hash.default())
