"""The migration's shards and its compact key set."""

from __future__ import annotations

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from core.errors import InputError
from domain.migration import AccountKeys, in_shard, parse_shard, shard_of_key


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


def test_every_account_is_in_exactly_one_shard() -> None:
    keys = [Keypair().pubkey() for _ in range(500)]
    for count in (1, 2, 7):
        owners = [[i for i in range(count) if in_shard(str(k), i, count)] for k in keys]
        assert all(len(o) == 1 for o in owners)
        assert {o[0] for o in owners} == set(range(count))  # random keys reach every shard
    # The rule is the spec's: the key's first 8 bytes, little-endian, modulo N.
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
