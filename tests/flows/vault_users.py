"""A demo_vault user on the localnet: a vault of their own and a deposit into it, to see
whether the program serves users (the kill switch's pause) — a helper module the flow
tests import."""

from __future__ import annotations

from typing import Any

from solders.account import Account
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import Transaction

from programs.demo_vault import client as vault
from runbooks.demo import DemoChain


def add_vault(chain: DemoChain, config: Pubkey) -> tuple[Keypair, Pubkey]:
    """A user's demo_vault vault under ``config``: (owner, vault address)."""
    owner, key = Keypair(), Pubkey.new_unique()
    net = chain.server.localnet
    with net.lock:
        net.svm.set_account(
            key,
            Account(
                net.minimum_balance_for_rent_exemption(vault.VaultV1.SIZE),
                vault.VaultV1(owner=owner.pubkey(), config=config, balance=1).encode(),
                chain.program_id,
                False,
                0,
            ),
        )
    return owner, key


def deposit(chain: DemoChain, vault_key: Pubkey, owner: Keypair, config: Pubkey) -> Any:
    """A user's deposit into ``vault_key`` signed by ``owner``, simulated on the localnet."""
    net = chain.server.localnet
    ix = vault.deposit(chain.program_id, vault_key, owner.pubkey(), config, 5)
    blockhash, _ = net.latest_blockhash()
    tx = Transaction.new_signed_with_payer(
        [ix], chain.authority.pubkey(), [chain.authority, owner], blockhash
    )
    return net.simulate_transaction(tx)
