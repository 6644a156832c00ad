"""demo_vault v1 and v2 in a real LiteSVM: instructions, the kill switch, v1 -> v2 migration."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from program_testkit import Chain, Result
from solders.account import Account
from solders.clock import Clock
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from programs import loader
from programs.anchor import AnchorError, instruction_data, pack_u64
from programs.demo_vault import client
from programs.demo_vault.client import Config, VaultError, VaultV1, VaultV2


@dataclass
class Deployment:
    chain: Chain
    program_id: Pubkey
    admin: Keypair
    config: Pubkey

    def rent(self, size: int) -> int:
        return self.chain.svm.minimum_balance_for_rent_exemption(size)

    def new_vault(
        self, owner: Pubkey, balance: int = 0, *, space: int = VaultV1.SIZE, fund_for: int = 0
    ) -> Pubkey:
        vault = Keypair()
        ixs = client.create_vault_instructions(
            self.chain.payer.pubkey(),
            vault.pubkey(),
            owner,
            balance,
            self.program_id,
            self.rent(max(space, fund_for)),
            config=self.config,
            space=space,
        )
        self.chain.ok(ixs, vault)
        return vault.pubkey()

    def deposit(self, vault: Pubkey, owner: Keypair, amount: int) -> Result:
        ix = client.deposit(self.program_id, vault, owner.pubkey(), self.config, amount)
        return self.chain.send([ix], owner)

    def vault(self, address: Pubkey) -> VaultV1 | VaultV2:
        return client.decode_vault(self.chain.data(address))

    def upgrade_to(self, so: bytes) -> None:
        # Same program id, new code: what an upgrade does (through the real loader in
        # test_programs_pass_the_upgradeable_loaders_deploy_checks).
        self.chain.svm.add_program(self.program_id, so)


def deploy(chain: Chain, so: bytes) -> Deployment:
    program_id = Pubkey.new_unique()
    chain.svm.add_program(program_id, so)
    return with_config(chain, program_id)


def with_config(chain: Chain, program_id: Pubkey) -> Deployment:
    dep = Deployment(chain, program_id, Keypair(), Pubkey.default())
    dep.config = deploy_config(dep, dep.admin)
    return dep


def deploy_config(dep: Deployment, admin: Keypair | None = None) -> Pubkey:
    """Another config account for the same program (its own admin)."""
    config, admin = Keypair(), admin or Keypair()
    ixs = client.create_config_instructions(
        dep.chain.payer.pubkey(),
        config.pubkey(),
        admin.pubkey(),
        dep.program_id,
        dep.rent(Config.SIZE),
    )
    dep.chain.ok(ixs, config, admin)
    return config.pubkey()


@pytest.fixture
def v1(chain: Chain, demo_vault_v1_so: bytes) -> Deployment:
    return deploy(chain, demo_vault_v1_so)


def failed_with(result: Result, code: int) -> bool:
    return not result.ok and result.custom_code == code


# ------------------------------------------------------------------------------ v1


def test_v1_initialize_writes_layout_v1(v1: Deployment) -> None:
    owner = Keypair()
    vault = v1.new_vault(owner.pubkey(), 500)
    data = v1.chain.data(vault)
    assert len(data) == VaultV1.SIZE
    assert client.layout_version(data) == 1
    assert v1.vault(vault) == VaultV1(owner=owner.pubkey(), config=v1.config, balance=500)
    assert VaultV1.decode(data).encode() == data
    config = Config.decode(v1.chain.data(v1.config))
    assert config == Config(admin=v1.admin.pubkey(), paused=False)


def test_v1_deposit_increments_balance_and_logs_its_version(v1: Deployment) -> None:
    owner = Keypair()
    vault = v1.new_vault(owner.pubkey(), 10)
    result = v1.deposit(vault, owner, 32)
    assert result.ok, result.logs
    assert client.LOG_V1 in result.program_logs()
    assert v1.vault(vault).balance == 42


def test_v1_pause_blocks_deposits_until_unpause(v1: Deployment) -> None:
    owner = Keypair()
    vault = v1.new_vault(owner.pubkey())
    v1.chain.ok([client.pause(v1.program_id, v1.config, v1.admin.pubkey())], v1.admin)
    assert Config.decode(v1.chain.data(v1.config)).paused
    assert failed_with(v1.deposit(vault, owner, 1), VaultError.Paused)
    v1.chain.ok([client.unpause(v1.program_id, v1.config, v1.admin.pubkey())], v1.admin)
    assert v1.deposit(vault, owner, 1).ok
    assert v1.vault(vault).balance == 1


def test_only_the_admin_pauses(v1: Deployment) -> None:
    intruder = Keypair()
    result = v1.chain.send([client.pause(v1.program_id, v1.config, intruder.pubkey())], intruder)
    assert failed_with(result, AnchorError.ConstraintHasOne)


def test_a_foreign_config_cannot_dodge_the_pause(v1: Deployment) -> None:
    owner = Keypair()
    vault = v1.new_vault(owner.pubkey())
    v1.chain.ok([client.pause(v1.program_id, v1.config, v1.admin.pubkey())], v1.admin)
    other = deploy_config(v1)
    ix = client.deposit(v1.program_id, vault, owner.pubkey(), other, 1)
    assert failed_with(v1.chain.send([ix], owner), AnchorError.ConstraintHasOne)


def test_unknown_or_missing_discriminator(v1: Deployment) -> None:
    unknown = Instruction(v1.program_id, b"\x01" * 8, [])
    assert failed_with(v1.chain.send([unknown]), AnchorError.InstructionFallbackNotFound)
    short = Instruction(v1.program_id, b"\x01\x02", [])
    assert failed_with(v1.chain.send([short]), AnchorError.InstructionMissing)
    # v1 does not know migrate: the runbook's pre-upgrade check relies on this
    migrate = client.migrate(v1.program_id, Pubkey.new_unique())
    assert failed_with(v1.chain.send([migrate]), AnchorError.InstructionFallbackNotFound)


def test_wrong_instruction_data_length(v1: Deployment) -> None:
    owner = Keypair()
    vault = v1.new_vault(owner.pubkey())
    ix = client.deposit(v1.program_id, vault, owner.pubkey(), v1.config, 1)
    truncated = Instruction(ix.program_id, bytes(ix.data)[:12], ix.accounts)
    result = v1.chain.send([truncated], owner)
    assert failed_with(result, AnchorError.InstructionDidNotDeserialize)


def test_deposit_needs_the_owner_signature(v1: Deployment) -> None:
    owner = Keypair()
    vault = v1.new_vault(owner.pubkey())
    unsigned = Instruction(
        v1.program_id,
        instruction_data("deposit", pack_u64(5)),
        [
            AccountMeta(vault, False, True),
            AccountMeta(owner.pubkey(), False, False),
            AccountMeta(v1.config, False, False),
        ],
    )
    assert failed_with(v1.chain.send([unsigned]), AnchorError.AccountNotSigner)
    stranger = Keypair()
    assert failed_with(v1.deposit(vault, stranger, 5), AnchorError.ConstraintHasOne)
    assert v1.vault(vault).balance == 0


def test_accounts_of_another_program_are_refused(v1: Deployment) -> None:
    owner = Keypair()
    forged = Pubkey.new_unique()
    data = VaultV1(owner=owner.pubkey(), config=v1.config, balance=10**9).encode()
    v1.chain.svm.set_account(
        forged, Account(v1.rent(VaultV1.SIZE), data, Pubkey.new_unique(), False, 0)
    )
    result = v1.deposit(forged, owner, 1)
    assert failed_with(result, AnchorError.AccountOwnedByWrongProgram)


def test_account_discriminator_is_checked(v1: Deployment) -> None:
    owner = Keypair()
    # The config is program-owned but not a vault.
    ix = client.deposit(v1.program_id, v1.config, owner.pubkey(), v1.config, 1)
    assert failed_with(v1.chain.send([ix], owner), AnchorError.AccountDiscriminatorMismatch)


def test_initialize_refuses_the_wrong_size(v1: Deployment) -> None:
    owner, wrong_size = Keypair(), Keypair()
    ixs = client.create_vault_instructions(
        v1.chain.payer.pubkey(),
        wrong_size.pubkey(),
        owner.pubkey(),
        0,
        v1.program_id,
        v1.rent(VaultV2.SIZE),
        config=v1.config,
        space=VaultV2.SIZE,
    )
    assert failed_with(v1.chain.send(ixs, wrong_size), AnchorError.AccountDidNotDeserialize)


def test_initialize_twice_is_refused(v1: Deployment) -> None:
    owner, vault = Keypair(), Keypair()
    ixs = client.create_vault_instructions(
        v1.chain.payer.pubkey(),
        vault.pubkey(),
        owner.pubkey(),
        1,
        v1.program_id,
        v1.rent(VaultV1.SIZE),
        config=v1.config,
    )
    v1.chain.ok(ixs, vault)
    again = client.initialize(v1.program_id, vault.pubkey(), v1.config, Pubkey.new_unique(), 9)
    result = v1.chain.send([again], vault)
    assert failed_with(result, AnchorError.AccountDiscriminatorAlreadySet)
    assert v1.vault(vault.pubkey()).owner == owner.pubkey()


def test_v1_refuses_a_v2_layout(v1: Deployment) -> None:
    """After a rollback to v1, migrated vaults are refused rather than misread."""
    owner = Keypair()
    vault = v1.new_vault(owner.pubkey(), fund_for=VaultV2.SIZE)
    data = VaultV2(owner.pubkey(), v1.config, 7, 1, 3).encode()
    account = v1.chain.svm.get_account(vault)
    assert account is not None
    v1.chain.svm.set_account(
        vault, Account(account.lamports, data, v1.program_id, False, account.rent_epoch)
    )
    assert failed_with(v1.deposit(vault, owner, 1), VaultError.UnsupportedLayout)


# ------------------------------------------------------------------------ v1 -> v2


def test_v2_replaces_v1_at_the_same_program_id(v1: Deployment, demo_vault_v2_so: bytes) -> None:
    owner = Keypair()
    vault = v1.new_vault(owner.pubkey())
    v1.upgrade_to(demo_vault_v2_so)
    result = v1.chain.ok([client.migrate(v1.program_id, vault, v1.chain.payer.pubkey())])
    assert client.LOG_V2 in result.program_logs()
    assert client.LOG_V1 not in result.program_logs()


def test_migrate_preserves_owner_config_and_balance(
    v1: Deployment, demo_vault_v2_so: bytes
) -> None:
    owner = Keypair()
    vault = v1.new_vault(owner.pubkey(), 1_000)
    assert v1.deposit(vault, owner, 234).ok
    v1.upgrade_to(demo_vault_v2_so)
    v1.chain.svm.set_clock(Clock(77, 0, 0, 0, 0))
    result = v1.chain.ok([client.migrate(v1.program_id, vault, v1.chain.payer.pubkey())])
    assert "migrated to layout v2" in result.program_logs()
    data = v1.chain.data(vault)
    assert len(data) == VaultV2.SIZE
    assert VaultV2.decode(data) == VaultV2(
        owner=owner.pubkey(), config=v1.config, balance=1_234, deposits_count=0, migrated_slot=77
    )
    assert data[104:] == bytes(64)
    account = v1.chain.svm.get_account(vault)
    assert account is not None and account.lamports >= v1.rent(VaultV2.SIZE)


def test_migrate_twice_is_a_no_op(v1: Deployment, demo_vault_v2_so: bytes) -> None:
    owner = Keypair()
    vault = v1.new_vault(owner.pubkey(), 5, fund_for=VaultV2.SIZE)
    v1.upgrade_to(demo_vault_v2_so)
    v1.chain.ok([client.migrate(v1.program_id, vault)])
    first = v1.chain.data(vault)
    result = v1.chain.ok([client.migrate(v1.program_id, vault)])
    assert "already on layout v2" in result.program_logs()
    assert v1.chain.data(vault) == first
    # Twice in one transaction as well.
    v1.chain.ok([client.migrate(v1.program_id, vault), client.migrate(v1.program_id, vault)])
    assert v1.chain.data(vault) == first


def test_many_migrates_in_one_transaction(v1: Deployment, demo_vault_v2_so: bytes) -> None:
    owners = [Keypair() for _ in range(client.MIGRATES_PER_TRANSACTION)]
    vaults = [v1.new_vault(o.pubkey(), i, fund_for=VaultV2.SIZE) for i, o in enumerate(owners)]
    v1.upgrade_to(demo_vault_v2_so)
    v1.chain.ok(client.migrate_many(v1.program_id, vaults))
    for i, (vault, owner) in enumerate(zip(vaults, owners, strict=True)):
        migrated = v1.vault(vault)
        assert isinstance(migrated, VaultV2)
        assert (migrated.owner, migrated.balance) == (owner.pubkey(), i)


def test_many_migrates_share_one_payer(v1: Deployment, demo_vault_v2_so: bytes) -> None:
    count = client.MIGRATES_PER_TRANSACTION_WITH_PAYER
    vaults = [v1.new_vault(Keypair().pubkey(), 1) for _ in range(count)]
    v1.upgrade_to(demo_vault_v2_so)
    payer = v1.chain.payer.pubkey()
    v1.chain.ok(client.migrate_many(v1.program_id, vaults, payer))
    for vault in vaults:
        account = v1.chain.svm.get_account(vault)
        assert account is not None
        assert account.lamports == v1.rent(VaultV2.SIZE)
        assert client.layout_version(bytes(account.data)) == 2


def test_migrate_without_rent_needs_a_payer(v1: Deployment, demo_vault_v2_so: bytes) -> None:
    vault = v1.new_vault(Keypair().pubkey(), 3)  # funded for v1 only
    v1.upgrade_to(demo_vault_v2_so)
    result = v1.chain.send([client.migrate(v1.program_id, vault)])
    assert failed_with(result, VaultError.RentTopUpRequired)
    assert client.layout_version(v1.chain.data(vault)) == 1
    v1.chain.ok([client.migrate(v1.program_id, vault, v1.chain.payer.pubkey())])
    assert client.layout_version(v1.chain.data(vault)) == 2


def test_v2_deposit_refuses_unmigrated_vaults(v1: Deployment, demo_vault_v2_so: bytes) -> None:
    owner = Keypair()
    vault = v1.new_vault(owner.pubkey(), 10, fund_for=VaultV2.SIZE)
    v1.upgrade_to(demo_vault_v2_so)
    assert failed_with(v1.deposit(vault, owner, 1), VaultError.NotMigrated)
    v1.chain.ok([client.migrate(v1.program_id, vault)])
    assert v1.deposit(vault, owner, 5).ok
    assert v1.deposit(vault, owner, 5).ok
    migrated = v1.vault(vault)
    assert isinstance(migrated, VaultV2)
    assert (migrated.balance, migrated.deposits_count) == (20, 2)


def test_v2_keeps_the_kill_switch(v1: Deployment, demo_vault_v2_so: bytes) -> None:
    owner = Keypair()
    vault = v1.new_vault(owner.pubkey(), fund_for=VaultV2.SIZE)
    v1.upgrade_to(demo_vault_v2_so)
    v1.chain.ok([client.migrate(v1.program_id, vault)])
    v1.chain.ok([client.pause(v1.program_id, v1.config, v1.admin.pubkey())], v1.admin)
    assert failed_with(v1.deposit(vault, owner, 1), VaultError.Paused)
    v1.chain.ok([client.unpause(v1.program_id, v1.config, v1.admin.pubkey())], v1.admin)
    assert v1.deposit(vault, owner, 1).ok


def test_v2_initialize_writes_layout_v2(chain: Chain, demo_vault_v2_so: bytes) -> None:
    v2 = deploy(chain, demo_vault_v2_so)
    chain.svm.set_clock(Clock(9, 0, 0, 0, 0))
    owner = Keypair()
    vault = v2.new_vault(owner.pubkey(), 50, space=VaultV2.SIZE)
    assert v2.vault(vault) == VaultV2(owner.pubkey(), v2.config, 50, 0, 9)
    result = v2.chain.ok([client.migrate(v2.program_id, vault)])
    assert "already on layout v2" in result.program_logs()


def test_migrate_refuses_what_is_not_a_vault(v1: Deployment, demo_vault_v2_so: bytes) -> None:
    v1.upgrade_to(demo_vault_v2_so)
    result = v1.chain.send([client.migrate(v1.program_id, v1.config)])
    assert failed_with(result, AnchorError.AccountDiscriminatorMismatch)
    stranger = Pubkey.new_unique()
    data = VaultV1(Pubkey.new_unique(), v1.config, 1).encode()
    v1.chain.svm.set_account(
        stranger, Account(v1.rent(VaultV2.SIZE), data, Pubkey.new_unique(), False, 0)
    )
    result = v1.chain.send([client.migrate(v1.program_id, stranger)])
    assert failed_with(result, AnchorError.AccountOwnedByWrongProgram)


def test_missing_accounts_and_unsigned_admin(v1: Deployment) -> None:
    ix = client.deposit(v1.program_id, Pubkey.new_unique(), v1.admin.pubkey(), v1.config, 1)
    too_few = Instruction(ix.program_id, ix.data, ix.accounts[:2])
    assert failed_with(v1.chain.send([too_few], v1.admin), AnchorError.AccountNotEnoughKeys)
    unsigned = Instruction(
        v1.program_id,
        instruction_data("pause"),
        [AccountMeta(v1.config, False, True), AccountMeta(v1.admin.pubkey(), False, False)],
    )
    assert failed_with(v1.chain.send([unsigned]), AnchorError.AccountNotSigner)
    assert not Config.decode(v1.chain.data(v1.config)).paused


def test_programs_pass_the_upgradeable_loaders_deploy_checks(
    chain: Chain, demo_vault_v1_so: bytes, demo_vault_v2_so: bytes
) -> None:
    """Deploying verifies the ELF more strictly than add_program; upgrade then migrate."""
    payer = chain.payer.pubkey()

    def buffer_with(so: bytes) -> Pubkey:
        buffer = Keypair()
        size = loader.BUFFER_METADATA_SIZE + len(so)
        rent = chain.svm.minimum_balance_for_rent_exemption(size)
        chain.ok(loader.create_buffer(payer, buffer.pubkey(), payer, rent, len(so)), buffer)
        for offset, chunk in loader.write_chunks(so):
            chain.ok([loader.write(buffer.pubkey(), payer, offset, chunk)])
        return buffer.pubkey()

    program = Keypair()
    rent = chain.svm.minimum_balance_for_rent_exemption(loader.PROGRAM_ACCOUNT_SIZE)
    deploy_ixs = loader.deploy_program(
        payer,
        program.pubkey(),
        buffer_with(demo_vault_v1_so),
        payer,
        rent,
        2 * len(demo_vault_v2_so),
    )
    chain.ok(deploy_ixs, program)
    chain.svm.warp_to_slot(chain.svm.get_clock().slot + 1)
    dep = with_config(chain, program.pubkey())
    owner = Keypair()
    vault = dep.new_vault(owner.pubkey(), 11)
    chain.ok([loader.upgrade(program.pubkey(), buffer_with(demo_vault_v2_so), payer, payer)])
    chain.svm.warp_to_slot(chain.svm.get_clock().slot + 1)
    result = chain.ok([client.migrate(program.pubkey(), vault, payer)])
    assert client.LOG_V2 in result.program_logs()
    assert dep.vault(vault) == VaultV2(
        owner.pubkey(), dep.config, 11, 0, chain.svm.get_clock().slot
    )
