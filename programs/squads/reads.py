"""Reads of Squads v4 accounts over JSON-RPC: the Multisig and its Proposals, decoded.

Each read checks the owner before decoding, so an account of another program (a mistyped
address) is named as such rather than decoded as garbage. No Prefect.
"""

from __future__ import annotations

from collections.abc import Sequence

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.account import Account
from solders.pubkey import Pubkey

from core.errors import AccountNotFound, ChainError
from programs.squads.client import (
    PROGRAM_ID,
    Multisig,
    Proposal,
    decode_multisig,
    decode_proposal,
    proposal_pda,
)

# getMultipleAccounts answers for at most 100 addresses per call.
_MULTIPLE_LIMIT = 100


def _owned(account: Account, address: Pubkey, what: str, program_id: Pubkey) -> bytes:
    if account.owner != program_id:
        raise ChainError(
            f"{address} is owned by {account.owner}, not the Squads program {program_id}: "
            f"it is not a Squads {what}; check the address"
        )
    return bytes(account.data)


async def read_multisig(
    client: AsyncClient, address: Pubkey, program_id: Pubkey = PROGRAM_ID
) -> Multisig:
    """The Multisig at ``address``; AccountNotFound or ChainError saying what is there."""
    account = (await client.get_account_info(address, Confirmed, encoding="base64")).value
    if account is None:
        raise AccountNotFound(
            f"no account at {address} on this cluster: not a Squads multisig here; check the "
            "address and the RPC URL's cluster"
        )
    try:
        return decode_multisig(_owned(account, address, "multisig", program_id))
    except ValueError as exc:
        raise ChainError(f"{address} is not a Squads multisig: {exc}") from None


async def read_proposals(
    client: AsyncClient,
    multisig: Pubkey,
    indexes: Sequence[int],
    program_id: Pubkey = PROGRAM_ID,
) -> dict[int, Proposal | None]:
    """The Proposal of each transaction index (None where none was created)."""
    out: dict[int, Proposal | None] = {}
    wanted = list(indexes)
    for start in range(0, len(wanted), _MULTIPLE_LIMIT):
        chunk = wanted[start : start + _MULTIPLE_LIMIT]
        addresses = [proposal_pda(multisig, i, program_id)[0] for i in chunk]
        resp = await client.get_multiple_accounts(addresses, Confirmed, encoding="base64")
        for index, address, account in zip(chunk, addresses, resp.value, strict=True):
            if account is None:
                out[index] = None
                continue
            try:
                out[index] = decode_proposal(_owned(account, address, "proposal", program_id))
            except ValueError as exc:
                raise ChainError(f"{address} is not a Squads proposal: {exc}") from None
    return out


async def read_proposal(
    client: AsyncClient, multisig: Pubkey, transaction_index: int, program_id: Pubkey = PROGRAM_ID
) -> Proposal | None:
    """The Proposal of ``transaction_index``, or None when none was created."""
    return (await read_proposals(client, multisig, [transaction_index], program_id))[
        transaction_index
    ]
