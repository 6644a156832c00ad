"""The policy audit of a Squads v4 multisig, as the chain holds it.

With ``backend = "squads"`` the members, threshold and time lock that matter are the
multisig account's, not the policy block's: ``programs.squads.reads.read_multisig``
reads and decodes it (the account must be owned by the Squads program), ``squads_audit``
judges it.

Refused, as the policy audit refuses them: fewer than 3 members who can vote; a threshold
under half of them (or above their number: nothing could pass); a time lock under the
policy minimum; and the runbook's own member key holding Vote (it proposes and executes,
and must never approve), or lacking Initiate or Execute (it could not do its part).
Warned: a config authority, which changes members, threshold and time lock without a vote;
and, when the policy block lists members (their names and Slack ids), a listed member who
cannot vote in the multisig or a voter the list lacks: the runbooks would show a name for a
key that cannot vote, a bare key for one that can, and mention the wrong people in Slack.
The multisig decides who votes either way; a policy listing nobody is not compared.
"""

from __future__ import annotations

from dataclasses import dataclass

from solders.pubkey import Pubkey

from domain.policy import MIN_MEMBERS, Policy
from programs.squads.client import Multisig, Permission


@dataclass(frozen=True)
class SquadsAudit:
    """What the audit found: refusals stop the run, warnings are reported."""

    address: str
    refusals: tuple[str, ...]
    warnings: tuple[str, ...]
    report: str  # markdown: the multisig as read, then the findings
    multisig: Multisig | None = None  # the account judged, as read


def squads_audit(
    policy: Policy,
    address: Pubkey,
    multisig: Multisig,
    runbook_member: Pubkey | None = None,
) -> SquadsAudit:
    """Judge ``multisig`` (read from ``address``) against ``policy``; ``runbook_member`` is
    the key the runbook proposes and executes with, when it has one."""
    refusals: list[str] = []
    warnings: list[str] = []
    voters = list(multisig.voters)
    if len(voters) < MIN_MEMBERS:
        refusals.append(
            f"the Squads multisig has {len(voters)} members with Vote permission; at least "
            f"{MIN_MEMBERS} needed"
        )
    if multisig.threshold > len(voters):
        refusals.append(
            f"threshold {multisig.threshold} is above the {len(voters)} members with Vote "
            "permission: no proposal could ever pass"
        )
    if multisig.threshold < 1 or 2 * multisig.threshold < len(voters):
        refusals.append(
            f"threshold {multisig.threshold} of {len(voters)} members with Vote permission "
            "is below half of them"
        )
    if multisig.time_lock < policy.min_timelock_seconds:
        refusals.append(
            f"the Squads time lock {multisig.time_lock} s is below the policy minimum "
            f"{policy.min_timelock_seconds} s"
        )
    if runbook_member is not None:
        member = multisig.member(runbook_member)
        if member is None:
            refusals.append(
                f"the runbook's key {runbook_member} is not a member of the Squads multisig: "
                "add it with Initiate and Execute permissions (not Vote)"
            )
        else:
            if member.permissions & Permission.VOTE:
                refusals.append(
                    f"the runbook's key {runbook_member} has Vote permission: it must never "
                    "approve; remove Vote from it (a config transaction the members approve)"
                )
            missing = [
                p.name.title()
                for p in (Permission.INITIATE, Permission.EXECUTE)
                if not member.permissions & p and p.name is not None
            ]
            if missing:
                refusals.append(
                    f"the runbook's key {runbook_member} lacks {' and '.join(missing)} "
                    "permission: it could not create or execute the upgrade; grant it"
                )
    warnings += member_list_findings(policy, multisig)
    if multisig.controlled:
        warnings.append(
            f"config authority {multisig.config_authority} can change the members, threshold "
            "and time lock without a vote; make the multisig autonomous (config authority "
            "unset) so only voted config transactions change it"
        )
    report = _report(policy, address, multisig, runbook_member, refusals, warnings)
    return SquadsAudit(str(address), tuple(refusals), tuple(warnings), report, multisig)


def _mention(policy: Policy, key: str) -> str:
    """The member as the runbooks show them, with their Slack user id when there is one (as
    text: a warning must not ping them)."""
    member = policy.member(key)
    label = f"{member.name} ({key})" if member.name else key
    return f"{label}, Slack {member.slack_user_id}" if member.slack_user_id else label


def member_list_findings(policy: Policy, multisig: Multisig) -> list[str]:
    """The policy block's member list against the multisig's voters: a listed key that is
    not a member, or a member without Vote, and a voter the list lacks; nothing when the
    list is empty (names and Slack ids are optional under Squads)."""
    listed = list(dict.fromkeys([*policy.members, *(p.pubkey for p in policy.profiles)]))
    if not listed:
        return []
    voters = [str(k) for k in multisig.voters]
    members = {str(m.key) for m in multisig.members}
    found: list[str] = []
    for key in listed:
        if key in voters:
            continue
        what = "has no Vote permission in" if key in members else "is not a member of"
        found.append(
            f"policy member {_mention(policy, key)} {what} the Squads multisig: their name "
            "and Slack mention would be shown for a key that cannot approve; remove them from "
            "the Multisig Policy block's members"
        )
    missing = [v for v in voters if v not in listed]
    if missing:
        found.append(
            f"the Squads multisig's voter(s) {', '.join(missing)} are missing from the Multisig "
            "Policy block's members: they show as bare keys and Slack mentions nobody for "
            "them; add each with their name and Slack user id"
        )
    return found


def _report(
    policy: Policy,
    address: Pubkey,
    multisig: Multisig,
    runbook_member: Pubkey | None,
    refusals: list[str],
    warnings: list[str],
) -> str:
    voters = len(multisig.voters)
    lines = [
        f"# Squads multisig `{address}`",
        "",
        "| Member | Key | Initiate | Vote | Execute |",
        "|---|---|---|---|---|",
    ]
    for m in multisig.members:
        name = policy.member(str(m.key)).name
        if m.key == runbook_member:
            name = f"{name} (this runbook)".strip()
        marks = [
            "yes" if m.permissions & p else "no"
            for p in (Permission.INITIATE, Permission.VOTE, Permission.EXECUTE)
        ]
        lines.append(f"| {name} | `{m.key}` | " + " | ".join(marks) + " |")
    config = (
        f"`{multisig.config_authority}` (changes the multisig without a vote)"
        if multisig.controlled
        else "none (autonomous: only voted config transactions change it)"
    )
    collector = f"`{multisig.rent_collector}`" if multisig.rent_collector else "none"
    lines += [
        "",
        f"- Threshold: {multisig.threshold} of {voters} members with Vote permission",
        f"- Time lock: {multisig.time_lock} s (policy minimum {policy.min_timelock_seconds} s)",
        f"- Config authority: {config}",
        f"- Rent collector: {collector}",
        f"- Transaction index: {multisig.transaction_index} "
        f"(stale up to {multisig.stale_transaction_index})",
        "",
    ]
    if refusals:
        lines += ["**Refused:**", *(f"- {r}" for r in refusals), ""]
    if warnings:
        lines += ["**Warnings:**", *(f"- {w}" for w in warnings), ""]
    if not refusals and not warnings:
        lines.append("Every check passed.")
    return "\n".join(lines).rstrip() + "\n"
