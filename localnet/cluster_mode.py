"""The localnet's opt-in cluster-like mode: ``ClusterBehaviour`` and what it needs.

By default the localnet is instant: each landed transaction gets a slot of its own and
every status is "finalized" at once. With a ``ClusterBehaviour`` (``Localnet(behaviour=
...)``, ``LocalnetServer(..., behaviour=...)``, ``python -m localnet --cluster-like``) it
behaves the way runbooks meet a real cluster:

- slots advance on a clock thread (``slot_seconds`` each), with one new blockhash and one
  block more per slot and as many transactions per slot as land in it;
- a transaction accepted by ``sendTransaction`` lands ``landing_slots`` later (chosen by a
  seeded RNG), or never: ``drop_fraction`` of them are silently dropped (the signature
  is returned, the status stays null; a resend of the same bytes may land), and a queued
  one whose blockhash expired by its landing slot is dropped too;
- a landed transaction's status is "processed", then "confirmed" after
  ``confirmation_lag_slots``, then "finalized" after ``finalization_lag_slots``;
  ``getSignatureStatuses`` without ``searchTransactionHistory`` only knows the recent
  slots a validator's status cache holds;
- blockhashes expire after ``max_processing_age`` blocks;
- the server answers at most ``requests_per_second`` requests (a token bucket over all of
  them); above it HTTP 429 with ``Retry-After`` and a JSON-RPC error body;
- a ``getProgramAccounts`` whose account data (after ``dataSlice``) would exceed
  ``program_accounts_max_bytes`` is refused, as providers refuse oversized scans.

Limits: preflight (the simulation at send time) runs against the latest state as
before; account reads return the latest state whatever commitment is asked for (there
are no forks, so "processed" state is what will be finalized); internal calls
(``airdrop``, ``deploy_upgradeable``, ``send_transaction``, ``svm.set_account`` and the
other ``Localnet`` methods tests set up state with) land at once in a slot of their own
and are final at once, as in the default mode; ``Localnet.tick()`` moves the clock by
hand (tests hold it still with a long ``slot_seconds``).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from core.errors import InputError

# Agave's status cache keeps the signatures of the last MAX_CACHE_ENTRIES (300) roots;
# getSignatureStatuses without searchTransactionHistory looks no further back.
STATUS_CACHE_SLOTS = 300


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(
            f"ClusterBehaviour.{name}: expected a whole number >= {minimum}, got {value!r}"
        )
    return value


def _check_float(name: str, value: object, low: float, high: float, *, low_open: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"ClusterBehaviour.{name}: expected a number, got {value!r}")
    if value > high or value < low or (low_open and value == low):
        bound = f"> {low}" if low_open else f">= {low}"
        raise InputError(
            f"ClusterBehaviour.{name}: expected a number {bound} and <= {high}, got {value!r}"
        )
    return float(value)


@dataclass(frozen=True)
class ClusterBehaviour:
    """How far the localnet imitates a cluster; every field is checked on creation."""

    slot_seconds: float = 0.4
    landing_slots: tuple[int, int] = (1, 2)
    confirmation_lag_slots: int = 1
    finalization_lag_slots: int = 32
    max_processing_age: int = 150
    drop_fraction: float = 0.05
    requests_per_second: float = 100.0
    program_accounts_max_bytes: int = 1_000_000
    seed: int = 0

    def __post_init__(self) -> None:
        # Up to an hour: tests hold the clock still and move it with Localnet.tick().
        _check_float("slot_seconds", self.slot_seconds, 0.0, 3600.0, low_open=True)
        landing = self.landing_slots
        if (
            not isinstance(landing, tuple)
            or len(landing) != 2
            or any(isinstance(n, bool) or not isinstance(n, int) for n in landing)
            or not 1 <= landing[0] <= landing[1] <= 150
        ):
            raise InputError(
                f"ClusterBehaviour.landing_slots: expected (earliest, latest) whole numbers "
                f"with 1 <= earliest <= latest <= 150, got {landing!r}"
            )
        _check_int("confirmation_lag_slots", self.confirmation_lag_slots, 0)
        _check_int("finalization_lag_slots", self.finalization_lag_slots, 0)
        if self.finalization_lag_slots < self.confirmation_lag_slots:
            raise InputError(
                f"ClusterBehaviour.finalization_lag_slots ({self.finalization_lag_slots}) is "
                f"below confirmation_lag_slots ({self.confirmation_lag_slots}); a transaction "
                "is confirmed before it is finalized"
            )
        _check_int("max_processing_age", self.max_processing_age, 1)
        _check_float("drop_fraction", self.drop_fraction, 0.0, 1.0, low_open=False)
        _check_float("requests_per_second", self.requests_per_second, 0.0, 1e6, low_open=True)
        _check_int("program_accounts_max_bytes", self.program_accounts_max_bytes, 0)
        _check_int("seed", self.seed, 0)


class TokenBucket:
    """A rate limit of ``rate`` requests a second with a burst of one second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self._tokens = self.capacity
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> float | None:
        """Take a token: None when allowed, else the seconds until one is free."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return None
            return (1.0 - self._tokens) / self.rate


def retry_after_header(wait_seconds: float) -> str:
    # Retry-After takes whole seconds; round up so a client that honours it gets a token.
    return str(max(1, math.ceil(wait_seconds)))
