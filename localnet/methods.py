"""The localnet's Solana JSON-RPC methods: one function per method, ``METHODS`` maps names.

A handler takes the ``Localnet`` and the request's positional params and returns the
``result`` value. Results are written by solders' response classes (the classes
solana-py parses them with), so the wire JSON is Solana's; only what no class writes
(base58 account data, ``space``, error envelopes) is filled in here. Errors carry the
codes and messages Agave's RPC uses, so clients react to them as they would on a
cluster.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import solders
from solders.account import Account
from solders.hash import Hash
from solders.litesvm import FeatureSet
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.rpc.errors import (
    InternalErrorMessage,
    InvalidParamsMessage,
    InvalidRequestMessage,
    MethodNotFoundMessage,
    ParseErrorMessage,
    SendTransactionPreflightFailureMessage,
)
from solders.rpc.responses import (
    GetAccountInfoResp,
    GetBalanceResp,
    GetBlockHeightResp,
    GetEpochInfoResp,
    GetGenesisHashResp,
    GetHealthResp,
    GetLatestBlockhashResp,
    GetMinimumBalanceForRentExemptionResp,
    GetMultipleAccountsResp,
    GetProgramAccountsResp,
    GetProgramAccountsWithContextResp,
    GetRecentPrioritizationFeesResp,
    GetSignaturesForAddressResp,
    GetSignatureStatusesResp,
    GetSlotResp,
    GetTransactionResp,
    GetVersionResp,
    IsBlockhashValidResp,
    RequestAirdropResp,
    RpcBlockhash,
    RpcConfirmedTransactionStatusWithSignature,
    RpcKeyedAccount,
    RpcPrioritizationFee,
    RpcResponseContext,
    RpcSimulateTransactionResult,
    RpcVersionInfo,
    SendTransactionResp,
    SimulateTransactionResp,
)
from solders.signature import Signature
from solders.transaction import Legacy, VersionedTransaction
from solders.transaction_status import (
    EncodedConfirmedTransactionWithStatusMeta,
    EncodedTransactionWithStatusMeta,
    TransactionConfirmationStatus,
    TransactionErrorFieldless,
    TransactionStatus,
    UiCompiledInstruction,
    UiRawMessage,
    UiTransaction,
    UiTransactionStatusMeta,
)

from core.base58 import b58decode, b58encode
from core.errors import InputError
from localnet.errors import (
    LocalnetTransactionError,
    PreflightFailure,
    SignatureVerificationFailure,
    describe,
)

if TYPE_CHECKING:
    from localnet.chain import LandedTransaction, Localnet

logger = logging.getLogger("localnet")

Handler = Callable[["Localnet", list[Any]], Any]

# JSON-RPC 2.0 codes, and Solana's own (agave rpc-client-types custom_error.rs).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SEND_TRANSACTION_PREFLIGHT_FAILURE = -32002
TRANSACTION_SIGNATURE_VERIFICATION_FAILURE = -32003
MIN_CONTEXT_SLOT_NOT_REACHED = -32016
UNSUPPORTED_TRANSACTION_VERSION = -32015
# A getProgramAccounts answer over the cluster-like mode's size limit: the request
# itself must change (dataSlice, filters), so retrying it as is cannot help.
PROGRAM_ACCOUNTS_TOO_LARGE = INVALID_REQUEST

# Agave's limits.
PACKET_DATA_SIZE = 1232
MAX_BASE58_TRANSACTION = 1683  # base58 length of a PACKET_DATA_SIZE transaction
MAX_BASE64_TRANSACTION = 1644
MAX_MULTIPLE_ACCOUNTS = 100
MAX_SIGNATURE_STATUSES = 256
MAX_FILTERS = 4
MAX_BASE58_ACCOUNT_DATA = 128
MAX_MEMCMP_BYTES = 128
MAX_PRIORITIZATION_FEE_ACCOUNTS = 128
MAX_SIGNATURES_FOR_ADDRESS = 1000

_COMMITMENTS = {"processed", "confirmed", "finalized", "recent", "single", "root", "max"}

# "solana-core" names the solders release whose LiteSVM executes the programs, so a
# client never mistakes the localnet for an Agave build.
SOLANA_CORE_VERSION = f"{solders.__version__}-localnet"
# Agave derives feature-set from the feature ids it knows; do the same for LiteSVM's.
FEATURE_SET = zlib.crc32(b"".join(sorted(bytes(k) for k in FeatureSet.all_enabled().active)))


class RpcError(Exception):
    """A JSON-RPC error reply: ``code``, ``message`` and optional ``data``."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def _solders_error(code: int, message_obj: Any) -> RpcError:
    # solders' error message classes write message (and data); the code is ours to add.
    body = json.loads(message_obj.to_json())
    return RpcError(code, body["message"], body.get("data"))


