"""Localnet fixtures: one server per test module, a solana-py client per test.

Tests share the module's chain; each one works with fresh keypairs, so they never
depend on each other's state, and slot assertions are relative.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey

from localnet import Localnet, LocalnetServer
from programs import loader

LAMPORTS_PER_SOL = 1_000_000_000
MEMO_V3 = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
TOKEN = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")


@pytest.fixture(scope="module")
def server() -> Iterator[LocalnetServer]:
    with LocalnetServer(port=0) as srv:
        yield srv


@pytest.fixture(scope="module")
def net(server: LocalnetServer) -> Localnet:
    return server.localnet


@pytest.fixture
async def client(server: LocalnetServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.url) as c:
        yield c


@pytest.fixture
def payer(net: Localnet) -> Keypair:
    kp = Keypair()
    net.airdrop(kp.pubkey(), 100 * LAMPORTS_PER_SOL)
    return kp


@pytest.fixture(scope="session")
def memo_elf() -> bytes:
    """SPL Memo v3 as LiteSVM bundles it: a plain sBPF ELF (BPF loader 2 keeps the ELF
    itself as the account data)."""
    elf = bytes(LiteSVM().get_account(MEMO_V3).data)
    assert elf[:4] == b"\x7fELF"
    return elf


@pytest.fixture(scope="session")
def token_elf() -> bytes:
    """SPL Token's ELF (from its ProgramData): a large program distinct from the memo."""
    data = LiteSVM().get_account(loader.programdata_address(TOKEN)).data
    elf = bytes(data[loader.PROGRAMDATA_METADATA_SIZE :])
    assert elf[:4] == b"\x7fELF"
    return elf
