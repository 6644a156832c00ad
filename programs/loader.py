"""Client for the BPF Upgradeable Loader: instructions, account states, build hashes.

Plain Python over solders: no Prefect, no RPC. Instructions use the loader's
bincode wire format (u32 LE tag, then the fields); the optional trailing flags newer
loaders accept are left out, so every cluster decodes them with the classic defaults.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.system_program import CreateAccountParams, create_account
from solders.sysvar import CLOCK, RENT

from core.errors import InputError, NotABuffer
from core.hashes import verifiable_hash

LOADER_ID: Pubkey = Pubkey.from_string("BPFLoaderUpgradeab1e11111111111111111111111")

# Account layouts: u32 tag, then the fields; Option<Pubkey> always reserves 1 + 32 bytes.
BUFFER_METADATA_SIZE = 37  # tag 4 + Option<authority> 33
PROGRAMDATA_METADATA_SIZE = 45  # tag 4 + slot 8 + Option<authority> 33
PROGRAM_ACCOUNT_SIZE = 36  # tag 4 + programdata 32

_TAG_UNINITIALIZED = 0
_TAG_BUFFER = 1
_TAG_PROGRAM = 2
_TAG_PROGRAMDATA = 3

_IX_INITIALIZE_BUFFER = 0
_IX_WRITE = 1
_IX_DEPLOY_WITH_MAX_DATA_LEN = 2
_IX_UPGRADE = 3
_IX_SET_AUTHORITY = 4
_IX_CLOSE = 5
_IX_EXTEND_PROGRAM = 6
_IX_SET_AUTHORITY_CHECKED = 7

# The runtime's ceiling for an account's data (MAX_PERMITTED_DATA_LENGTH, 10 MiB), so for
# a buffer's and a ProgramData's; and the least ExtendProgram grows a ProgramData by.
MAX_ACCOUNT_DATA_LEN = 10 * 1024 * 1024
MAX_PROGRAM_LEN = MAX_ACCOUNT_DATA_LEN - PROGRAMDATA_METADATA_SIZE
MIN_EXTEND_BYTES = 10_240
# sBPF ELF: ELF64, little endian, a shared object, e_machine EM_BPF or EM_SBPF.
_ET_DYN = 3
_SBPF_MACHINES = (247, 263)

_U32_MAX = 2**32 - 1
_U64_MAX = 2**64 - 1

# Largest Write payload in a legacy transaction of at most PACKET_DATA_SIZE bytes, with
# a fee payer and a buffer authority that both sign, so the worst case any caller meets.
PACKET_DATA_SIZE = 1232
_SIGNATURES = 1 + 2 * 64  # compact-u16 count + fee payer and authority signatures
_HEADER = 3  # num_required_signatures, num_readonly_signed, num_readonly_unsigned
_ACCOUNT_KEYS = 1 + 4 * 32  # payer, authority, buffer, loader
_BLOCKHASH = 32
_IX_COUNT = 1  # compact-u16 instruction count
_IX_PROGRAM_INDEX = 1
_IX_ACCOUNTS = 1 + 2  # compact-u16 count + buffer and authority indices
_IX_DATA_LEN = 2  # compact-u16: any full chunk is 128..16383 bytes long
_WRITE_FIELDS = 4 + 4 + 8  # tag u32, offset u32, bytes length u64
_INSTRUCTION = _IX_COUNT + _IX_PROGRAM_INDEX + _IX_ACCOUNTS + _IX_DATA_LEN + _WRITE_FIELDS
# Every write carries the compute-budget program's key and its SetComputeUnitLimit (u32)
# and SetComputeUnitPrice (u64) instructions (programs.send): index, no accounts, data.
_COMPUTE_BUDGET = 32 + (1 + 1 + 1 + 5) + (1 + 1 + 1 + 9)
WRITE_CHUNK_SIZE = (
    PACKET_DATA_SIZE
    - _SIGNATURES
    - _HEADER
    - _ACCOUNT_KEYS
    - _BLOCKHASH
    - _INSTRUCTION
    - _COMPUTE_BUDGET
)


def programdata_address(program_id: Pubkey) -> Pubkey:
    """The ProgramData account of ``program_id``: PDA([program_id]) under the loader."""
    return Pubkey.find_program_address([bytes(program_id)], LOADER_ID)[0]


def _u32(name: str, value: int) -> bytes:
    if not 0 <= value <= _U32_MAX:
        raise InputError(f"{name} must be between 0 and {_U32_MAX}, got {value}")
    return struct.pack("<I", value)


def _u64(name: str, value: int) -> bytes:
    if not 0 <= value <= _U64_MAX:
        raise InputError(f"{name} must be between 0 and {_U64_MAX}, got {value}")
    return struct.pack("<Q", value)


def _ix(tag: int, accounts: list[AccountMeta], fields: bytes = b"") -> Instruction:
    return Instruction(LOADER_ID, struct.pack("<I", tag) + fields, accounts)


def _w(pubkey: Pubkey, signer: bool = False) -> AccountMeta:
    return AccountMeta(pubkey, is_signer=signer, is_writable=True)


def _r(pubkey: Pubkey, signer: bool = False) -> AccountMeta:
    return AccountMeta(pubkey, is_signer=signer, is_writable=False)


# --- instructions ---------------------------------------------------------------------


def initialize_buffer(buffer: Pubkey, authority: Pubkey) -> Instruction:
    """InitializeBuffer; must share a transaction with the buffer's create_account."""
    return _ix(_IX_INITIALIZE_BUFFER, [_w(buffer), _r(authority)])