def invalid_params(message: str) -> RpcError:
    return _solders_error(INVALID_PARAMS, InvalidParamsMessage(message))


# --- params ---------------------------------------------------------------------------


def _param(params: list[Any], index: int, name: str) -> Any:
    if len(params) <= index or params[index] is None:
        raise invalid_params(f"missing {name} (param {index})")
    return params[index]


def _config(params: list[Any], index: int) -> dict[str, Any]:
    if len(params) <= index or params[index] is None:
        return {}
    config = params[index]
    if not isinstance(config, dict):
        raise invalid_params(f"Invalid params: param {index} must be a configuration object")
    # Clients send null for options they leave unset; that means the default.
    config = {key: value for key, value in config.items() if value is not None}
    commitment = config.get("commitment", config.get("preflightCommitment"))
    if commitment is not None and commitment not in _COMMITMENTS:
        raise invalid_params(
            f"Invalid params: unknown variant `{commitment}`, expected one of "
            "`processed`, `confirmed`, `finalized`"
        )
    return config


def _int(value: Any, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise invalid_params(f"Invalid params: {name} must be an integer >= {minimum}")
    return value


def _bool(config: dict[str, Any], key: str) -> bool:
    value = config.get(key, False)
    if not isinstance(value, bool):
        raise invalid_params(f"Invalid params: {key} must be true or false")
    return value


def _pubkey(value: Any) -> Pubkey:
    try:
        return Pubkey.from_string(value)
    except (ValueError, TypeError):
        raise invalid_params("Invalid param: Invalid") from None


def _pubkeys(value: Any, limit: int) -> list[Pubkey]:
    if not isinstance(value, list):
        raise invalid_params("Invalid params: expected an array of base-58 pubkeys")
    if len(value) > limit:
        raise invalid_params(f"Too many inputs provided; max {limit}")
    return [_pubkey(item) for item in value]


def _context(net: Localnet) -> RpcResponseContext:
    return RpcResponseContext(slot=net.slot)


def _check_min_context_slot(net: Localnet, config: dict[str, Any]) -> None:
    min_slot = config.get("minContextSlot")
    if min_slot is not None and _int(min_slot, "minContextSlot") > net.slot:
        raise RpcError(
            MIN_CONTEXT_SLOT_NOT_REACHED,
            "Minimum context slot has not been reached",
            {"contextSlot": net.slot},
        )


def _result(resp: Any) -> Any:
    return json.loads(resp.to_json())["result"]


# --- account encoding -----------------------------------------------------------------


def _account_encoding(config: dict[str, Any]) -> str:
    # Agave's default is "binary": the data as one base58 string.
    encoding = config.get("encoding", "binary")
    if encoding == "jsonParsed":
        # No parsers here; Agave falls back to base64 for accounts it cannot parse.
        return "base64"
    if encoding == "base64+zstd":
        raise invalid_params(
            "Invalid params: base64+zstd is not supported by the localnet; use base64"
        )
    if encoding not in ("binary", "base58", "base64"):
        raise invalid_params(
            f"Invalid params: unknown variant `{encoding}`, expected one of `binary`, "
            "`base58`, `base64`, `jsonParsed`, `base64+zstd`"
        )
    return encoding


def _data_slice(config: dict[str, Any]) -> tuple[int, int] | None:
    data_slice = config.get("dataSlice")
    if data_slice is None:
        return None
    if not isinstance(data_slice, dict):
        raise invalid_params("Invalid params: dataSlice must be {offset, length}")
    return _int(data_slice.get("offset"), "dataSlice.offset"), _int(
        data_slice.get("length"), "dataSlice.length"
    )


class _Encoder:
    """Applies one request's encoding and dataSlice to the accounts of its reply."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.encoding = _account_encoding(config)
        self.data_slice = _data_slice(config)

    def sliced(self, account: Account | None) -> Account | None:
        if account is None:
            return None
        data = bytes(account.data)
        if self.data_slice is not None:
            offset, length = self.data_slice
            data = data[offset : offset + length]
        if self.encoding != "base64" and len(data) > MAX_BASE58_ACCOUNT_DATA:
            raise _solders_error(
                INVALID_REQUEST,
                InvalidRequestMessage(
                    f"Encoded binary (base 58) data should be less than "
                    f"{MAX_BASE58_ACCOUNT_DATA} bytes, please use Base64 encoding."
                ),
            )
        if self.data_slice is None:
            return account
        return Account(
            account.lamports, data, account.owner, account.executable, account.rent_epoch
        )

    def patch(self, ui: dict[str, Any] | None, account: Account | None) -> None:
        """Fill in what solders leaves out: ``space`` and the base58 forms of data."""
        if ui is None or account is None:
            return
        ui["space"] = len(account.data)
        if self.encoding == "base64":
            return
        data = base64.b64decode(ui["data"][0])
        encoded = b58encode(data)
        ui["data"] = encoded if self.encoding == "binary" else [encoded, "base58"]


# --- transactions ---------------------------------------------------------------------


def _decode_transaction(encoded: Any, encoding: Any) -> VersionedTransaction:
    name = "solana_transaction::versioned::VersionedTransaction"
    if not isinstance(encoded, str):
        raise invalid_params("Invalid params: the transaction must be an encoded string")
    if encoding == "base58":
        if len(encoded) > MAX_BASE58_TRANSACTION:
            raise invalid_params(
                f"base58 encoded {name} too large: {len(encoded)} bytes (max: encoded/raw "
                f"{MAX_BASE58_TRANSACTION}/{PACKET_DATA_SIZE})"
            )
        try:
            raw = b58decode(encoded)
        except ValueError as exc:
            raise invalid_params(f"invalid base58 encoding: {exc}") from None
    elif encoding == "base64":
        if len(encoded) > MAX_BASE64_TRANSACTION:
            raise invalid_params(
                f"base64 encoded {name} too large: {len(encoded)} bytes (max: encoded/raw "
                f"{MAX_BASE64_TRANSACTION}/{PACKET_DATA_SIZE})"
            )
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise invalid_params(f"invalid base64 encoding: {exc}") from None
    else:
        raise invalid_params(
            f"unsupported encoding: {encoding}. Supported encodings: base58, base64"
        )
    if len(raw) > PACKET_DATA_SIZE:
        raise invalid_params(
            f"decoded {name} too large: {len(raw)} bytes (max: {PACKET_DATA_SIZE} bytes)"
        )
    try:
        tx = VersionedTransaction.from_bytes(raw)
    except Exception as exc:  # solders raises several types for malformed bincode
        raise invalid_params(f"failed to deserialize {name}: {exc}") from None
    try:
        tx.sanitize()
    except Exception:
        raise invalid_params(
            f"invalid transaction: {describe(TransactionErrorFieldless.SanitizeFailure)}"
        ) from None
    return tx


def _signature_failure() -> RpcError:
    return RpcError(
        TRANSACTION_SIGNATURE_VERIFICATION_FAILURE, "Transaction signature verification failure"
    )


# --- methods --------------------------------------------------------------------------


def get_account_info(net: Localnet, params: list[Any]) -> Any:
    pubkey = _pubkey(_param(params, 0, "pubkey"))
    config = _config(params, 1)
    encoder = _Encoder(config)
    _check_min_context_slot(net, config)
    with net.lock:
        context = _context(net)
        account = net.get_account(pubkey)
    result = _result(GetAccountInfoResp(encoder.sliced(account), context))
    encoder.patch(result["value"], account)
    return result


def get_multiple_accounts(net: Localnet, params: list[Any]) -> Any:
    pubkeys = _pubkeys(_param(params, 0, "pubkeys"), MAX_MULTIPLE_ACCOUNTS)
    config = _config(params, 1)
    encoder = _Encoder(config)
    _check_min_context_slot(net, config)
    with net.lock:
        context = _context(net)
        accounts = net.get_accounts(pubkeys)
    result = _result(
        GetMultipleAccountsResp([encoder.sliced(account) for account in accounts], context)
    )
    for ui, account in zip(result["value"], accounts, strict=True):
        encoder.patch(ui, account)
    return result


def _filter(raw: Any) -> Callable[[bytes], bool]:
    if not isinstance(raw, dict) or len(raw) != 1:
        raise invalid_params("Invalid params: each filter is {dataSize} or {memcmp}")
    if "dataSize" in raw:
        size = _int(raw["dataSize"], "dataSize")
        return lambda data: len(data) == size
    memcmp = raw.get("memcmp")
    if not isinstance(memcmp, dict):
        raise invalid_params("Invalid params: unsupported filter; use dataSize or memcmp")
    offset = _int(memcmp.get("offset"), "memcmp.offset")
    encoded = memcmp.get("bytes")
    encoding = memcmp.get("encoding", "base58")
    if not isinstance(encoded, str):
        raise invalid_params("Invalid params: memcmp.bytes must be a string")
    try:
        if encoding == "base58":
            wanted = b58decode(encoded)
        elif encoding == "base64":
            wanted = base64.b64decode(encoded, validate=True)
        else:
            raise invalid_params(
                f"Invalid params: unknown variant `{encoding}`, expected `base58` or `base64`"
            )
    except (ValueError, binascii.Error) as exc:
        raise invalid_params(f"Invalid param: {exc}") from None
    if len(wanted) > MAX_MEMCMP_BYTES:
        raise invalid_params(
            f"Invalid param: encoded binary data should be less than {MAX_MEMCMP_BYTES + 1} bytes"
        )
    end = offset + len(wanted)
    return lambda data: data[offset:end] == wanted


def get_program_accounts(net: Localnet, params: list[Any]) -> Any:
    program_id = _pubkey(_param(params, 0, "program id"))
    config = _config(params, 1)
    encoder = _Encoder(config)
    filters_raw = config.get("filters") or []
    if not isinstance(filters_raw, list):
        raise invalid_params("Invalid params: filters must be an array")
    if len(filters_raw) > MAX_FILTERS:
        raise invalid_params(f"Too many filters provided; max {MAX_FILTERS}")
    filters = [_filter(f) for f in filters_raw]
    _check_min_context_slot(net, config)
    with net.lock:
        context = _context(net)
        matches = [
            (pubkey, account)
            for pubkey, account in net.get_program_accounts(program_id)
            if all(f(bytes(account.data)) for f in filters)
        ]
    _check_scan_size(net, matches, encoder)
    keyed = [RpcKeyedAccount(pubkey, encoder.sliced(account)) for pubkey, account in matches]
    if _bool(config, "withContext"):
        result = _result(GetProgramAccountsWithContextResp(keyed, context))
        entries = result["value"]
    else:
        result = entries = _result(GetProgramAccountsResp(keyed))
    for entry, (_, account) in zip(entries, matches, strict=True):
        encoder.patch(entry["account"], account)
    return result


def _check_scan_size(
    net: Localnet, matches: list[tuple[Pubkey, Account]], encoder: _Encoder
) -> None:
    """Cluster-like mode: refuse an answer with more account data than the limit."""
    if net.behaviour is None:
        return
    limit = net.behaviour.program_accounts_max_bytes
    total = 0
    for _, account in matches:
        size = len(account.data)
        if encoder.data_slice is not None:
            offset, length = encoder.data_slice
            size = max(0, min(length, size - offset))
        total += size
    if total > limit:
        raise RpcError(
            PROGRAM_ACCOUNTS_TOO_LARGE,
            f"getProgramAccounts: the answer would hold {total} bytes of account data "
            f"({len(matches)} accounts), over this endpoint's limit of {limit} bytes; use "
            "dataSlice and filters (dataSize, memcmp) to narrow the scan",
        )


def get_latest_blockhash(net: Localnet, params: list[Any]) -> Any:
    config = _config(params, 0)
    _check_min_context_slot(net, config)
    with net.lock:
        context = _context(net)
        blockhash, last_valid = net.latest_blockhash()
    return _result(GetLatestBlockhashResp(RpcBlockhash(blockhash, last_valid), context))


def is_blockhash_valid(net: Localnet, params: list[Any]) -> Any:
    try:
        blockhash = Hash.from_string(_param(params, 0, "blockhash"))
    except (ValueError, TypeError):
        raise invalid_params("Invalid param: Invalid") from None
    config = _config(params, 1)
    _check_min_context_slot(net, config)
    with net.lock:
        return _result(IsBlockhashValidResp(net.is_blockhash_valid(blockhash), _context(net)))


def send_transaction(net: Localnet, params: list[Any]) -> Any:
    config = _config(params, 1)
    tx = _decode_transaction(_param(params, 0, "transaction"), config.get("encoding", "base58"))
    _check_min_context_slot(net, config)
    try:
        signature = net.submit_transaction(tx, skip_preflight=_bool(config, "skipPreflight"))
    except SignatureVerificationFailure:
        raise _signature_failure() from None
    except PreflightFailure as exc:
        data = RpcSimulateTransactionResult(
            err=exc.err,
            logs=exc.logs,
            accounts=None,
            units_consumed=exc.units_consumed,
            return_data=exc.return_data,
        )
        raise _solders_error(
            SEND_TRANSACTION_PREFLIGHT_FAILURE,
            SendTransactionPreflightFailureMessage(str(exc), data),
        ) from None
    return _result(SendTransactionResp(signature))


def simulate_transaction(net: Localnet, params: list[Any]) -> Any:
    config = _config(params, 1)
    tx = _decode_transaction(_param(params, 0, "transaction"), config.get("encoding", "base58"))
    sig_verify = _bool(config, "sigVerify")
    replace = _bool(config, "replaceRecentBlockhash")
    if sig_verify and replace:
        raise invalid_params("sigVerify may not be used with replaceRecentBlockhash")
    if sig_verify and not all(tx.verify_with_results()):
        raise _signature_failure()
    accounts_config = config.get("accounts")
    addresses: list[Pubkey] | None = None
    encoder: _Encoder | None = None
    if accounts_config is not None:
        if not isinstance(accounts_config, dict):
            raise invalid_params("Invalid params: accounts must be {addresses, encoding}")
        max_accounts = len(tx.message.account_keys)
        addresses = _pubkeys(accounts_config.get("addresses", []), 2**31)
        if len(addresses) > max_accounts:
            raise invalid_params(f"Too many accounts provided; max {max_accounts}")
        if accounts_config.get("encoding") in ("base58", "binary"):
            raise invalid_params("base58 encoding not supported")
        encoder = _Encoder({"encoding": accounts_config.get("encoding", "base64")})
    _check_min_context_slot(net, config)
    with net.lock:
        outcome = net.simulate_transaction(
            tx, sig_verify=sig_verify, replace_recent_blockhash=replace
        )
        accounts: list[Account | None] | None = None
        if addresses is not None:
            current = net.get_accounts(addresses)
            accounts = [
                outcome.post_accounts.get(address, now)
                for address, now in zip(addresses, current, strict=True)
            ]
    replacement = (
        RpcBlockhash(*outcome.replacement_blockhash) if outcome.replacement_blockhash else None
    )
    value = RpcSimulateTransactionResult(
        err=outcome.err,
        logs=outcome.logs,
        accounts=accounts,
        units_consumed=outcome.units_consumed,
        return_data=outcome.return_data,
        replacement_blockhash=replacement,
        fee=outcome.fee if outcome.ok else None,
    )
    result = _result(SimulateTransactionResp(value, RpcResponseContext(slot=outcome.slot)))
    if accounts is not None and encoder is not None:
        for ui, account in zip(result["value"]["accounts"], accounts, strict=True):
            encoder.patch(ui, account)
    return result


def get_signature_statuses(net: Localnet, params: list[Any]) -> Any:
    raw = _param(params, 0, "signatures")
    if not isinstance(raw, list):
        raise invalid_params("Invalid params: expected an array of base-58 signatures")
    if len(raw) > MAX_SIGNATURE_STATUSES:
        raise invalid_params(f"Too many inputs provided; max {MAX_SIGNATURE_STATUSES}")
    try:
        signatures = [Signature.from_string(item) for item in raw]
    except (ValueError, TypeError):
        raise invalid_params("Invalid param: Invalid") from None
    search_history = _bool(_config(params, 1), "searchTransactionHistory")
    value: list[TransactionStatus | None] = []
    with net.lock:
        context = _context(net)
        for signature in signatures:
            landed = net.landed_transaction(signature)
            # Without searchTransactionHistory only the status cache's recent slots count.
            if landed is None or not (search_history or net.in_status_cache(landed)):
                value.append(None)
                continue
            commitment, confirmations = net.commitment_of(landed)
            value.append(
                TransactionStatus(
                    landed.slot, confirmations, landed.err, landed.err, _CONFIRMATION[commitment]
                )
            )
    return _result(GetSignatureStatusesResp(value, context))


_CONFIRMATION = {
    "processed": TransactionConfirmationStatus.Processed,
    "confirmed": TransactionConfirmationStatus.Confirmed,
    "finalized": TransactionConfirmationStatus.Finalized,
}
_RANK = {"processed": 0, "confirmed": 1, "finalized": 2}


def _history_commitment(config: dict[str, Any]) -> str:
    """The commitment of a history method: confirmed or finalized (the default)."""
    commitment = config.get("commitment", "finalized")
    commitment = {"recent": "processed", "single": "confirmed", "root": "finalized"}.get(
        commitment, {"max": "finalized", "singleGossip": "confirmed"}.get(commitment, commitment)
    )
    if commitment == "processed":
        raise invalid_params("Method does not support commitment below `confirmed`")
    return str(commitment)


def _reached(net: Localnet, landed: LandedTransaction, commitment: str) -> bool:
    return _RANK[net.commitment_of(landed)[0]] >= _RANK[commitment]


def get_recent_prioritization_fees(net: Localnet, params: list[Any]) -> Any:
    accounts: list[Pubkey] = []
    if params and params[0] is not None:
        accounts = _pubkeys(params[0], MAX_PRIORITIZATION_FEE_ACCOUNTS)
    fees = net.prioritization_fees(accounts)
    return _result(
        GetRecentPrioritizationFeesResp([RpcPrioritizationFee(slot, fee) for slot, fee in fees])
    )


def _signature(value: Any, name: str) -> Signature:
    try:
        return Signature.from_string(value)
    except (ValueError, TypeError):
        raise invalid_params(f"Invalid param: {name} is not a base-58 signature") from None


def get_transaction(net: Localnet, params: list[Any]) -> Any:
    signature = _signature(_param(params, 0, "signature"), "signature")
    config = params[1] if len(params) > 1 and isinstance(params[1], str) else None
    # The second param may be the bare encoding, as in the deprecated form.
    config_dict = {"encoding": config} if config is not None else _config(params, 1)
    encoding = config_dict.get("encoding", "json")
    if encoding not in ("json", "base64", "base58"):
        raise invalid_params(
            f"Invalid params: encoding {encoding!r} is not supported by the localnet; use "
            "json, base64 or base58"
        )
    commitment = _history_commitment(config_dict)
    max_version = config_dict.get("maxSupportedTransactionVersion")
    if max_version is not None:
        max_version = _int(max_version, "maxSupportedTransactionVersion")
    with net.lock:
        landed = net.landed_transaction(signature)
        if landed is None or landed.transaction is None or not _reached(net, landed, commitment):
            return None
    tx = landed.transaction
    is_v0 = isinstance(tx.message, MessageV0)
    if is_v0 and max_version is None:
        raise RpcError(
            UNSUPPORTED_TRANSACTION_VERSION,
            "Transaction version (0) is not supported by the requesting client. Please try "
            "the request again with the following configuration parameter: "
            '"maxSupportedTransactionVersion": 0',
        )
    # "version" is only reported to clients that name the versions they support.
    version = None if max_version is None else 0 if is_v0 else Legacy.Legacy
    encoded: VersionedTransaction | UiTransaction = tx
    if encoding == "json":
        msg = tx.message
        encoded = UiTransaction(
            tx.signatures,
            UiRawMessage(
                msg.header,
                msg.account_keys,
                msg.recent_blockhash,
                [
                    UiCompiledInstruction(
                        ix.program_id_index, bytes(ix.accounts), b58encode(bytes(ix.data))
                    )
                    for ix in msg.instructions
                ],
                [] if is_v0 else None,
            ),
        )
    meta = UiTransactionStatusMeta(
        landed.err,
        landed.fee,
        landed.pre_balances,
        landed.post_balances,
        log_messages=landed.logs,
        compute_units_consumed=landed.units_consumed,
    )
    result = _result(
        GetTransactionResp(
            EncodedConfirmedTransactionWithStatusMeta(
                landed.slot,
                EncodedTransactionWithStatusMeta(encoded, meta, version),
                landed.block_time,
            )
        )
    )
    # What solders leaves null a validator sends as empty lists (no CPI details here).
    for key in ("innerInstructions", "preTokenBalances", "postTokenBalances", "rewards"):
        result["meta"][key] = []
    result["meta"]["loadedAddresses"] = {"writable": [], "readonly": []}
    if encoding == "base58":
        result["transaction"] = [b58encode(bytes(tx)), "base58"]
    return result


def get_signatures_for_address(net: Localnet, params: list[Any]) -> Any:
    address = _pubkey(_param(params, 0, "address"))
    config = _config(params, 1)
    commitment = _history_commitment(config)
    limit = _int(config.get("limit", MAX_SIGNATURES_FOR_ADDRESS), "limit", minimum=1)
    if limit > MAX_SIGNATURES_FOR_ADDRESS:
        raise invalid_params(f"Invalid limit; max {MAX_SIGNATURES_FOR_ADDRESS}")
    before = config.get("before")
    until = config.get("until")
    before_sig = _signature(before, "before") if before is not None else None
    until_sig = _signature(until, "until") if until is not None else None
    _check_min_context_slot(net, config)
    found: list[RpcConfirmedTransactionStatusWithSignature] = []
    with net.lock:
        started = before_sig is None
        for landed in net.history():  # newest first
            if not started:
                started = landed.signature == before_sig
                continue
            if landed.signature == until_sig:
                break
            if address not in landed.account_keys or not _reached(net, landed, commitment):
                continue
            status = net.commitment_of(landed)[0]
            found.append(
                RpcConfirmedTransactionStatusWithSignature(
                    landed.signature,
                    landed.slot,
                    landed.err,
                    None,
                    landed.block_time,
                    _CONFIRMATION[status],
                )
            )
            if len(found) == limit:
                break
    return _result(GetSignaturesForAddressResp(found))


def get_slot(net: Localnet, params: list[Any]) -> Any:
    config = _config(params, 0)
    _check_min_context_slot(net, config)
    return _result(GetSlotResp(net.slot))


def get_block_height(net: Localnet, params: list[Any]) -> Any:
    config = _config(params, 0)
    _check_min_context_slot(net, config)
    return _result(GetBlockHeightResp(net.block_height))


def get_balance(net: Localnet, params: list[Any]) -> Any:
    pubkey = _pubkey(_param(params, 0, "pubkey"))
    config = _config(params, 1)
    _check_min_context_slot(net, config)
    with net.lock:
        return _result(GetBalanceResp(net.get_balance(pubkey), _context(net)))


def get_health(net: Localnet, params: list[Any]) -> Any:
    return _result(GetHealthResp("ok"))


def get_version(net: Localnet, params: list[Any]) -> Any:
    return _result(GetVersionResp(RpcVersionInfo(SOLANA_CORE_VERSION, FEATURE_SET)))


def get_minimum_balance_for_rent_exemption(net: Localnet, params: list[Any]) -> Any:
    data_len = _int(_param(params, 0, "data length"), "data length")
    _config(params, 1)
    return _result(
        GetMinimumBalanceForRentExemptionResp(net.minimum_balance_for_rent_exemption(data_len))
    )


def request_airdrop(net: Localnet, params: list[Any]) -> Any:
    pubkey = _pubkey(_param(params, 0, "pubkey"))
    lamports = _int(_param(params, 1, "lamports"), "lamports", minimum=1)
    _config(params, 2)
    try:
        signature = net.airdrop(pubkey, lamports)
    except LocalnetTransactionError as exc:
        raise _solders_error(INTERNAL_ERROR, InternalErrorMessage(str(exc))) from None
    return _result(RequestAirdropResp(signature))


def get_genesis_hash(net: Localnet, params: list[Any]) -> Any:
    return _result(GetGenesisHashResp(net.genesis_hash))


def get_epoch_info(net: Localnet, params: list[Any]) -> Any:
    config = _config(params, 0)
    _check_min_context_slot(net, config)
    return _result(GetEpochInfoResp(net.epoch_info()))


METHODS: dict[str, Handler] = {
    "getAccountInfo": get_account_info,
    "getMultipleAccounts": get_multiple_accounts,
    "getProgramAccounts": get_program_accounts,
    "getLatestBlockhash": get_latest_blockhash,
    "isBlockhashValid": is_blockhash_valid,
    "sendTransaction": send_transaction,
    "simulateTransaction": simulate_transaction,
    "getSignatureStatuses": get_signature_statuses,
    "getSlot": get_slot,
    "getBlockHeight": get_block_height,
    "getBalance": get_balance,
    "getHealth": get_health,
    "getVersion": get_version,
    "getMinimumBalanceForRentExemption": get_minimum_balance_for_rent_exemption,
    "requestAirdrop": request_airdrop,
    "getGenesisHash": get_genesis_hash,
    "getEpochInfo": get_epoch_info,
    "getRecentPrioritizationFees": get_recent_prioritization_fees,
    "getTransaction": get_transaction,
    "getSignaturesForAddress": get_signatures_for_address,
}


# --- dispatch -------------------------------------------------------------------------


def _invalid_request() -> RpcError:
    return _solders_error(INVALID_REQUEST, InvalidRequestMessage("Invalid request"))


def _error(request_id: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": error.to_dict(), "id": request_id}


def dispatch(net: Localnet, request: Any) -> dict[str, Any]:
    """Answer one decoded JSON-RPC request object."""
    request_id = request.get("id") if isinstance(request, dict) else None
    if (
        not isinstance(request, dict)
        or request.get("jsonrpc") != "2.0"
        or not isinstance(request.get("method"), str)
    ):
        return _error(request_id, _invalid_request())
    handler = METHODS.get(request["method"])
    if handler is None:
        return _error(
            request_id, _solders_error(METHOD_NOT_FOUND, MethodNotFoundMessage("Method not found"))
        )
    params = request.get("params", [])
    if params is None:
        params = []
    if not isinstance(params, list):
        return _error(
            request_id, invalid_params("Invalid params: invalid type: map, expected a sequence.")
        )
    try:
        result = handler(net, params)
    except RpcError as exc:
        return _error(request_id, exc)
    except InputError as exc:
        return _error(request_id, invalid_params(f"Invalid params: {exc}"))
    except Exception:
        logger.exception("internal error in %s", request["method"])
        internal = _solders_error(INTERNAL_ERROR, InternalErrorMessage("Internal error"))
        return _error(request_id, internal)
    return {"jsonrpc": "2.0", "result": result, "id": request_id}


def handle(net: Localnet, body: bytes) -> bytes:
    """Answer an HTTP request body: one JSON-RPC request or a batch."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        reply: Any = _error(None, _solders_error(PARSE_ERROR, ParseErrorMessage("Parse error")))
    else:
        if isinstance(request, list):
            reply = (
                [dispatch(net, item) for item in request]
                if request
                else _error(None, _invalid_request())
            )
        else:
            reply = dispatch(net, request)
    return json.dumps(reply, separators=(",", ":")).encode()
