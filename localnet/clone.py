"""Accounts and programs copied from a cluster into a localnet, as ``solana-test-validator
--clone`` and ``--clone-upgradeable-program`` do, and a program binary loaded at a fixed id.

``clone_from`` reads everything over JSON-RPC (``getMultipleAccounts``, base64) and checks
it before writing anything, so a refused clone leaves the localnet as it was:

- an account (``accounts``) is copied as it is: lamports, owner, data, executable;
- a program (``programs``) must be a Program account of the BPF Upgradeable Loader; its
  ProgramData (the address its data names) is copied with it, so the program runs at its
  real id with its real upgrade authority.

``install_program`` writes a Program and its ProgramData (no upgrade authority) straight
into the SVM: how ``RUNBOOKS_SQUADS_SO`` puts the Squads v4 binary at its real id.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2
from solders.account import Account
from solders.pubkey import Pubkey

from core.errors import InputError
from core.settings import settings
from programs import loader
from programs.rpc_transport import redacted
from programs.squads.client import PROGRAM_ID as SQUADS_PROGRAM_ID

if TYPE_CHECKING:
    from localnet.chain import Localnet

# getMultipleAccounts answers at most 100 keys a request.
MAX_KEYS_PER_REQUEST = 100
RPC_TIMEOUT_SECONDS = 30.0
SQUADS_SO_VARIABLE = "RUNBOOKS_SQUADS_SO"


def _pubkeys(values: Iterable[Pubkey | str], what: str) -> list[Pubkey]:
    keys: list[Pubkey] = []
    for value in values:
        if isinstance(value, Pubkey):
            keys.append(value)
            continue
        try:
            keys.append(Pubkey.from_string(str(value).strip()))
        except ValueError:
            raise InputError(f"{what} {str(value)[:60]!r} is not a base58 address") from None
    return keys


def _is_http_url(url: str) -> bool:
    try:
        parsed = httpx2.URL(url)
    except httpx2.InvalidURL:
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.host)


def where(url: str) -> str:
    """What a message may show of ``url``: scheme, host and port (its path or query may
    hold an API key)."""
    return redacted(url) if _is_http_url(url) else "the given URL"


def check_url(url: str) -> None:
    """InputError unless ``url`` is an http(s) URL with a host."""
    if not _is_http_url(url):
        raise InputError(
            "--url is not an http(s) RPC URL; give one such as "
            "https://api.mainnet-beta.solana.com or http://127.0.0.1:8899"
        )


def _rpc(http: httpx2.Client, url: str, method: str, params: list[Any]) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    try:
        reply = http.post(url, json=body)
    except (httpx2.HTTPError, httpx2.InvalidURL):
        raise InputError(
            f"cannot clone from {where(url)}: {method} got no answer; check the RPC URL "
            "and that the cluster is reachable"
        ) from None
    if reply.status_code != 200:
        raise InputError(
            f"cannot clone from {where(url)}: {method} answered HTTP {reply.status_code}; check "
            "the RPC URL (a JSON-RPC endpoint, e.g. https://api.mainnet-beta.solana.com)"
        )
    try:
        answer = reply.json()
    except ValueError:
        raise InputError(
            f"cannot clone from {where(url)}: {method} did not answer JSON-RPC"
        ) from None
    if not isinstance(answer, dict) or "error" in answer or "result" not in answer:
        error = answer.get("error") if isinstance(answer, dict) else answer
        raise InputError(f"cannot clone from {where(url)}: {method} failed: {str(error)[:200]}")
    return answer["result"]


def fetch_accounts(url: str, addresses: Sequence[Pubkey]) -> dict[Pubkey, Account | None]:
    """Each address's account on the cluster at ``url`` (None when it does not exist)."""
    found: dict[Pubkey, Account | None] = {}
    with httpx2.Client(timeout=RPC_TIMEOUT_SECONDS) as http:
        for start in range(0, len(addresses), MAX_KEYS_PER_REQUEST):
            batch = list(addresses[start : start + MAX_KEYS_PER_REQUEST])
            params = [[str(k) for k in batch], {"encoding": "base64", "commitment": "confirmed"}]
            result = _rpc(http, url, "getMultipleAccounts", params)
            values = result.get("value") if isinstance(result, dict) else None
            if not isinstance(values, list) or len(values) != len(batch):
                raise InputError(
                    f"cannot clone from {where(url)}: getMultipleAccounts answered "
                    f"{str(result)[:200]}"
                )
            for key, value in zip(batch, values, strict=True):
                found[key] = None if value is None else _account(url, key, value)
    return found


def _account(url: str, key: Pubkey, value: dict[str, Any]) -> Account:
    try:
        data = base64.b64decode(value["data"][0], validate=True)
        return Account(
            lamports=int(value["lamports"]),
            data=data,
            owner=Pubkey.from_string(value["owner"]),
            executable=bool(value["executable"]),
            rent_epoch=int(value.get("rentEpoch", 0)) % 2**64,
        )
    except (KeyError, IndexError, TypeError, ValueError):
        raise InputError(
            f"cannot clone {key} from {where(url)}: its account is not readable"
        ) from None


