"""The one send-and-confirm path of every chain write.

For a set of instructions (or a batch of sets sent together):

1. **Compute budget.** Simulate with the largest limit (signatures not checked, the
   blockhash replaced) to learn the units consumed; the transaction asks for that times
   ``compute_unit_margin``. A batch simulates its largest set once: the sets of one batch
   are alike (a migrator's accounts), and a set that needs more fails on its own.
2. **Priority fee.** ``getRecentPrioritizationFees`` over the transaction's writable
   accounts; the 75th percentile of the recent slots' fees, capped by
   ``max_priority_fee`` (micro-lamports per compute unit; 0 pays none).
3. **Write-ahead.** Each signed transaction's signature, wire bytes and
   ``lastValidBlockHeight`` go to the journal before it is first sent, so after any crash
   the records hold every signature that may land.
4. **Send and confirm.** The first send runs the RPC's preflight (a refusal names the
   program's logs and nothing lands); until the transaction is seen at ``commitment`` it
   is sent again every ``resend_seconds`` (a cluster drops transactions silently), as
   long as the block height has not passed its ``lastValidBlockHeight``. After that it
   can never land: the journal says ``expired`` and ``TransactionExpired`` tells the
   caller to read the chain before signing anew.

Before a journalled send, what the journal holds unsettled from an earlier attempt (a
killed run) is settled first: resent while its blockhash is valid, then recorded as
landed, failed or expired. A single write whose earlier attempt landed is not sent again:
its signature is returned.

Plain async functions over solana-py's ``AsyncClient``; no Prefect, no database: the
journal is a protocol the caller implements (``tasks.chain`` writes it to the records).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import httpx2
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Commitment
from solana.rpc.core import RPCException
from solana.rpc.models import TxOpts
from solders.compute_budget import ID as COMPUTE_BUDGET_ID
from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction, VersionedTransaction
from solders.transaction_status import TransactionConfirmationStatus, TransactionStatus

from core.errors import ChainError, InputError, TransactionExpired, TransactionFailed
from programs import loader
from programs.rpc import already_processed, transaction_failed

# The runtime's ceiling for one transaction.
MAX_COMPUTE_UNITS = 1_400_000
# getRecentPrioritizationFees takes at most 128 addresses.
FEE_ACCOUNTS_LIMIT = 128
# getSignatureStatuses answers for at most 256 signatures per call.
STATUS_LIMIT = 256
POLL_SECONDS = 0.2

Settlement = Literal["landed", "failed", "expired", "refused"]
_RANK = {"processed": 0, "confirmed": 1, "finalized": 2}


@dataclass(frozen=True)
class SendOptions:
    """How a write is sent: the cluster block fills these (``tasks.chain.send_options``)."""

    commitment: str = "confirmed"
    max_priority_fee: int = 100_000  # micro-lamports per compute unit; 0: no fee
    compute_unit_margin: float = 1.2
    resend_seconds: float = 2.0
    # A safety net only: expiry ends a wait long before this on a live cluster.
    timeout_seconds: float = 180.0

    def __post_init__(self) -> None:
        if self.commitment not in _RANK:
            raise InputError(
                f"commitment {self.commitment!r} is not processed, confirmed or finalized"
            )
        if self.max_priority_fee < 0:
            raise InputError("max_priority_fee must be 0 or more micro-lamports per unit")
        if not 1.0 <= self.compute_unit_margin <= 4.0:
            raise InputError("compute_unit_margin must be between 1.0 and 4.0")


@dataclass(frozen=True)
class Signed:
    """A signed transaction as the journal keeps it: enough to resend it after a crash."""

    signature: str
    wire: str  # base64 of the serialized transaction
    last_valid_block_height: int

    @classmethod
    def of(cls, tx: Transaction, last_valid_block_height: int) -> Signed:
        return cls(
            str(tx.signatures[0]), base64.b64encode(bytes(tx)).decode(), last_valid_block_height
        )

    def transaction(self) -> Transaction:
        return Transaction.from_bytes(base64.b64decode(self.wire))


@dataclass(frozen=True)
class Outcome:
    """What became of one transaction: landed (``error`` None) or why not."""

    signature: str
    error: str | None = None
    logs: tuple[str, ...] = ()
    refused: bool = False  # refused by preflight: it never landed, no fee was paid
    expired: bool = False  # its blockhash expired unseen: it never can land

    @property
    def landed(self) -> bool:
        return self.error is None


class Signer(Protocol):
    """What signs a transaction: a Keypair, or a key on a Ledger (``programs.ledger``)."""

    def pubkey(self) -> Pubkey: ...

    def sign_message(self, message: bytes) -> Signature: ...


class Journal(Protocol):
    """Where signatures are written ahead of sending, and settled afterwards."""

    def unsettled(self) -> Sequence[Signed]:
        """Signatures written ahead by an earlier attempt and never settled."""
        ...

    def landed(self) -> Sequence[str]:
        """Signatures of this purpose settled as landed, oldest first."""
        ...

    def write_ahead(self, signed: Sequence[Signed]) -> None:
        """Record ``signed`` durably; called before any of them is sent."""
        ...

    def settle(self, signature: str, status: Settlement, error: str | None = None) -> None: ...

    # Optional: ``settle_many(settlements: Sequence[tuple[str, Settlement, str | None]])``
    # settles a confirmation round's signatures in one write; without it, ``settle`` is
    # called per signature.


async def _settle_all(
    journal: Journal | None, settlements: Sequence[tuple[str, Settlement, str | None]]
) -> None:
    """Settle in the journal, in a thread: a records commit must not stall the other
    sends and confirmations on this event loop."""
    if journal is None or not settlements:
        return
    bulk = getattr(journal, "settle_many", None)
    if bulk is not None:
        await asyncio.to_thread(bulk, settlements)
    else:

        def each() -> None:
            for signature, status, error in settlements:
                journal.settle(signature, status, error)

        await asyncio.to_thread(each)


async def send_and_confirm(
    client: AsyncClient,
    instructions: Sequence[Instruction],
    payer: Keypair | Signer,
    signers: Sequence[Keypair] = (),
    *,
    options: SendOptions | None = None,
    journal: Journal | None = None,
) -> Signature:
    """Send one write and wait until it is confirmed; its signature.

    With a journal, an earlier attempt that landed is the write: its signature is
    returned and nothing is sent. A refusal raises TransactionFailed with the program's
    logs; a transaction that can no longer land raises TransactionExpired.
    """
    opts = options or SendOptions()
    if journal is not None:
        await settle_unsettled(client, journal, opts)
        landed = journal.landed()
        if landed:
            return Signature.from_string(landed[-1])
    (outcome,) = await send_batch(
        client, [instructions], payer, signers, options=opts, journal=journal
    )
    if not outcome.landed:
        raise TransactionFailed(outcome.error or "transaction failed", list(outcome.logs))
    return Signature.from_string(outcome.signature)


async def send_batch(
    client: AsyncClient,
    instruction_sets: Sequence[Sequence[Instruction]],
    payer: Keypair | Signer,
    signers: Sequence[Keypair] = (),
    *,
    options: SendOptions | None = None,
    journal: Journal | None = None,
    concurrency: int = 16,
    preflight: bool = True,
    send_gate: asyncio.Lock | None = None,
) -> list[Outcome]:
    """One transaction per instruction set, under one blockhash, sent concurrently and
    confirmed together; an outcome for each, in order.

    ``preflight`` False skips the RPC's per-transaction simulation (the batch's own
    simulation has checked its largest set): a failure then lands, as an outcome.

    ``send_gate``, shared by batches running side by side, is held from the blockhash
    read to the first sends: a batch's blockhash then ages only by the batches sent
    before it, not by every batch sending while it signs and writes ahead (a blockhash
    is good for 150 blocks; the localnet makes each transaction a block).

    Refused and failed transactions are outcomes, not errors. If any expired,
    TransactionExpired is raised after every other one was settled in the journal.
    """
    opts = options or SendOptions()
    if not instruction_sets:
        return []
    # Keypair.pubkey() derives the key anew on every call (~60 us): once per batch.
    keys: dict[Pubkey, Keypair | Signer] = {k.pubkey(): k for k in (payer, *signers)}
    payer_key = payer.pubkey()
    largest = max(instruction_sets, key=len)
    units = await simulate_units(client, largest, payer)
    limit = min(MAX_COMPUTE_UNITS, math.ceil(units * opts.compute_unit_margin) + 300)
    price = await priority_fee(client, _writable(largest, payer.pubkey()), opts.max_priority_fee)
    budget = [set_compute_unit_limit(limit)]
    if price:
        budget.append(set_compute_unit_price(price))
    gate = asyncio.Semaphore(concurrency)

    async def first_send(tx: Transaction) -> Outcome | None:
        async with gate:
            return await _send(client, tx, preflight=preflight, commitment=opts.commitment)

    async with send_gate or contextlib.nullcontext():
        blockhash, last_valid = await _latest_blockhash(client, opts)
        txs = [
            sign_transaction([*budget, *_without_budget(ixs)], payer_key, keys, blockhash)
            for ixs in instruction_sets
        ]
        signed = [Signed.of(tx, last_valid) for tx in txs]
        if journal is not None:
            await asyncio.to_thread(journal.write_ahead, signed)
        if preflight:
            refusals: list[Outcome | None] = list(
                await asyncio.gather(*(first_send(tx) for tx in txs))
            )
        else:
            await _send_unchecked(client, txs)
            refusals = [None] * len(txs)
    outcomes: dict[str, Outcome] = {}
    refused: list[tuple[str, Settlement, str | None]] = []
    for item, refusal in zip(signed, refusals, strict=True):
        if refusal is not None:
            outcomes[item.signature] = refusal
            refused.append((item.signature, "refused", refusal.error))
    await _settle_all(journal, refused)
    live = [item for item in signed if item.signature not in outcomes]
    outcomes.update(await confirm(client, live, opts, journal=journal))
    _raise_if_expired(outcomes.values())
    return [outcomes[item.signature] for item in signed]


async def settle_unsettled(
    client: AsyncClient, journal: Journal, options: SendOptions | None = None
) -> list[Outcome]:
    """Settle what an earlier attempt wrote ahead: resend what may still land, wait, and
    record each as landed, failed or expired. Returns the outcomes (expired included)."""
    pending = list(await asyncio.to_thread(journal.unsettled))
    if not pending:
        return []
    opts = options or SendOptions()
    outcomes = await confirm(client, pending, opts, journal=journal, resend_first=True)
    return [outcomes[item.signature] for item in pending]


async def confirm(
    client: AsyncClient,
    pending: Sequence[Signed],
    options: SendOptions,
    *,
    journal: Journal | None = None,
    resend_first: bool = False,
) -> dict[str, Outcome]:
    """Wait until each transaction is seen at ``options.commitment``, resending the
    unseen ones every ``resend_seconds`` until their blockhash expires."""
    wanted = _RANK[options.commitment]
    waiting = {item.signature: item for item in pending}
    outcomes: dict[str, Outcome] = {}
    last_send = 0.0 if resend_first else time.monotonic()
    deadline = time.monotonic() + options.timeout_seconds
    while waiting:
        unseen: list[Signed] = []
        settled: list[tuple[str, Settlement, str | None]] = []
        for item, status in await _statuses(client, list(waiting.values())):
            if status is None:
                unseen.append(item)
            elif _rank(status.confirmation_status) >= wanted:
                error = None if status.err is None else f"transaction failed: {status.err}"
                outcomes[item.signature] = Outcome(item.signature, error)
                del waiting[item.signature]
                settled.append((item.signature, "landed" if error is None else "failed", error))
        # One journal write per round: a batch's transactions mostly confirm together.
        await _settle_all(journal, settled)
        if unseen:
            height = (await client.get_block_height(commitment=options.commitment)).value
            for item in [i for i in unseen if i.last_valid_block_height < height]:
                # Past its last valid block height, a transaction can never land; one more
                # status read closes the gap between that read and this one.
                (late,) = await _statuses(client, [item])
                if late[1] is not None:
                    continue
                error = (
                    f"transaction {item.signature} expired: not seen by block height "
                    f"{item.last_valid_block_height}"
                )
                outcomes[item.signature] = Outcome(item.signature, error, expired=True)
                del waiting[item.signature]
                await _settle_all(journal, [(item.signature, "expired", error)])
            if time.monotonic() - last_send >= options.resend_seconds:
                last_send = time.monotonic()
                for item in unseen:
                    if item.signature in waiting:
                        await _send(client, item.transaction(), preflight=False)
        if not waiting:
            break
        if time.monotonic() > deadline:
            first = next(iter(waiting))
            raise ChainError(
                f"{len(waiting)} transaction(s) not confirmed after "
                f"{options.timeout_seconds:.0f} s (first: {first}); the journal keeps their "
                "signatures: a rerun settles them before sending anything"
            )
        await asyncio.sleep(POLL_SECONDS)
    return outcomes


async def simulate_units(
    client: AsyncClient, instructions: Sequence[Instruction], payer: Keypair | Signer
) -> int:
    """Compute units ``instructions`` consume, from a simulation under the largest limit;
    TransactionFailed (with the logs) when the simulation fails."""
    ixs = [set_compute_unit_limit(MAX_COMPUTE_UNITS), *_without_budget(instructions)]
    message = Message(ixs, payer.pubkey())
    # Unsigned: the simulation checks no signature and replaces the blockhash.
    unsigned = [Signature.default()] * message.header.num_required_signatures
    tx = VersionedTransaction.populate(message, unsigned)
    resp = await client.simulate_transaction(tx, replace_recent_blockhash=True)
    result = resp.value
    if result.err is not None:
        raise TransactionFailed(
            f"transaction refused: Transaction simulation failed: {result.err}",
            list(result.logs or []),
        )
    return int(result.units_consumed or 0)


async def priority_fee(client: AsyncClient, writable: Sequence[Pubkey], cap: int) -> int:
    """The 75th percentile of recent prioritization fees for ``writable``, capped at
    ``cap`` micro-lamports per compute unit (0 asks nothing of the RPC)."""
    if cap <= 0:
        return 0
    try:
        resp = await client.get_recent_prioritization_fees(list(writable)[:FEE_ACCOUNTS_LIMIT])
    except RPCException:
        # An endpoint that does not offer the method (some private RPCs) gives no fee
        # data: pay none rather than guess.
        return 0
    fees = sorted(entry.prioritization_fee for entry in resp.value)
    if not fees:
        return 0
    return min(cap, fees[min(len(fees) - 1, (len(fees) * 3) // 4)])


def _raise_if_expired(outcomes: Iterable[Outcome]) -> None:
    expired = [o for o in outcomes if o.expired]
    if expired:
        raise TransactionExpired(
            f"{len(expired)} transaction(s) expired before landing (first: "
            f"{expired[0].signature}); read the chain, then sign again"
        )


def _send_opts(preflight: bool, commitment: str) -> TxOpts:
    # max_retries 0: this module resends itself, and stops at expiry. Preflight runs
    # against the commitment the write is confirmed at (solana-py's default, finalized,
    # would not see an account created a moment ago).
    return TxOpts(
        skip_preflight=not preflight,
        preflight_commitment=Commitment(commitment),
        max_retries=0,
    )


async def _send(
    client: AsyncClient, tx: Transaction, *, preflight: bool, commitment: str = "confirmed"
) -> Outcome | None:
    """Send once; an Outcome only when preflight refused it (it will never land)."""
    try:
        await client.send_transaction(tx, opts=_send_opts(preflight, commitment))
    except RPCException as exc:
        if already_processed(exc) or not preflight:
            return None
        failure = transaction_failed(exc)
        return Outcome(str(tx.signatures[0]), str(failure), tuple(failure.logs), refused=True)
    return None


# Transactions per JSON-RPC batch request of unchecked sends.
SEND_BATCH_SIZE = 64


async def _send_unchecked(client: AsyncClient, txs: Sequence[Transaction]) -> None:
    """Send ``txs`` without preflight, many to a JSON-RPC batch request: one HTTP round
    trip per batch instead of per transaction. Answers are not read (the confirmation
    decides); an endpoint that refuses batches gets one request per transaction."""
    provider = client._provider  # solana-py has no batch call; rpc_transport uses it too

    async def post(chunk: Sequence[Transaction]) -> None:
        body = json.dumps(
            [
                {
                    "jsonrpc": "2.0",
                    "id": i,
                    "method": "sendTransaction",
                    "params": [
                        base64.b64encode(bytes(tx)).decode(),
                        {"encoding": "base64", "skipPreflight": True, "maxRetries": 0},
                    ],
                }
                for i, tx in enumerate(chunk)
            ]
        )
        reply: object = None
        try:
            response = await provider.session.post(
                provider.endpoint_uri, content=body, headers={"Content-Type": "application/json"}
            )
            if response.status_code == 200:
                reply = response.json()
        except (httpx2.HTTPError, ValueError):
            reply = None
        if not isinstance(reply, list):
            for tx in chunk:
                await _send(client, tx, preflight=False)

    await asyncio.gather(
        *(post(txs[i : i + SEND_BATCH_SIZE]) for i in range(0, len(txs), SEND_BATCH_SIZE))
    )


async def _statuses(
    client: AsyncClient, items: Sequence[Signed]
) -> list[tuple[Signed, TransactionStatus | None]]:
    answers: list[tuple[Signed, TransactionStatus | None]] = []
    for start in range(0, len(items), STATUS_LIMIT):
        chunk = items[start : start + STATUS_LIMIT]
        sigs = [Signature.from_string(i.signature) for i in chunk]
        statuses = (
            await client.get_signature_statuses(sigs, search_transaction_history=True)
        ).value
        answers += zip(chunk, statuses, strict=True)
    return answers


async def _latest_blockhash(client: AsyncClient, options: SendOptions) -> tuple[Hash, int]:
    value = (await client.get_latest_blockhash(commitment=_commitment(options))).value
    return value.blockhash, value.last_valid_block_height


def _commitment(options: SendOptions) -> Commitment:
    return Commitment(options.commitment)


def _rank(status: TransactionConfirmationStatus | None) -> int:
    if status is None:
        return -1
    return _RANK[str(status).rsplit(".", 1)[-1].lower()]


def _without_budget(instructions: Sequence[Instruction]) -> list[Instruction]:
    """The caller's instructions without compute-budget ones: the limit and price are
    this module's to set."""
    return [ix for ix in instructions if ix.program_id != COMPUTE_BUDGET_ID]


