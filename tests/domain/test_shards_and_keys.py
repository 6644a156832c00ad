"""The migration's shards and its compact key set."""

from __future__ import annotations

import os

import pytest
from solders.pubkey import Pubkey

from core.errors import InputError
from domain.migration import AccountKeys, in_shard, parse_shard, shard_of_key
from flows.migration import migration_key


@pytest.mark.parametrize(
    ("text", "expected"),
    [(None, None), ("", None), ("0/1", (0, 1)), (" 3/4 ", (3, 4)), ("255/256", (255, 256))],
)
def test_shards_parse(text: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["1of4", "4/4", "0/0", "0/257", "-1/4", "1/4/8", "a/b", "1/"])
def test_bad_shards_are_refused_naming_the_form(text: str) -> None:
    with pytest.raises(InputError, match=r"shard .*i/N"):
        parse_shard(text)


def test_the_rule_is_the_first_eight_bytes_little_endian_modulo_n() -> None:
    key = bytes(range(32))
    assert shard_of_key(key, 256) == int.from_bytes(key[:8], "little") % 256 == 0


def test_account_keys_are_sorted_unique_and_searchable() -> None:
    keys = [bytes(Pubkey.new_unique()) for _ in range(250)]
    held = AccountKeys([*keys, keys[0]])
    assert len(held) == 250
    assert all(k in held for k in keys)
    assert bytes(Pubkey.new_unique()) not in held
    assert "not bytes" not in held
    assert list(held) == sorted(keys)
    batches = list(held.batches(100))
    assert [len(b) for b in batches] == [100, 100, 50]
    assert [bytes(Pubkey.from_string(a)) for b in batches for a in b] == sorted(keys)


def test_every_account_falls_in_exactly_one_shard_by_its_first_eight_bytes() -> None:
    keys = [str(Pubkey(os.urandom(32))) for _ in range(2_000)]
    for count in (1, 2, 7, 256):
        homes = [[i for i in range(count) if in_shard(k, i, count)] for k in keys]
        assert all(len(h) == 1 for h in homes)
        assert [h[0] for h in homes] == [
            shard_of_key(bytes(Pubkey.from_string(k)), count) for k in keys
        ]
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
