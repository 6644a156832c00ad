"""Squads v4 accounts serialized by the official SDK's own serializers (``@sqds/multisig``
``accounts.<Name>.fromArgs(...).serialize()``, beet) decode in programs/squads/client.py
to the same values, Anchor discriminators included."""

from __future__ import annotations

import random
from typing import Any

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from programs.anchor import account_discriminator
from programs.squads import client as squads
from tests.squads_sdk import sdk


def key() -> Pubkey:
    return Keypair().pubkey()


def keys(n: int) -> list[Pubkey]:
    return [key() for _ in range(n)]


@pytest.mark.parametrize("seed", range(4))
def test_multisig_accounts_decode_as_the_sdk_wrote_them(seed: int) -> None:
    rng = random.Random(seed)
    cases: list[dict[str, Any]] = []
    for _ in range(4):
        members = [(key(), rng.randrange(8)) for _ in range(rng.randrange(0, 12))]
        cases.append(
            {
                "createKey": str(key()),
                "configAuthority": str(rng.choice([Pubkey.default(), key()])),
                "threshold": rng.randrange(1, 65536),
                "timeLock": rng.choice([0, 3600, 2**32 - 1]),
                "transactionIndex": str(rng.getrandbits(64)),
                "staleTransactionIndex": str(rng.getrandbits(64)),
                "rentCollector": rng.choice([None, str(key())]),
                "bump": rng.randrange(256),
                "members": [{"key": str(k), "permissions": p} for k, p in members],
            }
        )
    out = sdk([{"op": "serialize", "account": "Multisig", "fields": f} for f in cases])
    for fields, raw in zip(cases, out, strict=True):
        data = bytes.fromhex(raw)
        assert data[:8] == account_discriminator("Multisig")
        got = squads.decode_multisig(data)
        assert str(got.create_key) == fields["createKey"]
        assert str(got.config_authority) == fields["configAuthority"]
        assert got.controlled == (fields["configAuthority"] != str(Pubkey.default()))
        assert (got.threshold, got.time_lock, got.bump) == (
            fields["threshold"],
            fields["timeLock"],
            fields["bump"],
        )
        assert got.transaction_index == int(fields["transactionIndex"])
        assert got.stale_transaction_index == int(fields["staleTransactionIndex"])
        assert (None if got.rent_collector is None else str(got.rent_collector)) == fields[
            "rentCollector"
        ]
        assert [{"key": str(m.key), "permissions": m.permissions} for m in got.members] == fields[
            "members"
        ]
        for m in got.members:
            assert m.can(squads.Permission.VOTE) == bool(m.permissions & 2)
            assert m.can(squads.Permission.INITIATE | squads.Permission.EXECUTE) == (
                m.permissions & 5 == 5
            )


@pytest.mark.parametrize("kind", squads.PROPOSAL_STATUSES)
def test_proposals_in_every_status_decode_as_the_sdk_wrote_them(kind: str) -> None:
    rng = random.Random(kind)
    cases: list[dict[str, Any]] = []
    for _ in range(3):
        stamp = rng.choice([0, 1_700_000_000, 2**62, -5])
        cases.append(
            {
                "multisig": str(key()),
                "transactionIndex": str(rng.getrandbits(64)),
                "status": {"kind": kind, "timestamp": str(stamp)},  # i64: beyond JSON's doubles
                "bump": rng.randrange(256),
                "approved": [str(k) for k in keys(rng.randrange(6))],
                "rejected": [str(k) for k in keys(rng.randrange(4))],
                "cancelled": [str(k) for k in keys(rng.randrange(3))],
            }
        )
    out = sdk([{"op": "serialize", "account": "Proposal", "fields": f} for f in cases])
    for fields, raw in zip(cases, out, strict=True):
        data = bytes.fromhex(raw)
        assert data[:8] == account_discriminator("Proposal")
        got = squads.decode_proposal(data)
        stamp = None if kind == "Executing" else int(fields["status"]["timestamp"])
        assert got.status == squads.ProposalStatus(kind, stamp)
        assert str(got.multisig) == fields["multisig"]
        assert got.transaction_index == int(fields["transactionIndex"])
        assert got.bump == fields["bump"]
        for vote in ("approved", "rejected", "cancelled"):
            assert [str(k) for k in getattr(got, vote)] == fields[vote]


