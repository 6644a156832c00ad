"""The migrator interface and the demo_vault migrator; rollback and kill-switch helpers."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.hash import Hash
from solders.message import Message
from solders.pubkey import Pubkey
from solders.transaction import Transaction

from core.base58 import b58decode, b58encode
from core.errors import InputError, KillSwitchEngaged, RollbackRefused
from domain import kill_switch, rollback
from domain.migration import plan
from programs import plugin
from programs.demo_vault import client as vault
from programs.demo_vault.plugins import DemoVaultMigrator
from programs.loader import verifiable_hash
from programs.plugin import get_migrator
from store.records.kill_switch import KillSwitchRecord
from store.records.migrations import MigratedAccount

M = DemoVaultMigrator()
OWNER, CONFIG = Pubkey.new_unique(), Pubkey.new_unique()
V1 = vault.VaultV1(owner=OWNER, config=CONFIG, balance=1_234).encode()
V2 = vault.VaultV2(
    owner=OWNER, config=CONFIG, balance=1_234, deposits_count=0, migrated_slot=77
).encode()


def test_b58encode_matches_solders() -> None:
    key = Pubkey.new_unique()
    assert b58encode(bytes(key)) == str(key)
    assert b58encode(b"\0\0\x01") == "112"


def test_select_filters_the_discriminator_and_the_version_byte() -> None:
    discriminator, version = M.select(1)
    assert (discriminator.offset, b58decode(discriminator.bytes)) == (0, vault.VAULT_DISCRIMINATOR)
    assert (version.offset, b58decode(version.bytes)) == (8, b"\x01")
    assert b58decode(M.select(2)[1].bytes) == b"\x02"


def test_layouts_decode_and_transform() -> None:
    assert (M.layout_version(V1), M.layout_version(V2)) == (1, 2)
    assert M.layout_version(vault.Config(admin=OWNER, paused=False).encode()) is None
    assert M.layout_version(b"") is None
    assert M.decode(V2)["migrated_slot"] == 77
    assert M.transform(V1) == {
        "owner": str(OWNER),
        "config": str(CONFIG),
        "balance": 1_234,
        "deposits_count": 0,
    }


def test_verify_compares_every_preserved_field() -> None:
    assert M.verify(V1, V2) == []
    short = vault.VaultV2(
        owner=OWNER, config=CONFIG, balance=1_233, deposits_count=0, migrated_slot=77
    ).encode()
    assert M.verify(V1, short) == ["balance is 1233, snapshot says 1234"]
    assert M.verify(V1, V1) == ["layout is v1, expected v2"]
    assert M.verify(V1, None) == ["the account no longer exists"]


def test_packing_fills_a_transaction_and_no_more() -> None:
    program, payer = Pubkey.new_unique(), Pubkey.new_unique()
    fits = M.accounts_per_transaction(program, payer)
    # One fewer than a bare transaction holds: the compute-budget instructions need room.
    assert fits == vault.MIGRATES_PER_TRANSACTION_WITH_PAYER - 1

    def size(n: int) -> int:
        ixs = M.migrate_instructions(program, [Pubkey.new_unique() for _ in range(n)], payer)
        budget = [set_compute_unit_limit(1_400_000), set_compute_unit_price(10**6)]
        msg = Message.new_with_blockhash([*budget, *ixs], payer, Hash.default())
        return len(bytes(Transaction.new_unsigned(msg)))

    assert size(fits) <= plugin.PACKET_DATA_SIZE < size(fits + 1)
    assert fits * M.compute_units_per_account <= plugin.MAX_TRANSACTION_COMPUTE_UNITS


def test_failures_name_the_program_error() -> None:
    logs = ["Program X invoke [1]", "Program X failed: custom program error: 0xbbb"]
    assert "AccountDidNotDeserialize (3003)" in M.describe_failure("refused", logs)
    assert "UnsupportedLayout (6002)" in M.describe_failure("InstructionError(0, Custom(6002))")
    assert M.describe_failure("blockhash not found") == "blockhash not found"


def test_plan_resumes_pending_and_leaves_failures_unless_asked() -> None:
    states = {
        "pending-migrated-on-chain": SimpleNamespace(status="pending"),
        "failed": SimpleNamespace(status="failed"),
        "verified": SimpleNamespace(status="verified"),
    }
    discovered = ["new", "failed"]
    assert plan(discovered, states, retry_failed=False) == ["new", "pending-migrated-on-chain"]
    assert plan(discovered, states, retry_failed=True) == [
        "failed",
        "new",
        "pending-migrated-on-chain",
    ]


def test_migrators_by_name_or_import_path() -> None:
    assert isinstance(get_migrator("demo_vault"), DemoVaultMigrator)
    assert isinstance(
        get_migrator("programs.demo_vault.plugins:DemoVaultMigrator"), DemoVaultMigrator
    )
    with pytest.raises(InputError, match="registered: demo_vault"):
        get_migrator("nope")
    with pytest.raises(InputError, match="cannot be loaded"):
        get_migrator("programs.demo_vault.plugins:Nope")


def test_a_migrator_path_outside_the_allowed_modules_is_never_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "antigravity", raising=False)
    with pytest.raises(InputError, match="RUNBOOKS_MIGRATOR_MODULES") as refused:
        get_migrator("antigravity:geohash")
    assert "'antigravity' is not one migrators may be loaded from" in str(refused.value)
    assert "antigravity" not in sys.modules  # nothing of it ran


def test_a_function_named_as_migrator_is_not_called(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = tmp_path / "called"
    module = tmp_path / "team_migrators.py"
    module.write_text(
        f"from pathlib import Path\ndef wipe():\n    Path({str(calls)!r}).write_text('ran')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("RUNBOOKS_MIGRATOR_MODULES", "team_migrators")
    with pytest.raises(InputError, match="is not an AccountMigrator class"):
        get_migrator("team_migrators:wipe")
    assert not calls.exists()
    # The operator's own allowed module still works for a real class.
    monkeypatch.setenv("RUNBOOKS_MIGRATOR_MODULES", " team_migrators , programs.demo_vault")
    assert isinstance(
        get_migrator("programs.demo_vault.plugins:DemoVaultMigrator"), DemoVaultMigrator
    )


def test_archived_bytes_keep_the_elf_and_its_hash(demo_binaries: dict[str, bytes]) -> None:
    elf = demo_binaries["v1"]
    assert rollback.elf_length(elf) == len(elf)
    # The ELF ends in zero bytes (its last section header): stripping them would cut it.
    assert elf.endswith(b"\x00") and len(elf.rstrip(b"\x00")) < len(elf)
    padded = elf + bytes(4096)  # as a ProgramData holds it
    kept = rollback.archived_bytes(padded)
    assert kept == elf
    assert verifiable_hash(kept) == verifiable_hash(padded)
    assert rollback.elf_length(b"not an elf") is None
    assert rollback.archived_bytes(b"\x01\x02\x00\x00") == b"\x01\x02"


def test_rollback_over_migrated_accounts_is_refused_naming_them() -> None:
    accounts = [MigratedAccount(f"acct{i:02}", 1, "demo_vault", 2, "bb" * 32) for i in range(25)]
    with pytest.raises(RollbackRefused) as refused:
        rollback.refuse_over_migrated("aa" * 32, accounts, force_reason=None)
    assert refused.value.accounts == [a.address for a in accounts]
    assert "acct00" in str(refused.value) and "and 5 more" in str(refused.value)
    assert "force_reason" in str(refused.value)
    rollback.refuse_over_migrated("aa" * 32, accounts, force_reason="v1.4 reads v2")
    rollback.refuse_over_migrated("aa" * 32, [], force_reason=None)


def test_kill_switch_refusal_says_what_to_do() -> None:
    switch = KillSwitchRecord(
        cluster="localnet",
        program_id="*",
        engaged=True,
        reason="exploit suspected",
        actor="oncall",
        changed_at=datetime(2026, 1, 1, tzinfo=UTC),
        release_proposal_id=None,
        flow_run_id=None,
    )
    error = kill_switch.refusal([switch], "upgrade")
    assert isinstance(error, KillSwitchEngaged)
    assert "upgrade refused" in str(error) and "every program on localnet" in str(error)
    assert "exploit suspected" in str(error) and "sign-off" in str(error)


def test_demo_vault_pause_instructions() -> None:
    program, config, admin = Pubkey.new_unique(), Pubkey.new_unique(), Pubkey.new_unique()
    pauser = plugin.pauser("demo_vault", program, config)
    assert pauser.pause(admin) == vault.pause(program, config, admin)
    assert pauser.unpause(admin) == vault.unpause(program, config, admin)
    assert pauser.is_paused(vault.Config(admin=admin, paused=True).encode())
    with pytest.raises(InputError, match="no pause instruction"):
        plugin.pauser("other", program, config)