def write(buffer: Pubkey, authority: Pubkey, offset: int, data: bytes) -> Instruction:
    """Write ``data`` into the buffer at ``offset`` (relative to the program bytes)."""
    fields = _u32("offset", offset) + _u64("data length", len(data)) + bytes(data)
    return _ix(_IX_WRITE, [_w(buffer), _r(authority, signer=True)], fields)


def deploy_with_max_data_len(
    payer: Pubkey, program: Pubkey, buffer: Pubkey, authority: Pubkey, max_data_len: int
) -> Instruction:
    """DeployWithMaxDataLen; the buffer's authority must be ``authority``."""
    return _ix(
        _IX_DEPLOY_WITH_MAX_DATA_LEN,
        [
            _w(payer, signer=True),
            _w(programdata_address(program)),
            _w(program),
            _w(buffer),
            _r(RENT),
            _r(CLOCK),
            _r(SYSTEM_PROGRAM_ID),
            _r(authority, signer=True),
        ],
        _u64("max_data_len", max_data_len),
    )


def upgrade(program: Pubkey, buffer: Pubkey, authority: Pubkey, spill: Pubkey) -> Instruction:
    """Upgrade ``program`` from ``buffer``; the buffer's excess lamports go to ``spill``."""
    return _ix(
        _IX_UPGRADE,
        [
            _w(programdata_address(program)),
            _w(program),
            _w(buffer),
            _w(spill),
            _r(RENT),
            _r(CLOCK),
            _r(authority, signer=True),
        ],
    )


def set_authority(
    account: Pubkey, current_authority: Pubkey, new_authority: Pubkey | None
) -> Instruction:
    """SetAuthority on a buffer or ProgramData account; None makes a program immutable."""
    accounts = [_w(account), _r(current_authority, signer=True)]
    if new_authority is not None:
        accounts.append(_r(new_authority))
    return _ix(_IX_SET_AUTHORITY, accounts)


def set_authority_checked(
    account: Pubkey, current_authority: Pubkey, new_authority: Pubkey
) -> Instruction:
    """SetAuthorityChecked: like set_authority, but the new authority must sign too."""
    return _ix(
        _IX_SET_AUTHORITY_CHECKED,
        [_w(account), _r(current_authority, signer=True), _r(new_authority, signer=True)],
    )


def close(
    account: Pubkey, recipient: Pubkey, authority: Pubkey, program: Pubkey | None = None
) -> Instruction:
    """Close a buffer, or a program (``account`` = its ProgramData, ``program`` given)."""
    accounts = [_w(account), _w(recipient), _r(authority, signer=True)]
    if program is not None:
        accounts.append(_w(program))
    return _ix(_IX_CLOSE, accounts)