@pytest.mark.parametrize("seed", range(4))
def test_vault_transactions_decode_as_the_sdk_wrote_them(seed: int) -> None:
    rng = random.Random(seed)
    n_keys = rng.randrange(1, 20)
    instructions = [
        {
            "programIdIndex": rng.randrange(n_keys),
            "accountIndexes": bytes(rng.randrange(n_keys) for _ in range(rng.randrange(8))).hex(),
            "data": rng.randbytes(rng.choice([0, 4, 300])).hex(),
        }
        for _ in range(rng.randrange(0, 4))
    ]
    lookups = [
        {
            "accountKey": str(key()),
            "writableIndexes": rng.randbytes(rng.randrange(4)).hex(),
            "readonlyIndexes": rng.randbytes(rng.randrange(4)).hex(),
        }
        for _ in range(seed % 2)
    ]
    signers = rng.randrange(1, n_keys + 1)
    fields = {
        "multisig": str(key()),
        "creator": str(key()),
        "index": str(rng.getrandbits(64)),
        "bump": rng.randrange(256),
        "vaultIndex": rng.randrange(256),
        "vaultBump": rng.randrange(256),
        "ephemeralSignerBumps": rng.randbytes(rng.randrange(4)).hex(),
        "message": {
            "numSigners": signers,
            "numWritableSigners": rng.randrange(signers + 1),
            "numWritableNonSigners": rng.randrange(n_keys - signers + 1),
            "accountKeys": [str(k) for k in keys(n_keys)],
            "instructions": instructions,
            "addressTableLookups": lookups,
        },
    }
    (raw,) = sdk([{"op": "serialize", "account": "VaultTransaction", "fields": fields}])
    data = bytes.fromhex(raw)
    assert data[:8] == account_discriminator("VaultTransaction")
    got = squads.decode_vault_transaction(data)
    m = fields["message"]
    assert (str(got.multisig), str(got.creator), got.index) == (
        fields["multisig"],
        fields["creator"],
        int(fields["index"]),
    )
    assert (got.bump, got.vault_index, got.vault_bump) == (
        fields["bump"],
        fields["vaultIndex"],
        fields["vaultBump"],
    )
    assert got.ephemeral_signer_bumps.hex() == fields["ephemeralSignerBumps"]
    msg = got.message
    assert (msg.num_signers, msg.num_writable_signers, msg.num_writable_non_signers) == (
        m["numSigners"],
        m["numWritableSigners"],
        m["numWritableNonSigners"],
    )
    assert [str(k) for k in msg.account_keys] == m["accountKeys"]
    assert [
        {
            "programIdIndex": ix.program_id_index,
            "accountIndexes": ix.account_indexes.hex(),
            "data": ix.data.hex(),
        }
        for ix in msg.instructions
    ] == instructions
    assert [
        {
            "accountKey": str(lk.account_key),
            "writableIndexes": lk.writable_indexes.hex(),
            "readonlyIndexes": lk.readonly_indexes.hex(),
        }
        for lk in msg.address_table_lookups
    ] == lookups


def test_accounts_of_another_kind_or_cut_short_are_refused() -> None:
    fields = {
        "multisig": str(key()),
        "transactionIndex": "1",
        "status": {"kind": "Approved", "timestamp": "1"},
        "bump": 1,
        "approved": [str(key())],
        "rejected": [],
        "cancelled": [],
    }
    (raw,) = sdk([{"op": "serialize", "account": "Proposal", "fields": fields}])
    data = bytes.fromhex(raw)
    with pytest.raises(ValueError, match="not a Multisig account"):
        squads.decode_multisig(data)
    with pytest.raises(ValueError, match="too short"):
        squads.decode_proposal(data[:-1])
    bad_status = data[:48] + bytes([7]) + data[49:]
    with pytest.raises(ValueError, match="proposal status 7"):
        squads.decode_proposal(bad_status)
