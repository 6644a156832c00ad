"""Reading programs and buffers from a cluster over JSON-RPC, and reading a refused send
(``programs.send`` sends).

Plain async functions over solana-py's ``AsyncClient``: the same code talks to the
embedded localnet, devnet or mainnet. Prefect tasks wrap them with retries.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass

import httpx2
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.core import RPCException
from solana.rpc.models import TxOpts
from solders.account import Account
from solders.account_decoder import UiAccountEncoding
from solders.commitment_config import CommitmentLevel
from solders.pubkey import Pubkey
from solders.rpc.config import RpcAccountInfoConfig
from solders.rpc.requests import GetMultipleAccounts, batch_to_json
from solders.rpc.responses import GetMultipleAccountsResp, batch_from_json
from solders.transaction_status import TransactionErrorFieldless

from core.errors import (
    AccountNotFound,
    AuthorityMismatch,
    ChainError,
    HashMismatch,
    NotABuffer,
    ProgramDataTooSmall,
    ProgramImmutable,
    TransactionFailed,
)
from programs import loader

SEND_OPTS = TxOpts(preflight_commitment=Confirmed)
# getMultipleAccounts answers at most 100 addresses per call.
ACCOUNTS_PER_CALL = 100


@dataclass(frozen=True)
class BufferInfo:
    address: str
    authority: str | None
    sha256: str
    data_len: int  # bytes after the 37-byte header: what an upgrade copies


@dataclass(frozen=True)
class ProgramInfo:
    program_id: str
    programdata: str
    authority: str | None  # None: immutable
    slot: int  # slot of the last deploy/upgrade
    sha256: str
    capacity: int  # bytes after the 45-byte header


async def genesis_hash(client: AsyncClient) -> str:
    """The cluster's genesis hash (base58): what approval lines name as ``cluster``."""
    return str((await client.get_genesis_hash()).value)


async def fetch_account(client: AsyncClient, address: Pubkey) -> Account | None:
    resp = await client.get_account_info(address, commitment=Confirmed, encoding="base64")
    return resp.value


async def fetch_accounts_data(
    client: AsyncClient, addresses: Sequence[Pubkey]
) -> list[bytes | None]:
    """The data of ``addresses`` (None for a missing account), in order, read at
    ``confirmed``: 100 per getMultipleAccounts, every page in one JSON-RPC batch request
    (one HTTP round trip); an endpoint that refuses batches gets the pages one request
    each, concurrently."""
    pages = [
        list(addresses[i : i + ACCOUNTS_PER_CALL])
        for i in range(0, len(addresses), ACCOUNTS_PER_CALL)
    ]
    if not pages:
        return []
    answers = await _multiple_accounts_batch(client, pages) if len(pages) > 1 else None
    if answers is None:
        answers = list(
            await asyncio.gather(
                *(
                    client.get_multiple_accounts(page, commitment=Confirmed, encoding="base64")
                    for page in pages
                )
            )
        )
    return [None if acc is None else bytes(acc.data) for answer in answers for acc in answer.value]


_BASE64_CONFIRMED = RpcAccountInfoConfig(
    encoding=UiAccountEncoding.Base64, commitment=CommitmentLevel.Confirmed
)


async def _multiple_accounts_batch(
    client: AsyncClient, pages: Sequence[Sequence[Pubkey]]
) -> list[GetMultipleAccountsResp] | None:
    """Every page's getMultipleAccounts in one batch request; None when the endpoint
    does not answer a batch with a list of results (the caller sends them one by one)."""
    provider = client._provider  # solana-py has no batch call
    body = batch_to_json(
        [GetMultipleAccounts(list(page), _BASE64_CONFIRMED, id=i) for i, page in enumerate(pages)]
    )
    try:
        response = await provider.session.post(
            provider.endpoint_uri, content=body, headers={"Content-Type": "application/json"}
        )
        reply = response.json() if response.status_code == 200 else None
    except (httpx2.HTTPError, ValueError):
        return None
    if not isinstance(reply, list) or len(reply) != len(pages):
        return None
    if any(not isinstance(item, dict) or "result" not in item for item in reply):
        # An error in one page (a rate limit, a busy node): every page alone, where the
        # client's own error handling and the transport's retries apply.
        return None
    # JSON-RPC lets a batch's answers come in any order: put them back in the pages'.
    ordered = sorted(reply, key=lambda item: item.get("id", 0))
    parsed = batch_from_json(json.dumps(ordered), [GetMultipleAccountsResp] * len(pages))
    if not all(isinstance(item, GetMultipleAccountsResp) for item in parsed):
        return None
    return parsed  # type: ignore[return-value]


async def read_buffer(client: AsyncClient, buffer: Pubkey) -> BufferInfo:
    """The buffer's authority and verifiable hash; errors say what the account is instead."""
    account = await fetch_account(client, buffer)
    if account is None:
        raise AccountNotFound(
            f"buffer {buffer} does not exist on this cluster; write it with "
            "`solana program write-buffer` and pass its address"
        )
    return buffer_info(buffer, account)


