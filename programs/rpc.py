"""Reading programs and buffers from a cluster over JSON-RPC, and reading a refused send
(``programs.send`` sends).

Plain async functions over solana-py's ``AsyncClient``: the same code talks to the
embedded localnet, devnet or mainnet. Prefect tasks wrap them with retries.
"""

from __future__ import annotations

from dataclasses import dataclass

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.core import RPCException
from solana.rpc.models import TxOpts
from solders.account import Account
from solders.pubkey import Pubkey
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
