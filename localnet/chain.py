"""The localnet chain: ``Localnet``, one LiteSVM behind a lock, with a cluster's rules.

``Localnet`` owns one ``LiteSVM`` and the lock that serialises every access to it (the
SVM is not safe to share between threads). It adds what LiteSVM leaves to the caller
and a real cluster does on its own:

Slots and clock
    Every transaction that lands (succeeds, or fails after paying its fee) is the only
    transaction of its slot: the slot and block height advance by one after it, and a
    new blockhash is produced. So an Upgrade right after a Deploy is never "in the same
    block". Before every transaction, simulation and account read the Clock sysvar is
    set to wall time (``int(time.time()) + clock_offset_seconds``) with the current
    slot and its epoch, so programs and clients reading the clock see a live chain.

Blockhashes
    LiteSVM only accepts its latest blockhash, which would make a client that fetched a
    blockhash and then sent several transactions with it (concurrently, or one after
    the other) fail with BlockhashNotFound from the second one on. Instead LiteSVM's
    own check is switched off and the localnet keeps Agave's rule: a blockhash stays
    valid while the block height is at most its ``lastValidBlockHeight`` (the height
    when it was produced + 150), which is what ``getLatestBlockhash`` reports; older or
    unknown blockhashes are BlockhashNotFound. Durable-nonce transactions are accepted
    when the nonce account holds their blockhash. LiteSVM's signature history still
    refuses an identical transaction twice (AlreadyProcessed).

Preflight
    ``send_transaction`` verifies signatures and simulates first, as the RPC does unless
    ``skipPreflight``; a transaction that fails there is not executed at all. Without
    preflight a transaction that fails before paying its fee (bad signature, unknown
    blockhash, unfunded payer, duplicate) is dropped, as a real cluster drops it: the
    RPC still returns its signature and its status stays unknown.

Cluster-like mode
    With a ``ClusterBehaviour`` (``localnet.cluster_mode``) transactions arriving through
    ``submit_transaction`` (the RPC's sendTransaction) are queued and land a slot or two
    later on a clock, several to a slot; some are dropped; statuses lag behind. Direct
    calls (``airdrop``, ``deploy_upgradeable``, ``send_transaction``) stay immediate.

History
    The last ``HISTORY_LIMIT`` landed transactions are kept (``LandedTransaction``) for
    getTransaction, getSignaturesForAddress, getSignatureStatuses and
    getRecentPrioritizationFees.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from solders.account import Account
from solders.clock import Clock
from solders.epoch_info import EpochInfo
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.transaction import Transaction, VersionedTransaction
from solders.transaction_metadata import (
    FailedTransactionMetadata,
    SimulatedTransactionInfo,
    TransactionMetadata,
)
from solders.transaction_status import (
    TransactionErrorFieldless,
    TransactionErrorType,
    TransactionReturnData,
)

from core.errors import InputError
from localnet import clone
from localnet.cluster_mode import STATUS_CACHE_SLOTS, ClusterBehaviour
from localnet.errors import (
    LocalnetTransactionError,
    PreflightFailure,
    SignatureVerificationFailure,
    describe,
)
from programs import loader

logger = logging.getLogger("localnet")

# Agave's MAX_PROCESSING_AGE: a blockhash is usable for 150 blocks after its own.
MAX_PROCESSING_AGE = 150
# Nonce account layout: u32 version, u32 state, authority (32), durable nonce (32), ...
_NONCE_ACCOUNT_SIZE = 80
_NONCE_HASH = slice(40, 72)
_ADVANCE_NONCE_TAG = (4).to_bytes(4, "little")
# Landed transactions kept for the history methods; older ones are forgotten.
HISTORY_LIMIT = 100_000
# Agave's PrioritizationFeeCache holds this many recent blocks.
PRIORITIZATION_FEE_SLOTS = 150
_COMPUTE_BUDGET_ID = Pubkey.from_string("ComputeBudget111111111111111111111111111111")
_SET_COMPUTE_UNIT_PRICE = 3


@dataclass(frozen=True)
class TxOutcome:
    """What became of one transaction (sent or simulated)."""

    signature: Signature
    err: TransactionErrorType | None
    logs: list[str]
    units_consumed: int
    fee: int
    # None when the program set none (the RPC then reports null, as Agave does).
    return_data: TransactionReturnData | None
    # The slot it executed in; for a simulation, the slot it was simulated against.
    slot: int
    # True when it was executed in a slot and recorded (succeeded, or failed and paid).
    landed: bool
    # Simulation only: the accounts the transaction touched, as it left them.
    post_accounts: dict[Pubkey, Account] = field(default_factory=dict)
    # Simulation with replace_recent_blockhash: the blockhash used instead.
    replacement_blockhash: tuple[Hash, int] | None = None

    @property
    def ok(self) -> bool:
        return self.err is None


@dataclass(frozen=True)
class SignatureStatus:
    """A landed transaction: its slot and error (None on success)."""

    slot: int
    err: TransactionErrorType | None


@dataclass(frozen=True)
class LandedTransaction:
    """One landed transaction as the history methods report it."""

    signature: Signature
    slot: int
    err: TransactionErrorType | None
    fee: int
    logs: list[str]
    units_consumed: int
    block_time: int
    # None for airdrops, whose transaction LiteSVM builds and keeps to itself.
    transaction: VersionedTransaction | None
    account_keys: tuple[Pubkey, ...]
    writable: frozenset[Pubkey]
    pre_balances: list[int]
    post_balances: list[int]
    # Micro-lamports per compute unit from SetComputeUnitPrice; 0 when none.
    compute_unit_price: int
    # Landed by a direct call: final at once, whatever the mode.
    immediate: bool


def compute_unit_price(tx: VersionedTransaction) -> int:
    """The price a ComputeBudget SetComputeUnitPrice instruction sets (0 without one)."""
    msg = tx.message
    keys = msg.account_keys
    for ix in msg.instructions:
        data = bytes(ix.data)
        if (
            ix.program_id_index < len(keys)
            and keys[ix.program_id_index] == _COMPUTE_BUDGET_ID
            and len(data) == 9
            and data[0] == _SET_COMPUTE_UNIT_PRICE
        ):
            return int.from_bytes(data[1:], "little")
    return 0


def writable_keys(tx: VersionedTransaction) -> frozenset[Pubkey]:
    """The static account keys ``tx`` write-locks (programs it invokes are demoted)."""
    msg = tx.message
    header = msg.header
    keys = msg.account_keys
    signed = header.num_required_signatures
    writable_signed = signed - header.num_readonly_signed_accounts
    writable_end = len(keys) - header.num_readonly_unsigned_accounts
    programs = {ix.program_id_index for ix in msg.instructions}
    return frozenset(
        key
        for index, key in enumerate(keys)
        if (index < writable_signed or signed <= index < writable_end) and index not in programs
    )


def _versioned(tx: Transaction | VersionedTransaction) -> VersionedTransaction:
    return VersionedTransaction.from_legacy(tx) if isinstance(tx, Transaction) else tx


def _with_blockhash(tx: VersionedTransaction, blockhash: Hash) -> VersionedTransaction:
    """The same transaction with another recent blockhash (its signatures no longer match)."""
    msg = tx.message
    if isinstance(msg, MessageV0):
        new_msg: Message | MessageV0 = MessageV0(
            msg.header, msg.account_keys, blockhash, msg.instructions, msg.address_table_lookups
        )
    else:
        new_msg = Message.new_with_compiled_instructions(
            msg.header.num_required_signatures,
            msg.header.num_readonly_signed_accounts,
            msg.header.num_readonly_unsigned_accounts,
            msg.account_keys,
            blockhash,
            msg.instructions,
        )
    return VersionedTransaction.populate(new_msg, tx.signatures)


class Localnet:
    """One LiteSVM chain with a live clock, Agave's blockhash ages and a signature-status
    record. Every method is thread-safe; code that touches ``svm`` directly must hold
    ``lock``."""

    def __init__(
        self,
        behaviour: ClusterBehaviour | None = None,
        *,
        clock_offset_seconds: int = 0,
        max_processing_age: int = MAX_PROCESSING_AGE,
    ) -> None:
        if behaviour is not None and not isinstance(behaviour, ClusterBehaviour):
            raise InputError(f"behaviour must be a ClusterBehaviour or None, got {behaviour!r}")
        self.behaviour = behaviour
        if behaviour is not None:
            max_processing_age = behaviour.max_processing_age
        self._rng = random.Random(behaviour.seed if behaviour is not None else 0)
        # Cluster-like mode: signature -> (landing slot, transaction), in send order.
        self._queue: OrderedDict[Signature, tuple[int, VersionedTransaction]] = OrderedDict()
        self._clock_thread: threading.Thread | None = None
        self._clock_stop = threading.Event()
        self.lock = threading.RLock()
        self.svm = LiteSVM().with_blockhash_check(False)
        # Added to wall time for the Clock sysvar; tests move it to pass timelocks.
        self.clock_offset_seconds = clock_offset_seconds
        self.max_processing_age = max_processing_age
        self._epoch_schedule = self.svm.get_epoch_schedule()
        self._genesis_slot: int = self.svm.get_clock().slot
        self._slot = self._genesis_slot
        self._genesis_hash = self.svm.latest_blockhash()
        self._epoch = -1
        self._epoch_start_timestamp = 0
        self._transaction_count = 0
        # blockhash -> last valid block height, oldest first.
        self._blockhashes: OrderedDict[Hash, int] = OrderedDict()
        # The landed transactions, oldest first (at most HISTORY_LIMIT).
        self._history: OrderedDict[Signature, LandedTransaction] = OrderedDict()
        self._register_blockhash()
        self._sync_clock()
        # RUNBOOKS_SQUADS_SO: the real Squads program at its real id, in every localnet.
        if clone.load_squads_from_env(self):
            logger.info("Squads v4 loaded from RUNBOOKS_SQUADS_SO")

    # --- chain state ------------------------------------------------------------------

    @property
    def slot(self) -> int:
        return self._slot

    @property
    def block_height(self) -> int:
        # One block per slot since genesis: no skipped slots on a localnet.
        return self._slot - self._genesis_slot

    @property
    def genesis_hash(self) -> Hash:
        return self._genesis_hash

    @property
    def transaction_count(self) -> int:
        return self._transaction_count

    def unix_timestamp(self) -> int:
        return int(time.time()) + self.clock_offset_seconds

    def epoch_info(self) -> EpochInfo:
        with self.lock:
            slot = self._slot
            epoch, index = self._epoch_schedule.get_epoch_and_slot_index(slot)
            return EpochInfo(
                epoch=epoch,
                slot_index=index,
                slots_in_epoch=self._epoch_schedule.get_slots_in_epoch(epoch),
                absolute_slot=slot,
                block_height=self.block_height,
                transaction_count=self._transaction_count,
            )

    def latest_blockhash(self) -> tuple[Hash, int]:
        """The newest blockhash and its last valid block height."""
        with self.lock:
            blockhash = self.svm.latest_blockhash()
            return blockhash, self._blockhashes[blockhash]

    def is_blockhash_valid(self, blockhash: Hash) -> bool:
        with self.lock:
            last_valid = self._blockhashes.get(blockhash)
            return last_valid is not None and self.block_height <= last_valid

    def advance_slot(self, slots: int = 1) -> int:
        """Move to a later slot with a fresh blockhash, as if empty blocks were produced."""
        if slots < 1:
            raise InputError(f"slots must be at least 1, got {slots}")
        with self.lock:
            self._slot += slots
            self.svm.expire_blockhash()
            self._register_blockhash()
            self._sync_clock()
            return self._slot

    def _register_blockhash(self) -> None:
        self._blockhashes[self.svm.latest_blockhash()] = self.block_height + self.max_processing_age
        while self._blockhashes:
            oldest, last_valid = next(iter(self._blockhashes.items()))
            if last_valid >= self.block_height:
                break
            del self._blockhashes[oldest]

    def _sync_clock(self) -> None:
        now = self.unix_timestamp()
        epoch, _ = self._epoch_schedule.get_epoch_and_slot_index(self._slot)
        if epoch != self._epoch:
            self._epoch = epoch
            self._epoch_start_timestamp = now
        self.svm.set_clock(
            Clock(
                slot=self._slot,
                epoch_start_timestamp=self._epoch_start_timestamp,
                epoch=epoch,
                leader_schedule_epoch=self._epoch_schedule.get_leader_schedule_epoch(self._slot),
                unix_timestamp=now,
            )
        )

    # --- accounts ---------------------------------------------------------------------

    def get_account(self, pubkey: Pubkey) -> Account | None:
        with self.lock:
            self._sync_clock()  # the Clock sysvar account must read as now
            return self.svm.get_account(pubkey)

    def get_accounts(self, pubkeys: list[Pubkey]) -> list[Account | None]:
        with self.lock:
            self._sync_clock()
            return [self.svm.get_account(pubkey) for pubkey in pubkeys]

    def get_program_accounts(self, program_id: Pubkey) -> list[tuple[Pubkey, Account]]:
        with self.lock:
            return list(self.svm.get_program_accounts(program_id))

    def get_balance(self, pubkey: Pubkey) -> int:
        with self.lock:
            return self.svm.get_balance(pubkey) or 0

    def minimum_balance_for_rent_exemption(self, data_len: int) -> int:
        with self.lock:
            return self.svm.minimum_balance_for_rent_exemption(data_len)

    def signature_status(self, signature: Signature) -> SignatureStatus | None:
        with self.lock:
            landed = self._history.get(signature)
            return None if landed is None else SignatureStatus(landed.slot, landed.err)

    def landed_transaction(self, signature: Signature) -> LandedTransaction | None:
        with self.lock:
            return self._history.get(signature)

    def history(self) -> list[LandedTransaction]:
        """The kept landed transactions, newest first."""
        with self.lock:
            return list(reversed(self._history.values()))

    def commitment_of(self, landed: LandedTransaction) -> tuple[str, int | None]:
        """("processed" | "confirmed" | "finalized", confirmations), as a validator reports
        them: the blocks built on top so far, None once finalized."""
        behaviour = self.behaviour
        if behaviour is None or landed.immediate:
            return "finalized", None
        depth = self._slot - landed.slot
        if depth >= behaviour.finalization_lag_slots:
            return "finalized", None
        if depth >= behaviour.confirmation_lag_slots:
            return "confirmed", depth
        return "processed", depth

    def in_status_cache(self, landed: LandedTransaction) -> bool:
        """Whether a validator's status cache still holds it (cluster-like mode only
        forgets; the instant localnet keeps every status it has)."""
        return self.behaviour is None or self._slot - landed.slot <= STATUS_CACHE_SLOTS

    def prioritization_fees(self, accounts: list[Pubkey]) -> list[tuple[int, int]]:
        """(slot, fee) for up to 150 recent complete slots, oldest first, by Agave's rule:
        the slot's minimum compute-unit price, raised to the highest of the given
        accounts' minimum prices among the slot's transactions that write-lock them."""
        with self.lock:
            first = max(self._genesis_slot, self._slot - PRIORITIZATION_FEE_SLOTS)
            block_min: dict[int, int] = {}
            account_min: dict[tuple[int, Pubkey], int] = {}
            wanted = set(accounts)
            for landed in reversed(self._history.values()):
                if landed.slot < first:
                    break
                if landed.slot >= self._slot or landed.transaction is None:
                    continue  # the current slot is not complete; airdrops are not counted
                price = landed.compute_unit_price
                block_min[landed.slot] = min(price, block_min.get(landed.slot, price))
                for key in landed.writable & wanted:
                    account_min[(landed.slot, key)] = min(
                        price, account_min.get((landed.slot, key), price)
                    )
            fees = []
            for slot in range(first, self._slot):
                fee = block_min.get(slot, 0)
                for key in wanted:
                    fee = max(fee, account_min.get((slot, key), 0))
                fees.append((slot, fee))
            return fees

    def airdrop(self, pubkey: Pubkey, lamports: int) -> Signature:
        """Fund ``pubkey`` from LiteSVM's faucet in a transaction of its own slot."""
        if lamports <= 0:
            raise InputError(f"airdrop lamports must be positive, got {lamports}")
        with self.lock:
            self._sync_clock()
            faucet = self.svm.airdrop_pubkey()
            before = self.svm.get_balance(faucet) or 0
            keys = (faucet, pubkey, SYSTEM_PROGRAM_ID)
            pre_balances = [self.svm.get_balance(key) or 0 for key in keys]
            result = self.svm.airdrop(pubkey, lamports)
            outcome = self._record(
                result,
                faucet,
                before,
                keys=keys,
                pre_balances=pre_balances,
            )
            if not outcome.ok:
                raise LocalnetTransactionError(
                    f"airdrop of {lamports} lamports to {pubkey} failed: {describe(outcome.err)}",
                    err=outcome.err,
                    logs=outcome.logs,
                )
            return outcome.signature

    # --- transactions -----------------------------------------------------------------

    def _blockhash_ok(self, tx: VersionedTransaction) -> bool:
        blockhash = tx.message.recent_blockhash
        if self.is_blockhash_valid(blockhash):
            return True
        # A durable-nonce transaction carries the nonce account's stored hash instead.
        if not tx.uses_durable_nonce():
            return False
        ix = tx.message.instructions[0]
        keys = tx.message.account_keys
        if keys[ix.program_id_index] != SYSTEM_PROGRAM_ID or ix.data[:4] != _ADVANCE_NONCE_TAG:
            return False
        nonce = self.svm.get_account(keys[ix.accounts[0]])
        return (
            nonce is not None
            and nonce.owner == SYSTEM_PROGRAM_ID
            and len(nonce.data) >= _NONCE_ACCOUNT_SIZE
            and bytes(nonce.data[_NONCE_HASH]) == bytes(blockhash)
        )

    def _refused(self, tx: VersionedTransaction, err: TransactionErrorType) -> TxOutcome:
        return TxOutcome(
            signature=tx.signatures[0],
            err=err,
            logs=[],
            units_consumed=0,
            fee=0,
            return_data=None,
            slot=self._slot,
            landed=False,
        )

    @staticmethod
    def _return_data(meta: TransactionMetadata) -> TransactionReturnData | None:
        data = meta.return_data()
        return data if data.data else None

    def _record(
        self,
        result: TransactionMetadata | FailedTransactionMetadata,
        payer: Pubkey,
        payer_before: int,
        signature: Signature | None = None,
        *,
        tx: VersionedTransaction | None = None,
        keys: tuple[Pubkey, ...] = (),
        pre_balances: list[int] | None = None,
        immediate: bool = True,
    ) -> TxOutcome:
        """Turn LiteSVM's result into an outcome; a landed transaction enters the history,
        and (``immediate``: a direct call) closes its slot."""
        if isinstance(result, FailedTransactionMetadata):
            err: TransactionErrorType | None = result.err()
            meta = result.meta()
            # Failures after fee collection land (fee charged); earlier ones are dropped.
            landed = (self.svm.get_balance(payer) or 0) < payer_before
        else:
            err, meta, landed = None, result, True
        # LiteSVM reports a default signature for transactions it refused outright.
        signature = signature if signature is not None else meta.signature()
        slot = self._slot
        if landed:
            if tx is not None:
                keys = tuple(tx.message.account_keys)
            self._history[signature] = LandedTransaction(
                signature=signature,
                slot=slot,
                err=err,
                fee=meta.fee(),
                logs=list(meta.logs()),
                units_consumed=meta.compute_units_consumed(),
                block_time=self.unix_timestamp(),
                transaction=tx,
                account_keys=keys,
                writable=writable_keys(tx) if tx is not None else frozenset(keys[:2]),
                pre_balances=pre_balances or [],
                post_balances=[self.svm.get_balance(key) or 0 for key in keys],
                compute_unit_price=compute_unit_price(tx) if tx is not None else 0,
                immediate=immediate,
            )
            while len(self._history) > HISTORY_LIMIT:
                self._history.popitem(last=False)
            self._transaction_count += 1
            if immediate:
                self.advance_slot()
        return TxOutcome(
            signature=signature,
            err=err,
            logs=list(meta.logs()),
            units_consumed=meta.compute_units_consumed(),
            fee=meta.fee(),
            return_data=self._return_data(meta),
            slot=slot,
            landed=landed,
        )

    def _execute(
        self, tx: VersionedTransaction, *, sig_verify: bool = True, immediate: bool = True
    ) -> TxOutcome:  # lock held
        self._sync_clock()
        if not self._blockhash_ok(tx):
            return self._refused(tx, TransactionErrorFieldless.BlockhashNotFound)
        if tx.signatures[0] in self._history:
            return self._refused(tx, TransactionErrorFieldless.AlreadyProcessed)
        payer = tx.message.account_keys[0]
        pre_balances = [self.svm.get_balance(key) or 0 for key in tx.message.account_keys]
        before = pre_balances[0]
        if sig_verify:
            result = self.svm.send_transaction(tx)
        else:
            self.svm.with_sigverify(False)
            try:
                result = self.svm.send_transaction(tx)
            finally:
                self.svm.with_sigverify(True)
        return self._record(
            result,
            payer,
            before,
            tx.signatures[0],
            tx=tx,
            pre_balances=pre_balances,
            immediate=immediate,
        )

    def simulate_transaction(
        self,
        tx: Transaction | VersionedTransaction,
        *,
        sig_verify: bool = False,
        replace_recent_blockhash: bool = False,
    ) -> TxOutcome:
        """Run ``tx`` against the current state without keeping any change.

        As on the RPC, signatures are only checked with ``sig_verify``, and
        ``replace_recent_blockhash`` swaps in the latest blockhash (which breaks the
        signatures, so the two exclude each other).
        """
        if sig_verify and replace_recent_blockhash:
            raise InputError("sig_verify may not be used with replace_recent_blockhash")
        tx = _versioned(tx)
        with self.lock:
            self._sync_clock()
            replacement = None
            if replace_recent_blockhash:
                replacement = self.latest_blockhash()
                tx = _with_blockhash(tx, replacement[0])
            elif not self._blockhash_ok(tx):
                return self._refused(tx, TransactionErrorFieldless.BlockhashNotFound)
            # LiteSVM skips its duplicate check when sigverify is off, as it is here for
            # the RPC's default sigVerify=false; the status record stands in for it.
            if tx.signatures[0] in self._history:
                return self._refused(tx, TransactionErrorFieldless.AlreadyProcessed)
            self.svm.with_sigverify(sig_verify)
            try:
                result = self.svm.simulate_transaction(tx)
            finally:
                self.svm.with_sigverify(True)
            if isinstance(result, SimulatedTransactionInfo):
                err, post = None, dict(result.post_accounts())
            else:
                err, post = result.err(), {}
            meta = result.meta()
            return TxOutcome(
                signature=tx.signatures[0],
                err=err,
                logs=list(meta.logs()),
                units_consumed=meta.compute_units_consumed(),
                fee=meta.fee(),
                return_data=self._return_data(meta),
                slot=self._slot,
                landed=False,
                post_accounts=post,
                replacement_blockhash=replacement,
            )

    def send_transaction(
        self, tx: Transaction | VersionedTransaction, *, skip_preflight: bool = False
    ) -> TxOutcome:
        """Execute ``tx`` in a slot of its own.

        With preflight (the default) a bad signature raises SignatureVerificationFailure
        and a failing simulation raises PreflightFailure; nothing is executed then.
        Without it the outcome says whether the transaction landed, and with which error.
        """
        tx = _versioned(tx)
        with self.lock:
            if not skip_preflight:
                self._preflight(tx)
            outcome = self._execute(tx)
        if not outcome.landed:
            self._log_dropped(outcome)
        return outcome

    @staticmethod
    def _log_dropped(outcome: TxOutcome) -> None:
        # Not an error on the wire (a cluster drops such transactions silently), so
        # leave a trace for whoever runs the localnet.
        logger.warning("dropped transaction %s: %s", outcome.signature, describe(outcome.err))

    def _preflight(self, tx: VersionedTransaction) -> None:  # lock held
        if not all(tx.verify_with_results()):
            raise SignatureVerificationFailure(
                "Transaction signature verification failure",
                err=TransactionErrorFieldless.SignatureFailure,
            )
        sim = self.simulate_transaction(tx)
        if sim.err is not None:
            raise PreflightFailure(
                f"Transaction simulation failed: {describe(sim.err)}",
                err=sim.err,
                logs=sim.logs,
                units_consumed=sim.units_consumed,
                return_data=sim.return_data,
            )

    def submit_transaction(
        self, tx: Transaction | VersionedTransaction, *, skip_preflight: bool = False
    ) -> Signature:
        """What the RPC's sendTransaction does: ``send_transaction`` on the instant
        localnet; in cluster-like mode preflight now, then queue the transaction to land
        in a later slot, or (``drop_fraction``) drop it silently."""
        behaviour = self.behaviour
        if behaviour is None:
            return self.send_transaction(tx, skip_preflight=skip_preflight).signature
        tx = _versioned(tx)
        signature = tx.signatures[0]
        with self.lock:
            if not skip_preflight:
                self._preflight(tx)
            if signature in self._queue or signature in self._history:
                return signature  # a resend of one already on its way, or landed
            if self._rng.random() < behaviour.drop_fraction:
                logger.info("dropped transaction %s (drop_fraction)", signature)
                return signature
            earliest, latest = behaviour.landing_slots
            self._queue[signature] = (self._slot + self._rng.randint(earliest, latest), tx)
        return signature

    def tick(self) -> int:
        """Cluster-like mode: close the current slot and land the queued transactions due
        in the new one; returns the new slot. The clock thread calls it every slot."""
        with self.lock:
            slot = self.advance_slot()
            due = [sig for sig, (landing, _) in self._queue.items() if landing <= slot]
            for signature in due:
                _, tx = self._queue.pop(signature)
                # A blockhash expired by now, a bad signature or an unfunded payer: dropped.
                outcome = self._execute(tx, immediate=False)
                if not outcome.landed:
                    self._log_dropped(outcome)
            return slot

    def start_clock(self) -> None:
        """Start the slot clock thread (cluster-like mode; nothing to do otherwise)."""
        behaviour = self.behaviour
        if behaviour is None or self._clock_thread is not None:
            return
        self._clock_stop.clear()

        def run() -> None:
            started = time.monotonic()
            ticks = 0
            # Aim at started + n * slot_seconds so slots do not drift with the work done.
            while not self._clock_stop.wait(
                max(0.0, started + (ticks + 1) * behaviour.slot_seconds - time.monotonic())
            ):
                ticks += 1
                try:
                    self.tick()
                except Exception:
                    logger.exception("slot clock: tick failed")

        self._clock_thread = threading.Thread(target=run, name="localnet-slot-clock", daemon=True)
        self._clock_thread.start()

    def stop_clock(self) -> None:
        thread = self._clock_thread
        if thread is None:
            return
        self._clock_stop.set()
        thread.join()
        self._clock_thread = None

    # --- programs ---------------------------------------------------------------------

    def clone_from(
        self,
        url: str,
        *,
        accounts: Iterable[Pubkey | str] = (),
        programs: Iterable[Pubkey | str] = (),
    ) -> list[Pubkey]:
        """Copy ``accounts`` as they are and upgradeable ``programs`` with their ProgramData
        from the cluster at ``url`` (``localnet.clone``); nothing is written on a refusal."""
        return clone.clone_from(self, url, accounts=accounts, programs=programs)

    def _run(self, payer: Keypair, signers: list[Keypair], instructions: list[Instruction]) -> None:
        """Sign with what we hold and execute; a required signer we have no key for (a
        bare program id) is left unsigned and signature checks are skipped for it."""
        with self.lock:
            blockhash, _ = self.latest_blockhash()
            message = Message(instructions, payer.pubkey())
            tx = Transaction.new_unsigned(message)
            tx.partial_sign([payer, *signers], blockhash)
            complete = all(sig != Signature.default() for sig in tx.signatures)
            outcome = self._execute(_versioned(tx), sig_verify=complete)
        if not outcome.ok:
            raise LocalnetTransactionError(
                f"deploy transaction failed: {describe(outcome.err)}",
                err=outcome.err,
                logs=outcome.logs,
            )

    def deploy_upgradeable(
        self,
        program: Keypair | Pubkey,
        elf: bytes,
        authority: Keypair,
        max_data_len: int | None = None,
        *,
        payer: Keypair | None = None,
    ) -> Pubkey:
        """Deploy ``elf`` through the BPF Upgradeable Loader, as ``solana program deploy``
        does: create a buffer, Write it in transaction-sized chunks, DeployWithMaxDataLen.

        ``program`` may be a bare program id (no keypair): the program account's
        signature is then the one thing not checked, so any address can be preloaded,
        like ``solana-test-validator --upgradeable-program``. ``max_data_len`` defaults to
        the ELF's length. The transactions are paid by ``payer``, by default a fresh
        account funded by airdrop, so the authority's balance is untouched. The deploy
        closes its slot, so an upgrade can follow at once.
        """
        program_id = program.pubkey() if isinstance(program, Keypair) else program
        elf = bytes(elf)
        max_len = len(elf) if max_data_len is None else max_data_len
        if not elf:
            raise InputError("the program ELF is empty; pass the bytes of a built .so file")
        if max_len < len(elf):
            raise InputError(
                f"max_data_len {max_len} is smaller than the program ({len(elf)} bytes); "
                "pass at least the ELF length"
            )
        with self.lock:
            if self.svm.get_account(program_id) is not None:
                raise InputError(
                    f"account {program_id} already exists; deploy to a new program id "
                    "or upgrade the existing program"
                )
            rent = self.svm.minimum_balance_for_rent_exemption
            buffer_lamports = rent(loader.BUFFER_METADATA_SIZE + len(elf))
            program_lamports = rent(loader.PROGRAM_ACCOUNT_SIZE)
            programdata_lamports = rent(loader.PROGRAMDATA_METADATA_SIZE + max_len)
            writes = math.ceil(len(elf) / loader.WRITE_CHUNK_SIZE)
            if payer is None:
                payer = Keypair()
                # Fees: at most three signatures of 5,000 lamports per transaction.
                fees = 15_000 * (writes + 2)
                self.airdrop(
                    payer.pubkey(), buffer_lamports + program_lamports + programdata_lamports + fees
                )
            buffer = Keypair()
            self._run(
                payer,
                [buffer],
                loader.create_buffer(
                    payer.pubkey(), buffer.pubkey(), authority.pubkey(), buffer_lamports, len(elf)
                ),
            )
            for offset, chunk in loader.write_chunks(elf):
                self._run(
                    payer,
                    [authority],
                    [loader.write(buffer.pubkey(), authority.pubkey(), offset, chunk)],
                )
            program_signers = [program] if isinstance(program, Keypair) else []
            self._run(
                payer,
                [*program_signers, authority],
                loader.deploy_program(
                    payer.pubkey(),
                    program_id,
                    buffer.pubkey(),
                    authority.pubkey(),
                    program_lamports,
                    max_len,
                ),
            )
        logger.info("deployed %s (%d bytes) at slot %d", program_id, len(elf), self._slot - 1)
        return program_id
