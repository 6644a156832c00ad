"""Counting what really lands on the localnet of this process: exactly-once checks."""

from __future__ import annotations

from collections import Counter
from typing import Any

from solders.pubkey import Pubkey

from localnet.chain import Localnet


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


def landed_signatures(
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
