"""A migration's shards: "i/N" parsed and checked, and every account in exactly one."""

from __future__ import annotations

import os

import pytest
from solders.pubkey import Pubkey

from core.errors import InputError
from domain.migration import in_shard, parse_shard, shard_of
from flows.migration import migration_key


def test_a_shard_is_i_of_n_and_bad_forms_are_refused_naming_the_form() -> None:
    assert parse_shard(None) is None
    assert parse_shard("") is None
    assert parse_shard("0/1") == (0, 1)
    assert parse_shard(" 3/4 ") == (3, 4)
    assert parse_shard("255/256") == (255, 256)
    for bad in ("4/4", "-1/4", "1/0", "0/257", "1", "a/b", "1/2/3", "1.0/2"):
        with pytest.raises(InputError, match=r'shard .* "i/N"'):
            parse_shard(bad)


def test_every_account_falls_in_exactly_one_shard_by_its_first_eight_bytes() -> None:
    keys = [str(Pubkey(os.urandom(32))) for _ in range(2_000)]
    for count in (1, 2, 7, 256):
        homes = [[i for i in range(count) if in_shard(k, i, count)] for k in keys]
        assert all(len(h) == 1 for h in homes)
        assert [h[0] for h in homes] == [shard_of(k, count) for k in keys]
    # Little-endian: the first byte decides the shard of 2.
    assert in_shard(str(Pubkey(bytes([1]) + bytes(31))), 1, 2)
    assert in_shard(str(Pubkey(bytes([0, 1]) + bytes(30))), 0, 2)
    halves = sum(in_shard(k, 0, 2) for k in keys)
    assert 800 < halves < 1_200  # random addresses split about evenly


def test_each_shard_is_its_own_migration_and_no_shard_is_the_whole() -> None:
    whole = migration_key("localnet", "P", "demo_vault", 1, 2)
    assert whole == migration_key("localnet", "P", "demo_vault", 1, 2, None)
    keys = {migration_key("localnet", "P", "demo_vault", 1, 2, (i, 4)) for i in range(4)}
    assert len(keys) == 4 and whole not in keys
    assert migration_key("localnet", "P", "demo_vault", 1, 2, (0, 2)) not in keys