def _program_accounts(
    url: str, program_id: Pubkey, program: Account | None
) -> tuple[Pubkey, Account]:
    """The ProgramData address of upgradeable ``program``; InputError naming it else."""
    flag = f"--clone-upgradeable-program {program_id}"
    if program is None:
        raise InputError(
            f"{flag}: no account at that address on {where(url)}; check the program id"
        )
    if program.owner != loader.LOADER_ID or not program.executable:
        raise InputError(
            f"{flag}: not an upgradeable program (owner {program.owner}, executable "
            f"{program.executable}); name a program of the BPF Upgradeable Loader, or copy "
            "the account with --clone"
        )
    state = loader.decode_state(bytes(program.data))
    if not isinstance(state, loader.Program):
        raise InputError(f"{flag}: a loader {type(state).__name__} account, not a Program")
    return state.programdata, program


def clone_from(
    net: Localnet,
    url: str,
    *,
    accounts: Iterable[Pubkey | str] = (),
    programs: Iterable[Pubkey | str] = (),
) -> list[Pubkey]:
    """Copy ``accounts`` and upgradeable ``programs`` (with their ProgramData) from the
    cluster at ``url``; returns every address written. Everything is read and checked
    before anything is written."""
    account_keys = _pubkeys(accounts, "--clone")
    program_keys = _pubkeys(programs, "--clone-upgradeable-program")
    check_url(url)
    if not account_keys and not program_keys:
        return []
    fetched = fetch_accounts(url, [*account_keys, *program_keys])
    for key in account_keys:
        if fetched[key] is None:
            raise InputError(f"--clone {key}: no account at that address on {where(url)}")
    to_write: dict[Pubkey, Account] = {k: a for k, a in fetched.items() if k in account_keys and a}
    programdata_of = {key: _program_accounts(url, key, fetched[key])[0] for key in program_keys}
    programdata = fetch_accounts(url, list(programdata_of.values())) if programdata_of else {}
    for key, data_key in programdata_of.items():
        data = programdata[data_key]
        if data is None or data.owner != loader.LOADER_ID:
            raise InputError(
                f"--clone-upgradeable-program {key}: its ProgramData {data_key} is missing "
                f"on {where(url)} (or not the loader's); the program cannot run without it"
            )
        if not isinstance(loader.decode_state(bytes(data.data)), loader.ProgramData):
            raise InputError(
                f"--clone-upgradeable-program {key}: {data_key} is not a ProgramData account"
            )
        # ProgramData first: LiteSVM compiles a program when its Program account is set.
        to_write[data_key] = data
        program = fetched[key]
        assert program is not None  # checked by _program_accounts
        to_write[key] = program
    _write(net, to_write)
    return list(to_write)


def _write(net: Localnet, accounts: dict[Pubkey, Account]) -> None:
    with net.lock:
        for key, account in accounts.items():
            net.svm.set_account(key, account)


def install_program(net: Localnet, program_id: Pubkey, elf: bytes, what: str) -> None:
    """Put ``elf`` at ``program_id`` as an upgradeable program with no upgrade authority
    (a Program account and its ProgramData, both rent exempt)."""
    loader.check_program_elf(elf, what)
    programdata_key = loader.programdata_address(program_id)
    # ProgramData: tag 3, deploy slot, Option<authority> None (its 32 bytes left zero).
    programdata = struct.pack("<IQ", 3, net.slot) + bytes(33) + elf
    program = struct.pack("<I", 2) + bytes(programdata_key)
    rent = net.minimum_balance_for_rent_exemption
    _write(
        net,
        {
            programdata_key: Account(
                rent(len(programdata)), programdata, loader.LOADER_ID, False, 0
            ),
            program_id: Account(rent(len(program)), program, loader.LOADER_ID, True, 0),
        },
    )


def squads_binary() -> Path | None:
    """The Squads v4 binary ``RUNBOOKS_SQUADS_SO`` names, or None when it is unset."""
    value = settings().squads_so
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise InputError(
            f"{SQUADS_SO_VARIABLE}={value}: no such file; point it at the Squads v4 program "
            f"(`solana program dump -u m {SQUADS_PROGRAM_ID} squads.so`) or unset it"
        )
    return path


def load_squads_from_env(net: Localnet) -> bool:
    """Load the ``RUNBOOKS_SQUADS_SO`` binary at the Squads program id; False when unset."""
    path = squads_binary()
    if path is None:
        return False
    install_program(net, SQUADS_PROGRAM_ID, path.read_bytes(), f"{SQUADS_SO_VARIABLE}={path}")
    return True
