"""Fixtures for the on-chain program tests: built programs and a LiteSVM with a payer."""

from __future__ import annotations

from pathlib import Path

import pytest
from program_testkit import Chain
from solders.keypair import Keypair
from solders.litesvm import LiteSVM

from programs.toolchain.build import build_program, compile_c
from programs.toolchain.link import link

C_DIR = Path(__file__).parent / "c"


@pytest.fixture(scope="session")
def probe_so(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The linker test program (two objects, so cross-object calls are covered)."""
    tmp = tmp_path_factory.mktemp("probe")
    objects = [compile_c(C_DIR / f"{n}.c", tmp / f"{n}.o") for n in ("probe", "probe_util")]
    return link(objects)


@pytest.fixture(scope="session")
def demo_vault_v1_so() -> bytes:
    return build_program("demo_vault/v1").read_bytes()


@pytest.fixture(scope="session")
def demo_vault_v2_so() -> bytes:
    return build_program("demo_vault/v2").read_bytes()


@pytest.fixture
def chain() -> Chain:
    svm = LiteSVM()
    payer = Keypair()
    svm.airdrop(payer.pubkey(), 100_000_000_000)
    return Chain(svm, payer)