def buffer_info(buffer: Pubkey, account: Account) -> BufferInfo:
    """``read_buffer`` of an account already read: a caller that needs its bytes too reads
    a 512 KiB buffer once."""
    if account.owner != loader.LOADER_ID:
        raise NotABuffer(
            f"{buffer} is owned by {account.owner}, not the BPF Upgradeable Loader: "
            "it is not a program buffer"
        )
    state = loader.decode_state(bytes(account.data))
    if not isinstance(state, loader.Buffer):
        raise NotABuffer(
            f"{buffer} is a loader {type(state).__name__} account, not a Buffer; "
            "pass the buffer address `solana program write-buffer` printed"
        )
    data = bytes(account.data)
    return BufferInfo(
        address=str(buffer),
        authority=str(state.authority) if state.authority else None,
        sha256=loader.buffer_hash(data),
        data_len=len(data) - loader.BUFFER_METADATA_SIZE,
    )


async def read_program(client: AsyncClient, program_id: Pubkey) -> ProgramInfo:
    """The program's ProgramData: authority, last deploy slot, verifiable hash, capacity."""
    account = await fetch_account(client, program_id)
    if account is None:
        raise AccountNotFound(f"program {program_id} does not exist on this cluster")
    if account.owner != loader.LOADER_ID:
        raise ChainError(
            f"{program_id} is owned by {account.owner}: not an upgradeable program, "
            "so no runbook can upgrade it"
        )
    state = loader.decode_state(bytes(account.data))
    if not isinstance(state, loader.Program):
        raise ChainError(f"{program_id} is a loader {type(state).__name__}, not a Program")
    pd_account = await fetch_account(client, state.programdata)
    if pd_account is None:
        raise AccountNotFound(f"ProgramData {state.programdata} of {program_id} is missing")
    pd_state = loader.decode_state(bytes(pd_account.data))
    if not isinstance(pd_state, loader.ProgramData):
        raise ChainError(f"{state.programdata} is not the ProgramData of {program_id}")
    data = bytes(pd_account.data)
    return ProgramInfo(
        program_id=str(program_id),
        programdata=str(state.programdata),
        authority=str(pd_state.authority) if pd_state.authority else None,
        slot=pd_state.slot,
        sha256=loader.programdata_hash(data),
        capacity=len(data) - loader.PROGRAMDATA_METADATA_SIZE,
    )


def check_upgrade_ready(
    program: ProgramInfo,
    buffer: BufferInfo,
    authority: Pubkey,
    expected_hash: str | None,
    *,
    extendable: bool = False,
) -> None:
    """Every precondition of an Upgrade, checked before anything is recorded or sent.

    ``extendable``: a ProgramData too small is no refusal (the runbook extends it before
    the execution)."""
    if program.authority is None:
        raise ProgramImmutable(
            f"program {program.program_id} is immutable (no upgrade authority): "
            "it can never be upgraded"
        )
    if program.authority != str(authority):
        raise AuthorityMismatch(
            f"program {program.program_id}'s upgrade authority is {program.authority}, "
            f"not this runbook's {authority}; transfer it first (key rotation runbook) "
            "or use the multisig block that holds it"
        )
    if buffer.authority != program.authority:
        raise AuthorityMismatch(
            f"buffer {buffer.address}'s authority is {buffer.authority}, but the loader "
            f"requires the program's upgrade authority {program.authority}; run "
            f"`solana program set-buffer-authority {buffer.address} "
            f"--new-buffer-authority {program.authority}`"
        )
    if expected_hash is not None and buffer.sha256 != expected_hash.strip().lower():
        raise HashMismatch(f"buffer {buffer.address}", expected_hash, buffer.sha256)
    if buffer.data_len > program.capacity and not extendable:
        missing = buffer.data_len - program.capacity
        raise ProgramDataTooSmall(
            f"ProgramData of {program.program_id} holds {program.capacity} bytes but the "
            f"buffer has {buffer.data_len}: an ExtendProgram of {missing} bytes is needed "
            f"first (`solana program extend {program.program_id} {missing}`)",
            additional_bytes=missing,
        )


def already_processed(exc: RPCException) -> bool:
    detail = exc.args[0] if exc.args else None
    err = getattr(getattr(detail, "data", None), "err", None)
    return err == TransactionErrorFieldless.AlreadyProcessed


def transaction_failed(exc: RPCException) -> TransactionFailed:
    """The chain's refusal as a TransactionFailed holding the program logs."""
    detail = exc.args[0] if exc.args else exc
    message = getattr(detail, "message", str(detail))
    data = getattr(detail, "data", None)
    logs = list(getattr(data, "logs", None) or [])
    err = getattr(data, "err", None)
    text = f"transaction refused: {message}" + (f" ({err})" if err is not None else "")
    return TransactionFailed(text, logs)