def _writable(instructions: Sequence[Instruction], payer: Pubkey) -> list[Pubkey]:
    keys = {payer: None}
    for ix in instructions:
        for meta in ix.accounts:
            if meta.is_writable:
                keys[meta.pubkey] = None
    return list(keys)


def sign_transaction(
    instructions: Sequence[Instruction],
    payer: Pubkey,
    keys: Mapping[Pubkey, Keypair | Signer],
    blockhash: Hash,
) -> Transaction:
    """``instructions`` paid by ``payer``, signed by the keys of ``keys`` its message asks
    for: ``Transaction.new_signed_with_payer``'s transaction, without its re-derivation of
    every signer's public key (most of the cost of a Write). InputError when a signer the
    message needs is not in ``keys``."""
    message = Message.new_with_blockhash(instructions, payer, blockhash)
    wanted = message.account_keys[: message.header.num_required_signatures]
    missing = [str(key) for key in wanted if key not in keys]
    if missing:
        raise InputError(f"no keypair to sign for {', '.join(missing)}")
    signable = bytes(message)
    return Transaction.populate(message, [keys[key].sign_message(signable) for key in wanted])


# A blockhash lands transactions for 150 blocks; send in waves well inside that, each
# under a fresh blockhash, as `solana program write-buffer` refreshes its own.
WRITES_PER_BLOCKHASH = 128
# Writes in flight at once: each is small, and the RPC answers a send before it lands.
WRITE_CONCURRENCY = 32