def extend_program(program: Pubkey, payer: Pubkey | None, additional_bytes: int) -> Instruction:
    """ExtendProgram: grow ProgramData; ``payer`` funds the rent unless it is funded already."""
    accounts = [_w(programdata_address(program)), _w(program)]
    if payer is not None:
        accounts += [_r(SYSTEM_PROGRAM_ID), _w(payer, signer=True)]
    return _ix(_IX_EXTEND_PROGRAM, accounts, _u32("additional_bytes", additional_bytes))


def create_buffer(
    payer: Pubkey, buffer: Pubkey, authority: Pubkey, lamports: int, program_len: int
) -> list[Instruction]:
    """create_account for a buffer of ``program_len`` bytes, then InitializeBuffer."""
    if program_len < 0:
        raise InputError(f"program_len must not be negative, got {program_len}")
    return [
        create_account(
            CreateAccountParams(
                from_pubkey=payer,
                to_pubkey=buffer,
                lamports=lamports,
                space=BUFFER_METADATA_SIZE + program_len,
                owner=LOADER_ID,
            )
        ),
        initialize_buffer(buffer, authority),
    ]


def deploy_program(
    payer: Pubkey,
    program: Pubkey,
    buffer: Pubkey,
    authority: Pubkey,
    program_lamports: int,
    max_data_len: int,
) -> list[Instruction]:
    """create_account for the program account, then DeployWithMaxDataLen.

    Both must travel in one transaction: the program account is not a signer of the
    deploy, so anyone could claim an account created on its own.
    """
    return [
        create_account(
            CreateAccountParams(
                from_pubkey=payer,
                to_pubkey=program,
                lamports=program_lamports,
                space=PROGRAM_ACCOUNT_SIZE,
                owner=LOADER_ID,
            )
        ),
        deploy_with_max_data_len(payer, program, buffer, authority, max_data_len),
    ]


def write_chunks(data: bytes, chunk_size: int = WRITE_CHUNK_SIZE) -> Iterator[tuple[int, bytes]]:
    """(offset, chunk) pairs covering ``data`` in order, for one Write each."""
    if chunk_size <= 0:
        raise InputError(f"chunk_size must be positive, got {chunk_size}")
    for offset in range(0, len(data), chunk_size):
        yield offset, bytes(data[offset : offset + chunk_size])


def extension_bytes(capacity: int, needed: int) -> int:
    """What ExtendProgram must add to a ProgramData of ``capacity`` program bytes to hold
    ``needed``: 0 when it fits, else at least ``MIN_EXTEND_BYTES``."""
    if needed <= capacity:
        return 0
    return max(needed - capacity, MIN_EXTEND_BYTES)


def check_program_elf(elf: bytes, what: str = "program") -> None:
    """InputError unless ``elf`` is an sBPF ELF shared object the loader can hold."""
    if len(elf) < 64 or elf[:4] != b"\x7fELF":
        raise InputError(f"{what} is not an ELF file (no ELF header); pass the built .so")
    (e_type, e_machine) = struct.unpack_from("<HH", elf, 16)
    if elf[4] != 2 or elf[5] != 1 or e_type != _ET_DYN or e_machine not in _SBPF_MACHINES:
        raise InputError(
            f"{what} is an ELF but not an sBPF program (class {elf[4]}, data {elf[5]}, "
            f"type {e_type}, machine {e_machine}); pass the .so `cargo build-sbf` or "
            "`make programs` built"
        )
    if len(elf) > MAX_PROGRAM_LEN:
        raise InputError(
            f"{what} is {len(elf)} bytes; the loader holds at most {MAX_PROGRAM_LEN} bytes "
            "of program"
        )


# --- account states -------------------------------------------------------------------


@dataclass(frozen=True)
class Uninitialized:
    """A loader-owned account that holds nothing yet."""


@dataclass(frozen=True)
class Buffer:
    """A buffer; ``authority`` None means nobody can write or close it."""

    authority: Pubkey | None


