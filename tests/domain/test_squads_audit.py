"""The Squads multisig audit (``domain.squads_audit.squads_audit``) on every case: members
who can vote, threshold, time lock, config authority, the runbook's own member key."""

from __future__ import annotations

from dataclasses import replace

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from domain.policy import Member, Policy
from domain.squads_audit import squads_audit
from programs.squads.client import (
    ALL_PERMISSIONS,
    Multisig,
    Permission,
    decode_multisig,
    multisig_pda,
)
from programs.squads.client import Member as SquadsMember
from tests.squads_sdk import sdk

DAY = 24 * 3600
INITIATE_EXECUTE = Permission.INITIATE | Permission.EXECUTE
ADDRESS = Pubkey.new_unique()
AUTONOMOUS = Pubkey.default()


def key() -> Pubkey:
    return Keypair().pubkey()


def policy(min_timelock: int = 2 * DAY, names: dict[Pubkey, str] | None = None) -> Policy:
    profiles = tuple(Member(name=n, pubkey=str(k)) for k, n in (names or {}).items())
    return Policy(
        name="squads",
        members=(),
        threshold=1,
        timelock_seconds=min_timelock,
        min_timelock_seconds=min_timelock,
        backend="squads",
        profiles=profiles,
    )


def multisig(
    voters: int = 3,
    threshold: int = 2,
    time_lock: int = 2 * DAY,
    *,
    runbook: Pubkey | None = None,
    runbook_permissions: int = INITIATE_EXECUTE,
    config_authority: Pubkey = AUTONOMOUS,
    rent_collector: Pubkey | None = None,
) -> Multisig:
    members = [SquadsMember(key(), int(ALL_PERMISSIONS)) for _ in range(voters)]
    if runbook is not None:
        members.append(SquadsMember(runbook, int(runbook_permissions)))
    return Multisig(
        create_key=key(),
        config_authority=config_authority,
        threshold=threshold,
        time_lock=time_lock,
        transaction_index=7,
        stale_transaction_index=2,
        rent_collector=rent_collector,
        bump=255,
        members=tuple(members),
    )


def test_a_sound_multisig_passes_and_is_reported() -> None:
    runbook = key()
    ms = multisig(3, 2, runbook=runbook, rent_collector=ADDRESS)
    names = dict(zip((m.key for m in ms.members[:3]), ("Alice", "Bob", "Carol"), strict=True))
    audit = squads_audit(policy(names=names), ADDRESS, ms, runbook)
    assert audit.refusals == () and audit.warnings == ()
    assert audit.address == str(ADDRESS)
    report = audit.report
    assert f"| Alice | `{ms.members[0].key}` | yes | yes | yes |" in report
    assert f"| (this runbook) | `{runbook}` | yes | no | yes |" in report
    assert "- Threshold: 2 of 3 members with Vote permission" in report
    assert f"- Time lock: {2 * DAY} s (policy minimum {2 * DAY} s)" in report
    assert "- Config authority: none (autonomous" in report
    assert f"- Rent collector: `{ADDRESS}`" in report
    assert "Every check passed." in report


@pytest.mark.parametrize(
    ("ms", "says"),
    [
        (multisig(2, 2), "has 2 members with Vote permission; at least 3 needed"),
        # A member without Vote does not count: 2 voters + 1 initiator is too few.
        (
            replace(
                multisig(2, 2),
                members=(*multisig(2, 2).members, SquadsMember(key(), int(Permission.INITIATE))),
            ),
            "has 2 members with Vote permission",
        ),
        (multisig(5, 2), "threshold 2 of 5 members with Vote permission is below half"),
        (multisig(4, 1), "threshold 1 of 4 members with Vote permission is below half"),
        (multisig(3, 0), "threshold 0 of 3"),
        (multisig(3, 4), "threshold 4 is above the 3 members with Vote permission"),
        (multisig(3, 2, 2 * DAY - 1), f"time lock {2 * DAY - 1} s is below the policy minimum"),
        (multisig(3, 2, 0), "time lock 0 s is below the policy minimum"),
    ],
)
def test_refusals(ms: Multisig, says: str) -> None:
    audit = squads_audit(policy(), ADDRESS, ms)
    assert any(says in r for r in audit.refusals), audit.refusals
    assert "**Refused:**" in audit.report and says in audit.report


def test_half_the_voters_is_enough_and_the_minimum_timelock_is_met_exactly() -> None:
    assert squads_audit(policy(), ADDRESS, multisig(4, 2, 2 * DAY)).refusals == ()
    assert squads_audit(policy(min_timelock=60), ADDRESS, multisig(3, 2, 60)).refusals == ()


def test_a_config_authority_is_a_warning_not_a_refusal() -> None:
    authority = key()
    audit = squads_audit(policy(), ADDRESS, multisig(config_authority=authority))
    assert audit.refusals == ()
    assert len(audit.warnings) == 1
    assert f"config authority {authority} can change" in audit.warnings[0]
    assert "without a vote" in audit.warnings[0]
    assert f"- Config authority: `{authority}` (changes the multisig without a vote)" in (
        audit.report
    )
    assert "**Warnings:**" in audit.report


