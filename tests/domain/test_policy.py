from __future__ import annotations

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from core.errors import InputError, PolicyViolation
from domain.policy import Policy, audit, audit_findings

# The identity point (01 00..00): a valid encoding, of order 1; it signed up as a member.
IDENTITY = str(Pubkey.from_bytes(b"\x01" + bytes(31)))


def members(n: int) -> tuple[str, ...]:
    return tuple(str(Keypair().pubkey()) for _ in range(n))


def policy(**overrides: object) -> Policy:
    fields: dict[str, object] = {
        "name": "ops",
        "members": members(5),
        "threshold": 3,
        "timelock_seconds": 48 * 3600,
    }
    fields.update(overrides)
    return Policy(**fields)  # type: ignore[arg-type]


def test_a_sound_policy_passes() -> None:
    assert audit_findings(policy(), "upgrade to v2") == []
    assert audit_findings(policy(emergency_threshold=3), "upgrade to v2") == []
    audit(policy(), "upgrade to v2")


@pytest.mark.parametrize(
    ("overrides", "description", "finding"),
    [
        ({"members": members(2), "threshold": 2}, "d", "at least 3 needed"),
        ({"threshold": 2}, "d", "below half"),
        ({"threshold": 6}, "d", "above the member count 5"),
        ({"threshold": 0}, "d", "below half"),
        ({"timelock_seconds": 3600}, "d", "below the policy minimum 172800"),
        ({"members": ("not-a-key", *members(3))}, "d", "not a base58 public key"),
        ({"emergency_threshold": 2}, "d", "emergency threshold 2 is below the threshold 3"),
        ({"members": (IDENTITY, *members(4))}, "d", f"member {IDENTITY} is not an ed25519"),
    ],
)
def test_each_failed_check_is_named(overrides: dict, description: str, finding: str) -> None:
    with pytest.raises(PolicyViolation) as info:
        audit(policy(**overrides), description)
    assert any(finding in f for f in info.value.findings), info.value.findings


def test_an_empty_description_is_blamed_on_the_description_not_the_policy() -> None:
    with pytest.raises(InputError, match="description is empty: say what changes") as info:
        audit(policy(), "   ")
    assert not isinstance(info.value, PolicyViolation) and "policy" not in str(info.value)


def test_every_small_order_point_is_refused_as_a_member() -> None:
    from core.ed25519 import small_order_points

    points = small_order_points()
    assert len(points) == 8
    for point in points:
        key = str(Pubkey.from_bytes(point))
        findings = audit_findings(policy(members=(key, *members(4))), "d")
        assert [f for f in findings if key in f and "not an ed25519" in f], findings


def test_duplicate_members_are_named() -> None:
    m = members(3)
    with pytest.raises(PolicyViolation, match=f"duplicate members: {m[0]}"):
        audit(policy(members=(*m, m[0]), threshold=2), "d")


def test_all_findings_are_reported_together() -> None:
    findings = audit_findings(policy(members=members(2), threshold=5, timelock_seconds=0), "")
    assert len(findings) == 3


def test_localnet_policy_may_lower_the_minimum_timelock() -> None:
    audit(policy(timelock_seconds=5, min_timelock_seconds=0), "d")


def test_members_have_names_and_a_saved_block_of_plain_keys_still_loads() -> None:
    from blocks.multisig import MultisigPolicy

    keys = [str(Keypair().pubkey()) for _ in range(3)]
    # The shape a block saved before members had names holds: plain base58 strings.
    old = MultisigPolicy.model_validate(
        {"members": keys, "threshold": 2, "timelock_seconds": 172800}
    )
    assert [m.pubkey for m in old.members] == keys and old.members[0].name == ""
    assert old.policy("ops").members == tuple(keys)
    named = MultisigPolicy.model_validate(
        {
            "members": [
                {"name": "Alice", "pubkey": keys[0], "slack_user_id": "U0ALICE"},
                keys[1],
                {"name": "Carol", "pubkey": keys[2]},
            ],
            "threshold": 2,
            "timelock_seconds": 172800,
        }
    )
    policy = named.policy("ops")
    assert policy.members == tuple(keys)  # the rules still see keys only
    assert policy.label(keys[0]) == f"Alice ({keys[0][:4]}…{keys[0][-4:]})"
    assert policy.label(keys[1]) == f"{keys[1][:4]}…{keys[1][-4:]}"
    assert policy.slack_user_ids() == {"U0ALICE"}
    assert audit_findings(policy, "why") == []
    # The block's form asks for each field, with help.
    member_schema = MultisigPolicy.model_json_schema()["definitions"]["Member"]
    assert set(member_schema["properties"]) == {"name", "pubkey", "slack_user_id"}
