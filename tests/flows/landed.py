"""Counting what really lands on the localnet of this process: exactly-once checks."""

from __future__ import annotations

from collections import Counter
from typing import Any

from solders.pubkey import Pubkey
from sqlalchemy import Engine

from localnet.chain import LandedTransaction, Localnet
from programs import loader
from store.records.transactions import transactions_like

# The loader's Upgrade instruction data (its tag alone); the buffer is its 3rd account.
LOADER_UPGRADE = bytes(loader.upgrade(*[Pubkey.default()] * 4).data)


def count_landed(net: Localnet, program_id: Pubkey, data: bytes, account: int) -> Counter[str]:
    """Every successful instruction of ``program_id`` with exactly ``data`` sent to ``net``
    from now on, counted per the address of its ``account``-th account."""
    counts: Counter[str] = Counter()
    send = net.send_transaction

    def counting(tx: Any, **kwargs: Any) -> Any:
        outcome = send(tx, **kwargs)
        if outcome.landed and outcome.ok:
            keys = tx.message.account_keys
            for ix in tx.message.instructions:
                if keys[ix.program_id_index] == program_id and bytes(ix.data) == data:
                    counts[str(keys[ix.accounts[account]])] += 1
        return outcome

    net.send_transaction = counting  # type: ignore[method-assign]
    return counts


def signatures_by_account(
    net: Localnet, program_id: Pubkey, data: bytes, account: int
) -> dict[str, list[str]]:
    """From the localnet's history (either mode): the signatures of every successful
    transaction with an instruction of ``program_id`` with exactly ``data``, per the
    address of its ``account``-th account, oldest first."""
    found: dict[str, list[str]] = {}
    for landed in reversed(net.history()):
        tx = landed.transaction
        if landed.err is not None or tx is None:
            continue
        keys = tx.message.account_keys
        for ix in tx.message.instructions:
            if keys[ix.program_id_index] == program_id and bytes(ix.data) == data:
                found.setdefault(str(keys[ix.accounts[account]]), []).append(str(tx.signatures[0]))
    return found


def landed_signatures(net: Localnet) -> set[str]:
    """Every signature the localnet landed so far (a mark to compare against later)."""
    return {str(landed.signature) for landed in net.history()}


def landed_since(net: Localnet, mark: set[str]) -> list[LandedTransaction]:
    """The transactions sent to ``net`` that landed after ``mark`` was taken, oldest first
    (airdrops, which carry no transaction of ours, left out). Unlike ``count_landed`` this
    reads the localnet's history, so it sees what the cluster-like slot clock lands."""
    return [
        landed
        for landed in reversed(net.history())
        if str(landed.signature) not in mark and landed.transaction is not None
    ]


def instructions_in(
    landed: list[LandedTransaction], program_id: Pubkey, data: bytes, account: int
) -> Counter[str]:
    """Successful instructions of ``program_id`` with exactly ``data`` among ``landed``,
    counted per the address of their ``account``-th account."""
    counts: Counter[str] = Counter()
    for item in landed:
        if item.err is not None or item.transaction is None:
            continue
        keys = item.transaction.message.account_keys
        for ix in item.transaction.message.instructions:
            if keys[ix.program_id_index] == program_id and bytes(ix.data) == data:
                counts[str(keys[ix.accounts[account]])] += 1
    return counts


def assert_journal_holds(engine: Engine, landed: list[LandedTransaction]) -> None:
    """Every transaction in ``landed`` is in the records' write-ahead journal as landed,
    and every signature the journal calls landed really landed."""
    rows = {row.signature: row.status for row in transactions_like(engine, "")}
    missing = [str(t.signature) for t in landed if rows.get(str(t.signature)) != "landed"]
    assert not missing, f"landed but not journalled as landed: {missing} (journal: {rows})"
    on_chain = {str(t.signature) for t in landed}
    claimed = {sig for sig, status in rows.items() if status == "landed"}
    assert claimed <= on_chain, f"journalled as landed but not on chain: {claimed - on_chain}"


def assert_landed_as_the_mode_lands(net: Localnet, landed: list[LandedTransaction]) -> None:
    """The run's transactions landed as ``net``'s mode lands them: on the cluster-like
    slot clock (never at once) or, on the instant localnet, each at once."""
    assert landed, "the run landed nothing"
    instant = net.behaviour is None
    assert all(t.immediate == instant for t in landed), [str(t.signature) for t in landed]