@pytest.mark.parametrize(
    ("permissions", "says"),
    [
        (ALL_PERMISSIONS, "has Vote permission: it must never approve"),
        (Permission.VOTE | Permission.INITIATE, "has Vote permission"),
        (Permission.INITIATE, "lacks Execute permission"),
        (Permission.EXECUTE, "lacks Initiate permission"),
        (Permission(0), "lacks Initiate and Execute permission"),
    ],
)
def test_the_runbook_member_key(permissions: Permission, says: str) -> None:
    runbook = key()
    ms = multisig(3, 2, runbook=runbook, runbook_permissions=permissions)
    audit = squads_audit(policy(), ADDRESS, ms, runbook)
    assert [r for r in audit.refusals if str(runbook) in r and says in r], audit.refusals


def test_a_runbook_key_that_is_no_member_is_refused() -> None:
    runbook = key()
    audit = squads_audit(policy(), ADDRESS, multisig(), runbook)
    assert audit.refusals == (
        f"the runbook's key {runbook} is not a member of the Squads multisig: add it with "
        "Initiate and Execute permissions (not Vote)",
    )


def test_a_voting_runbook_key_counts_as_a_voter_but_is_still_refused() -> None:
    runbook = key()
    ms = multisig(2, 2, runbook=runbook, runbook_permissions=ALL_PERMISSIONS)
    audit = squads_audit(policy(), ADDRESS, ms, runbook)
    assert len(audit.refusals) == 1 and "must never approve" in audit.refusals[0]


# --- the policy block's member list against the multisig (bytes from the official SDK) ---


def sdk_multisig(members: list[tuple[Pubkey, int]], threshold: int = 2) -> Multisig:
    """A Multisig serialized by @sqds/multisig, decoded as the runbooks read it."""
    create_key = key()
    fields = {
        "createKey": str(create_key),
        "configAuthority": str(AUTONOMOUS),
        "threshold": threshold,
        "timeLock": 2 * DAY,
        "transactionIndex": "0",
        "staleTransactionIndex": "0",
        "rentCollector": None,
        "bump": multisig_pda(create_key)[1],
        "members": [{"key": str(k), "permissions": p} for k, p in members],
    }
    (raw,) = sdk([{"op": "serialize", "account": "Multisig", "fields": fields}])
    return decode_multisig(bytes.fromhex(raw))


def listing(*members: Member) -> Policy:
    return replace(policy(), members=tuple(m.pubkey for m in members), profiles=members)


def test_policy_members_are_compared_with_the_multisig_voters() -> None:
    alice, bob, carol, dave, runbook = (key() for _ in range(5))
    ms = sdk_multisig(
        [
            (alice, int(ALL_PERMISSIONS)),
            (bob, int(ALL_PERMISSIONS)),
            (carol, int(ALL_PERMISSIONS)),
            (runbook, int(INITIATE_EXECUTE)),
        ]
    )
    named = {
        "alice": Member(name="Alice", pubkey=str(alice), slack_user_id="U0ALICE"),
        "bob": Member(name="Bob", pubkey=str(bob)),
        "carol": Member(name="Carol", pubkey=str(carol)),
    }
    # Every voter listed, nobody else: no finding.
    assert squads_audit(listing(*named.values()), ADDRESS, ms, runbook).warnings == ()
    # Dave is listed but not in the multisig; Carol votes but is not listed.
    stale = listing(
        named["alice"], named["bob"], Member(name="Dave", pubkey=str(dave), slack_user_id="U0DAVE")
    )
    audit = squads_audit(stale, ADDRESS, ms, runbook)
    assert audit.refusals == ()
    assert audit.warnings == (
        f"policy member Dave ({dave}), Slack U0DAVE is not a member of the Squads multisig: "
        "their name and Slack mention would be shown for a key that cannot approve; remove "
        "them from the Multisig Policy block's members",
        f"the Squads multisig's voter(s) {carol} are missing from the Multisig Policy "
        "block's members: they show as bare keys and Slack mentions nobody for them; add "
        "each with their name and Slack user id",
    )
    assert "**Warnings:**" in audit.report and str(dave) in audit.report


def test_a_listed_member_who_cannot_vote_is_named() -> None:
    voters = [key() for _ in range(3)]
    runbook = key()
    ms = sdk_multisig([*((v, int(ALL_PERMISSIONS)) for v in voters), (runbook, INITIATE_EXECUTE)])
    ci = Member(name="CI", pubkey=str(runbook))
    listed = listing(*(Member(pubkey=str(v)) for v in voters), ci)
    [warning] = squads_audit(listed, ADDRESS, ms, runbook).warnings
    assert warning.startswith(f"policy member CI ({runbook}) has no Vote permission in the Squads")


def test_a_policy_listing_no_members_is_not_compared() -> None:
    ms = sdk_multisig([(key(), int(ALL_PERMISSIONS)) for _ in range(3)])
    assert squads_audit(listing(), ADDRESS, ms).warnings == ()
