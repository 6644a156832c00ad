"""The Anchor-style codec and the demo_vault client's layouts, without a chain."""

from __future__ import annotations

import re

import pytest
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.transaction import Transaction

from programs import anchor
from programs.anchor import AnchorError, Reader
from programs.demo_vault import client
from programs.demo_vault.client import Config, VaultError, VaultV1, VaultV2
from programs.toolchain import build


def test_discriminators_match_anchor() -> None:
    # Anchor's well-known `initialize` discriminator.
    assert list(anchor.instruction_discriminator("initialize")) == [
        175, 175, 109, 31, 13, 152, 155, 237,
    ]  # fmt: skip
    assert anchor.account_discriminator("Vault") == client.VAULT_DISCRIMINATOR
    assert len(anchor.account_discriminator("Config")) == 8


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_c_constants_match_the_python_codec(version: str) -> None:
    """The C programs hard-code the discriminators as little-endian u64 constants."""
    source = (build.PROGRAMS_DIR / "demo_vault" / version / "vault.c").read_text()
    constants = dict(re.findall(r"#define ((?:IX|ACCOUNT)_\w+) (0x[0-9a-f]+)ULL", source))
    assert constants
    for macro, value in constants.items():
        kind, name = macro.split("_", 1)
        if kind == "IX":
            expected = anchor.instruction_discriminator(name.lower())
        else:
            expected = anchor.account_discriminator(name.capitalize())
        assert int(value, 16).to_bytes(8, "little") == expected, macro
    assert ("IX_MIGRATE" in constants) == (version == "v2")


def test_c_error_codes_match_the_python_enums() -> None:
    source = (build.PROGRAMS_DIR / "demo_vault" / "v2" / "vault.c").read_text()
    codes = {int(v) for v in re.findall(r"#define E_\w+ (\d+)", source)}
    program = {e.value for e in VaultError}
    assert program <= codes
    assert codes - program <= {e.value for e in AnchorError}


def test_packing_and_reader_round_trip() -> None:
    key = Pubkey.new_unique()
    data = anchor.pack_u8(7) + anchor.pack_u16(513) + anchor.pack_u32(70_000)
    data += anchor.pack_u64(2**63) + anchor.pack_i64(-5) + anchor.pack_bool(True)
    data += anchor.pack_pubkey(key)
    r = Reader(data)
    assert (r.u8(), r.u16(), r.u32(), r.u64(), r.i64(), r.bool(), r.pubkey()) == (
        7, 513, 70_000, 2**63, -5, True, key,
    )  # fmt: skip
    with pytest.raises(ValueError, match="too short"):
        r.u8()


def test_instruction_data_layout() -> None:
    owner = Pubkey.new_unique()
    ix = client.initialize(Pubkey.new_unique(), Pubkey.new_unique(), Pubkey.new_unique(), owner, 9)
    data = bytes(ix.data)
    assert data[:8] == anchor.instruction_discriminator("initialize")
    assert data[8:40] == bytes(owner) and data[40:] == (9).to_bytes(8, "little")
    assert [(m.is_signer, m.is_writable) for m in ix.accounts] == [(True, True), (False, False)]
    assert len(client.migrate(Pubkey.new_unique(), Pubkey.new_unique()).accounts) == 1
    assert len(client.migrate(Pubkey.new_unique(), Pubkey.new_unique(), owner).accounts) == 3


def test_layouts_round_trip_and_sizes() -> None:
    v1 = VaultV1(Pubkey.new_unique(), Pubkey.new_unique(), 12)
    v2 = VaultV2(Pubkey.new_unique(), Pubkey.new_unique(), 12, 3, 99)
    config = Config(Pubkey.new_unique(), True)
    assert len(v1.encode()) == VaultV1.SIZE and VaultV1.decode(v1.encode()) == v1
    assert len(v2.encode()) == VaultV2.SIZE and VaultV2.decode(v2.encode()) == v2
    assert len(config.encode()) == Config.SIZE and Config.decode(config.encode()) == config
    assert client.decode_vault(v1.encode()) == v1
    assert client.decode_vault(v2.encode()) == v2
    assert client.is_vault_account(v2.encode()) and not client.is_vault_account(config.encode())


def test_decoding_the_wrong_thing_is_an_error() -> None:
    v1 = VaultV1(Pubkey.new_unique(), Pubkey.new_unique(), 1).encode()
    with pytest.raises(ValueError, match="layout is v1"):
        VaultV2.decode(v1 + bytes(80))
    with pytest.raises(ValueError, match="not a Vault"):
        client.decode_vault(Config(Pubkey.new_unique(), False).encode())
    with pytest.raises(ValueError, match="unknown vault layout"):
        client.decode_vault(v1[:8] + b"\x09" + v1[9:])


def test_error_names() -> None:
    assert anchor.error_name(3010) == "AccountNotSigner"
    assert anchor.error_name(6001, VaultError) == "NotMigrated"
    assert anchor.error_name(42, VaultError) == "Custom(42)"


@pytest.mark.parametrize(
    ("with_payer", "limit"),
    [(False, client.MIGRATES_PER_TRANSACTION), (True, client.MIGRATES_PER_TRANSACTION_WITH_PAYER)],
)
def test_migrates_per_transaction_is_the_real_limit(with_payer: bool, limit: int) -> None:
    fee_payer = Keypair()
    payer = fee_payer.pubkey() if with_payer else None

    def size(n: int) -> int:
        vaults = [Pubkey.new_unique() for _ in range(n)]
        ixs = client.migrate_many(Pubkey.new_unique(), vaults, payer)
        tx = Transaction([fee_payer], Message(ixs, fee_payer.pubkey()), Hash.default())
        return len(bytes(tx))

    assert size(limit) <= 1232 < size(limit + 1)