@dataclass(frozen=True)
class Program:
    """A program account; its code lives in ``programdata``."""

    programdata: Pubkey


@dataclass(frozen=True)
class ProgramData:
    """A program's code account; ``authority`` None means the program is immutable."""

    slot: int
    authority: Pubkey | None


LoaderState = Uninitialized | Buffer | Program | ProgramData

_MIN_SIZE = {
    _TAG_UNINITIALIZED: 4,
    _TAG_BUFFER: BUFFER_METADATA_SIZE,
    _TAG_PROGRAM: PROGRAM_ACCOUNT_SIZE,
    _TAG_PROGRAMDATA: PROGRAMDATA_METADATA_SIZE,
}
_NAMES = {
    _TAG_UNINITIALIZED: "Uninitialized",
    _TAG_BUFFER: "Buffer",
    _TAG_PROGRAM: "Program",
    _TAG_PROGRAMDATA: "ProgramData",
}


def _option_pubkey(data: bytes, at: int, what: str) -> Pubkey | None:
    flag = data[at]
    if flag == 0:
        return None
    if flag == 1:
        return Pubkey(data[at + 1 : at + 33])
    raise InputError(f"{what}: authority option byte is {flag}, expected 0 or 1")


def decode_state(data: bytes) -> LoaderState:
    """Decode the state of an account owned by the upgradeable loader."""
    data = bytes(data)
    if len(data) < 4:
        raise InputError(
            f"loader account data is {len(data)} bytes, too short for a state tag; "
            "check that the account is owned by the upgradeable loader"
        )
    (tag,) = struct.unpack_from("<I", data)
    if tag not in _MIN_SIZE:
        raise InputError(
            f"unknown loader account state tag {tag} (expected 0-3); "
            "check that the account is owned by the upgradeable loader"
        )
    if len(data) < _MIN_SIZE[tag]:
        raise InputError(
            f"{_NAMES[tag]} account data is {len(data)} bytes, shorter than its "
            f"{_MIN_SIZE[tag]}-byte header"
        )
    if tag == _TAG_UNINITIALIZED:
        return Uninitialized()
    if tag == _TAG_BUFFER:
        return Buffer(authority=_option_pubkey(data, 4, "Buffer"))
    if tag == _TAG_PROGRAM:
        return Program(programdata=Pubkey(data[4:36]))
    (slot,) = struct.unpack_from("<Q", data, 4)
    return ProgramData(slot=slot, authority=_option_pubkey(data, 12, "ProgramData"))


# --- verifiable-build hashes ----------------------------------------------------------


def program_bytes(account_data: bytes) -> bytes:
    """The program bytes (with any zero padding) of a Buffer or ProgramData account."""
    state = decode_state(account_data)
    if isinstance(state, Buffer):
        return bytes(account_data[BUFFER_METADATA_SIZE:])
    if isinstance(state, ProgramData):
        return bytes(account_data[PROGRAMDATA_METADATA_SIZE:])
    if isinstance(state, Program):
        raise InputError(
            "this is a Program account, which holds no code; read its ProgramData "
            f"account {state.programdata} instead"
        )
    raise InputError("this loader account is Uninitialized and holds no program bytes")


def buffer_hash(account_data: bytes) -> str:
    """Verifiable-build hash of a Buffer account's contents."""
    state = decode_state(account_data)
    if not isinstance(state, Buffer):
        raise NotABuffer(
            f"the account is a loader {type(state).__name__}, not a Buffer; "
            "pass the address of the buffer that was written"
        )
    return verifiable_hash(account_data[BUFFER_METADATA_SIZE:])


def programdata_hash(account_data: bytes) -> str:
    """Verifiable-build hash of a ProgramData account's contents."""
    state = decode_state(account_data)
    if not isinstance(state, ProgramData):
        raise InputError(
            f"the account is a loader {type(state).__name__}, not ProgramData; "
            "pass programdata_address(program_id)"
        )
    return verifiable_hash(account_data[PROGRAMDATA_METADATA_SIZE:])
