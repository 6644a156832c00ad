"""Squads v4 accounts, serialized by the official SDK (tests/squads_sdk.py), written into a
localnet owned by the Squads program id, as the program itself would have left them.

The Squads program binary is not on these machines, so the accounts are placed rather
than created through it; ``RUNBOOKS_SQUADS_SO`` names a dump of it where one exists.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from solders.account import Account
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from localnet import Localnet
from programs.squads import client as squads
from tests.squads_sdk import sdk

SQUADS_SO_ENV = "RUNBOOKS_SQUADS_SO"
HOW_TO_GET = (
    "the Squads v4 program binary is not here: set RUNBOOKS_SQUADS_SO to a dump of it "
    "(`solana program dump -u m SQDS4ep65T869zMMBKyuUq6aD6EgTu8psMjkvj52pCf squads.so`)"
)
RENT = 10**8


def squads_binary() -> bytes:
    """The real Squads program (RUNBOOKS_SQUADS_SO), or skip saying how to get it."""
    path = os.environ.get(SQUADS_SO_ENV, "").strip()
    if not path or not Path(path).is_file():
        pytest.skip(HOW_TO_GET)
    return Path(path).read_bytes()


@dataclass
class PlacedMultisig:
    """A multisig placed in a localnet; ``put`` rewrites it and its proposals."""

    net: Localnet
    create_key: Pubkey
    members: list[tuple[Pubkey, int]]
    threshold: int = 2
    time_lock: int = 0
    config_authority: Pubkey = field(default_factory=Pubkey.default)
    rent_collector: Pubkey | None = None
    transaction_index: int = 0
    stale_transaction_index: int = 0
    _staged: list[tuple[Pubkey, dict[str, Any]]] = field(default_factory=list)

    @property
    def address(self) -> Pubkey:
        return squads.multisig_pda(self.create_key)[0]

    def fields(self) -> dict[str, Any]:
        return {
            "createKey": str(self.create_key),
            "configAuthority": str(self.config_authority),
            "threshold": self.threshold,
            "timeLock": self.time_lock,
            "transactionIndex": str(self.transaction_index),
            "staleTransactionIndex": str(self.stale_transaction_index),
            "rentCollector": None if self.rent_collector is None else str(self.rent_collector),
            "bump": squads.multisig_pda(self.create_key)[1],
            "members": [{"key": str(k), "permissions": p} for k, p in self.members],
        }

    def put(self) -> None:
        """Write the Multisig and every staged Proposal: one run of the SDK for all."""
        staged, self._staged = self._staged, []
        ops = [{"op": "serialize", "account": "Multisig", "fields": self.fields()}]
        ops += [{"op": "serialize", "account": "Proposal", "fields": f} for _, f in staged]
        raws = sdk(ops)
        _place(self.net, self.address, bytes.fromhex(raws[0]))
        for (address, _), raw in zip(staged, raws[1:], strict=True):
            _place(self.net, address, bytes.fromhex(raw))

    def stage_proposal(
        self,
        index: int,
        kind: str,
        timestamp: int,
        approved: Sequence[Pubkey] = (),
        rejected: Sequence[Pubkey] = (),
        cancelled: Sequence[Pubkey] = (),
    ) -> Pubkey:
        """A Proposal (and the multisig's transaction index past it) for the next ``put``."""
        address, bump = squads.proposal_pda(self.address, index)
        fields = {
            "multisig": str(self.address),
            "transactionIndex": str(index),
            "status": {"kind": kind, "timestamp": str(timestamp)},
            "bump": bump,
            "approved": [str(k) for k in approved],
            "rejected": [str(k) for k in rejected],
            "cancelled": [str(k) for k in cancelled],
        }
        self._staged.append((address, fields))
        self.transaction_index = max(self.transaction_index, index)
        return address

    def put_proposal(self, index: int, kind: str, timestamp: int, **votes: Any) -> Pubkey:
        address = self.stage_proposal(index, kind, timestamp, **votes)
        self.put()
        return address


def _place(net: Localnet, address: Pubkey, data: bytes) -> None:
    with net.lock:  # the localnet's rule for touching its svm directly
        net.svm.set_account(address, Account(RENT, data, squads.PROGRAM_ID, False, 0))


def place_multisig(
    net: Localnet, members: Sequence[tuple[Keypair | Pubkey, int]], **kwargs: Any
) -> PlacedMultisig:
    """A new multisig of ``members`` (key, permissions mask), not yet written: stage its
    proposals, then ``put``."""
    keys = [(m.pubkey() if isinstance(m, Keypair) else m, p) for m, p in members]
    return PlacedMultisig(net, Keypair().pubkey(), keys, **kwargs)


def message_fields(message: squads.VaultTransactionMessage) -> dict[str, Any]:
    """A compiled vault message in the SDK's field names (no address lookup tables)."""
    return {
        "numSigners": message.num_signers,
        "numWritableSigners": message.num_writable_signers,
        "numWritableNonSigners": message.num_writable_non_signers,
        "accountKeys": [str(k) for k in message.account_keys],
        "instructions": [
            {
                "programIdIndex": i.program_id_index,
                "accountIndexes": i.account_indexes.hex(),
                "data": i.data.hex(),
            }
            for i in message.instructions
        ],
        "addressTableLookups": [],
    }


def place_vault_transaction(
    net: Localnet,
    multisig: Pubkey,
    index: int,
    creator: Pubkey,
    message: squads.VaultTransactionMessage,
) -> bytes:
    """The VaultTransaction of ``index`` (vault 0) as the SDK serializes it, written at its
    PDA; its bytes."""
    fields = {
        "multisig": str(multisig),
        "creator": str(creator),
        "index": str(index),
        "bump": squads.transaction_pda(multisig, index)[1],
        "vaultIndex": 0,
        "vaultBump": squads.vault_pda(multisig, 0)[1],
        "ephemeralSignerBumps": "",
        "message": message_fields(message),
    }
    (raw,) = sdk([{"op": "serialize", "account": "VaultTransaction", "fields": fields}])
    _place(net, squads.transaction_pda(multisig, index)[0], bytes.fromhex(raw))
    return bytes.fromhex(raw)


def approve_command(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:
    """Run ``runbooks squads approve``: its exit code, its ``key: value`` lines, all output."""
    from runbooks.cli import main as runbooks_cli

    capsys.readouterr()
    rc = runbooks_cli(["squads", "approve", *argv])
    out, err = capsys.readouterr()
    printed = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return rc, {k: v.strip() for k, v in printed.items()}, out + err


def vote_args(url: str, placed: PlacedMultisig, index: int) -> list[str]:
    """The options naming the cluster, the multisig and the proposal to vote on."""
    return ["--url", url, "--multisig", str(placed.address), "--transaction-index", str(index)]


def sdk_vote(
    name: str, placed: PlacedMultisig, index: int, member: Pubkey, memo: str | None = None
) -> dict:
    """The SDK's instruction ``name`` (proposalApprove, ...) for this vote, described."""
    args = {"multisig": str(placed.address), "transactionIndex": str(index), "member": str(member)}
    (out,) = sdk([{"op": "ix", "name": name, "args": {**args, "memo": memo}}])
    return out  # type: ignore[no-any-return]