async def write_buffer(
    client: AsyncClient,
    payer: Keypair,
    buffer: Keypair,
    authority: Keypair,
    elf: bytes,
    *,
    options: SendOptions | None = None,
    journal: Journal | None = None,
    write_journal: Journal | None = None,
) -> Pubkey:
    """Create a buffer and write ``elf`` into it, as `solana program write-buffer` does.

    ``journal`` takes the create, ``write_journal`` (default: ``journal``) the Writes.
    """
    await create_buffer(client, payer, buffer, authority.pubkey(), len(elf), options, journal)
    # A new buffer holds zeros: no read-back needed, and zero chunks need no Write.
    await write_missing(
        client,
        payer,
        buffer.pubkey(),
        authority,
        elf,
        current=bytes(len(elf)),
        options=options,
        journal=write_journal or journal,
    )
    return buffer.pubkey()


async def create_buffer(
    client: AsyncClient,
    payer: Keypair,
    buffer: Keypair,
    authority: Pubkey,
    size: int,
    options: SendOptions | None = None,
    journal: Journal | None = None,
) -> Signature:
    """Create and initialize a rent-exempt buffer of ``size`` program bytes."""
    rent = await client.get_minimum_balance_for_rent_exemption(loader.BUFFER_METADATA_SIZE + size)
    create = loader.create_buffer(payer.pubkey(), buffer.pubkey(), authority, rent.value, size)
    return await send_and_confirm(client, create, payer, [buffer], options=options, journal=journal)


async def write_missing(
    client: AsyncClient,
    payer: Keypair,
    buffer: Pubkey,
    authority: Keypair,
    elf: bytes,
    *,
    current: bytes | None = None,
    options: SendOptions | None = None,
    journal: Journal | None = None,
) -> int:
    """Write the chunks of ``elf`` whose bytes differ from the buffer's; how many were sent.

    ``current``: the buffer's program bytes when known (else read back), so a buffer
    half-written by a killed run gets only what it lacks. Chunks go out concurrently
    (each Write names its own offset, so order does not matter) in waves of
    ``WRITES_PER_BLOCKHASH``, each wave under a fresh blockhash.
    """
    if current is None:
        resp = await client.get_account_info(
            buffer, commitment=_commitment(options or SendOptions())
        )
        if resp.value is None:
            raise ChainError(f"buffer {buffer} does not exist; create it before writing")
        current = loader.program_bytes(bytes(resp.value.data))
    if len(current) < len(elf):
        raise ChainError(
            f"buffer {buffer} holds {len(current)} program bytes, fewer than the "
            f"{len(elf)} to write; write a new buffer"
        )
    writer = authority.pubkey()
    writes = [
        [loader.write(buffer, writer, offset, chunk)]
        for offset, chunk in loader.write_chunks(elf)
        if current[offset : offset + len(chunk)] != chunk
    ]
    for start in range(0, len(writes), WRITES_PER_BLOCKHASH):
        wave = writes[start : start + WRITES_PER_BLOCKHASH]
        outcomes = await send_batch(
            client,
            wave,
            payer,
            [authority],
            options=options,
            journal=journal,
            concurrency=WRITE_CONCURRENCY,
            # The wave's simulation checked a Write; a preflight per chunk doubles the work.
            preflight=False,
        )
        failed = [o for o in outcomes if not o.landed]
        if failed:
            raise TransactionFailed(
                f"{len(failed)} Write transaction(s) to buffer {buffer} failed "
                f"(first: {failed[0].error})",
                list(failed[0].logs),
            )
    return len(writes)
