"""The daily health check's judgements, as plain functions over what was observed.

The flow gathers observations (RPC answers, accounts, balances, records) and these
functions turn each into a ``Finding`` at one of three levels:

- ``info``: as expected (or nothing to judge, and the message says why);
- ``warning``: needs a person within hours (a low fee payer, a stuck migration, a key
  overdue for rotation, an approved proposal left unexecuted);
- ``critical``: needs a person now (the RPC is down, the chain stalled, a program is
  missing, its upgrade authority is not the expected one, or its code changed without an
  executed proposal — an upgrade nobody proposed).

Seed 001's alert thresholds: "unauthorized authority usage" and "unexpected account
modifications" are critical; "key rotation due dates approaching" is a warning.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from programs.rpc import ProgramInfo
from programs.squads.client import Multisig
from programs.squads.client import Proposal as SquadsProposal

Level = Literal["info", "warning", "critical"]
LEVELS: tuple[Level, ...] = ("info", "warning", "critical")
LAMPORTS_PER_SOL = 1_000_000_000
# Migration rows in these states are finished; any other state should keep moving.
FINISHED_MIGRATION_STATES = frozenset(
    {"completed", "complete", "done", "migrated", "verified", "failed", "cancelled", "archived"}
)
# An approved proposal whose timelock ended this long ago without executing is forgotten.
UNEXECUTED_GRACE = timedelta(hours=24)


@dataclass(frozen=True)
class Finding:
    """One line of the health table."""

    check: str
    subject: str
    level: Level
    message: str
    # What the next run compares with (a Squads multisig's config digest); kept in the
    # recorded row, absent from rows that carry none.
    digest: str | None = None

    def row(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class ProgramObservation:
    """What the chain shows for one managed program (``error`` when it could not be read)."""

    program_id: str
    exists: bool
    executable: bool
    info: ProgramInfo | None = None
    error: str | None = None


@dataclass(frozen=True)
class HashVerdict:
    findings: list[Finding]
    # Record the current hash as the new baseline (first sighting, an executed proposal,
    # or an operator who investigated and accepted it). An unexplained change keeps the
    # old baseline, so the alert repeats until someone acts.
    record_baseline: bool


def worst(findings: Iterable[Finding]) -> Level:
    """The highest level among ``findings`` (info when there are none)."""
    return max((f.level for f in findings), key=LEVELS.index, default="info")


def by_level(findings: Iterable[Finding], level: Level) -> list[Finding]:
    return [f for f in findings if f.level == level]


def rpc_unreachable(cluster: str, error: str) -> Finding:
    return Finding(
        "rpc",
        cluster,
        "critical",
        f"no RPC endpoint answers ({error}); every chain check was skipped. Check the "
        "cluster block's URLs and the provider's status page.",
    )


def check_slot(
    cluster: str,
    first: int,
    second: int,
    waited_seconds: float,
    *,
    localnet: bool,
    previous_slot: int | None = None,
) -> Finding:
    """The slot must advance between two reads (and never go back since the last run)."""
    if previous_slot is not None and second < previous_slot:
        if localnet:  # a localnet starts over when it restarts
            return Finding(
                "slot", cluster, "info", f"slot {second}: the localnet restarted since the last run"
            )
        return Finding(
            "slot",
            cluster,
            "critical",
            f"slot {second} is behind the {previous_slot} seen by the previous run: the RPC "
            "node is lagging or points at another cluster",
        )
    if second > first:
        return Finding(
            "slot",
            cluster,
            "info",
            f"slot advancing ({first} -> {second} in {waited_seconds:.1f} s)",
        )
    if localnet:
        # The localnet makes a slot per transaction only; an idle one does not advance.
        return Finding(
            "slot", cluster, "info", f"slot {second}; a localnet advances only with transactions"
        )
    return Finding(
        "slot",
        cluster,
        "critical",
        f"slot stuck at {second} for {waited_seconds:.1f} s: the cluster or this RPC node "
        "has stalled; try another endpoint and check the cluster's status",
    )


def check_version(cluster: str, version: str, min_version: str | None) -> Finding:
    if min_version and _version_tuple(version) < _version_tuple(min_version):
        return Finding(
            "version",
            cluster,
            "warning",
            f"solana-core {version} is older than the minimum {min_version}",
        )
    return Finding("version", cluster, "info", f"solana-core {version}")


def database_unreachable(error: str) -> Finding:
    return Finding(
        "database",
        "records",
        "critical",
        f"the records database is unreachable ({error}); hash, proposal, migration and key "
        "checks were skipped",
    )


def check_program(
    name: str, expected_authority: str | None, seen: ProgramObservation
) -> list[Finding]:
    """Exists, is executable, and has the expected upgrade authority."""
    subject = f"{name} ({seen.program_id})"
    if seen.error is not None:
        return [Finding("program", subject, "critical", seen.error)]
    if not seen.exists:
        return [
            Finding(
                "program",
                subject,
                "critical",
                "the program account does not exist on this cluster (closed, or a wrong id "
                "in the managed programs block)",
            )
        ]
    findings = []
    if not seen.executable:
        findings.append(
            Finding("executable", subject, "critical", "the program account is not executable")
        )
    info = seen.info
    if info is None:
        return findings
    if info.authority != expected_authority:
        expected = expected_authority or "none (immutable)"
        actual = info.authority or "none (immutable)"
        findings.append(
            Finding(
                "authority",
                subject,
                "critical",
                f"upgrade authority is {actual}, expected {expected}: the authority changed "
                "outside the key-rotation runbook. Treat the old key as compromised until "
                "explained.",
            )
        )
    else:
        findings.append(
            Finding("authority", subject, "info", f"upgrade authority {actual_or_none(info)}")
        )
    return findings


def check_hash(
    name: str,
    info: ProgramInfo,
    recorded_hash: str | None,
    executed_proposal: int | None,
    *,
    accepted: bool = False,
) -> HashVerdict:
    """The ProgramData hash must equal the last recorded one, unless a recorded, executed
    proposal made exactly this change."""
    subject = f"{name} ({info.program_id})"
    if recorded_hash is None:
        return HashVerdict(
            [Finding("hash", subject, "info", f"sha256 {info.sha256} recorded as the baseline")],
            True,
        )
    if recorded_hash == info.sha256:
        return HashVerdict(
            [Finding("hash", subject, "info", f"sha256 {info.sha256} unchanged")], False
        )
    if executed_proposal is not None:
        return HashVerdict(
            [
                Finding(
                    "hash",
                    subject,
                    "info",
                    f"sha256 {recorded_hash[:12]}… -> {info.sha256[:12]}…, the change executed "
                    f"by proposal #{executed_proposal}",
                )
            ],
            True,
        )
    if accepted:
        return HashVerdict(
            [
                Finding(
                    "hash",
                    subject,
                    "warning",
                    f"sha256 {recorded_hash} -> {info.sha256} without a recorded proposal, "
                    "accepted as the new baseline by the operator",
                )
            ],
            True,
        )
    return HashVerdict(
        [
            Finding(
                "hash",
                subject,
                "critical",
                f"UNEXPECTED UPGRADE: the code changed from sha256 {recorded_hash} to "
                f"{info.sha256} (ProgramData slot {info.slot}) and no executed proposal made "
                "this change. Engage the kill switch if the change is not yours, find who "
                "holds the upgrade authority, and re-run with accept_current_hash_of once "
                "explained.",
            )
        ],
        False,
    )


def check_balance(
    label: str, address: str, lamports: int, warn_below_sol: float, critical_below_sol: float
) -> Finding:
    sol = lamports / LAMPORTS_PER_SOL
    subject = f"{label} ({address})"
    if sol < critical_below_sol:
        return Finding(
            "fee-payer",
            subject,
            "critical",
            f"balance {sol:.4f} SOL is below {critical_below_sol} SOL: runbooks cannot pay for "
            "transactions; fund it now",
        )
    if sol < warn_below_sol:
        return Finding(
            "fee-payer",
            subject,
            "warning",
            f"balance {sol:.4f} SOL is below {warn_below_sol} SOL; top it up",
        )
    return Finding("fee-payer", subject, "info", f"balance {sol:.4f} SOL")


@dataclass(frozen=True)
class TimelockStatus:
    proposal_id: int
    program_id: str
    ends_at: datetime
    expiring: bool  # ends within the window: announce it


def check_timelocks(
    proposals: Iterable[Any], now: datetime, window: timedelta
) -> tuple[list[Finding], list[TimelockStatus]]:
    """Approved proposals: the ones whose timelock ends soon, and forgotten ones."""
    findings: list[Finding] = []
    statuses: list[TimelockStatus] = []
    for p in proposals:
        ends = p.timelock_ends_at
        if ends is None:
            continue
        subject = f"proposal #{p.id} ({p.program_id})"
        left = ends - now
        if left > window:
            findings.append(Finding("timelock", subject, "info", f"in timelock until {_iso(ends)}"))
            statuses.append(TimelockStatus(p.id, p.program_id, ends, False))
        elif left > timedelta(0):
            hours = left.total_seconds() / 3600
            findings.append(
                Finding(
                    "timelock",
                    subject,
                    "info",
                    f"timelock ends in {hours:.1f} h ({_iso(ends)}); the {p.kind} can execute then",
                )
            )
            statuses.append(TimelockStatus(p.id, p.program_id, ends, True))
        elif -left > UNEXECUTED_GRACE:
            findings.append(
                Finding(
                    "timelock",
                    subject,
                    "warning",
                    f"approved, timelock ended {_iso(ends)}, still not executed: resume its run "
                    "or cancel the proposal",
                )
            )
    return findings, statuses


def check_migrations(
    rows: Sequence[Mapping[str, Any]] | None,
    now: datetime,
    stuck_after: timedelta,
    *,
    table: str,
    absent_reason: str | None = None,
) -> list[Finding]:
    """Unfinished migration rows whose last activity is older than ``stuck_after``.

    ``rows`` is None when the migration records are not there to judge.
    """
    if rows is None:
        return [
            Finding(
                "migrations",
                table,
                "info",
                f"not checked: {absent_reason or 'no migration records'}",
            )
        ]
    stuck = [
        r
        for r in rows
        if str(r.get("status", "")).lower() not in FINISHED_MIGRATION_STATES
        and r.get("last_activity") is not None
        and now - r["last_activity"] > stuck_after
    ]
    if not stuck:
        unfinished = sum(
            1 for r in rows if str(r.get("status", "")).lower() not in FINISHED_MIGRATION_STATES
        )
        return [Finding("migrations", table, "info", f"{unfinished} in progress, none stuck")]
    return [
        Finding(
            "migrations",
            f"{table} {r.get('key')}",
            "warning",
            f"status {r.get('status')} with no progress since {_iso(r['last_activity'])}: "
            "check the migration run's logs and resume it",
        )
        for r in stuck
    ]


def check_kill_switches(switches: Iterable[Any]) -> list[Finding]:
    """Engaged kill switches (recorded by the kill-switch runbook): runbooks cannot write."""
    return [
        Finding(
            "kill-switch",
            s.scope,
            "warning",
            f"engaged since {_iso(s.changed_at)} by {s.actor}: {s.reason}. Upgrades, "
            "migrations and authority changes are refused until a signed-off release.",
        )
        for s in switches
    ]


def check_keys(overdue: Iterable[Any]) -> list[Finding]:
    """Registered keys past their rotation date (see ``domain.key_rotation``)."""
    return [
        Finding(
            "key-rotation",
            f"{k.key.label} ({k.key.pubkey})",
            "warning",
            f"{k.key.role} key overdue for rotation since {_iso(k.due_at)}; run the key "
            "rotation runbook",
        )
        for k in overdue
    ]


# --- Squads v4 multisig --------------------------------------------------------------

SQUADS_CONFIG_CHECK = "squads-config"


def squads_config(multisig: Multisig) -> dict[str, Any]:
    """What decides who can change the program: members and permissions, threshold,
    time lock, config authority, rent collector (the transaction counters are not)."""
    return {
        "members": sorted([str(m.key), m.permissions] for m in multisig.members),
        "threshold": multisig.threshold,
        "time_lock": multisig.time_lock,
        "config_authority": str(multisig.config_authority),
        "rent_collector": None if multisig.rent_collector is None else str(multisig.rent_collector),
    }


def squads_config_digest(multisig: Multisig) -> str:
    canonical = json.dumps(squads_config(multisig), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def previous_squads_digest(
    reports: Iterable[Sequence[Mapping[str, Any]]], address: str
) -> str | None:
    """The config digest of ``address`` in the newest report (of ``reports``, newest
    first) that recorded one."""
    for findings in reports:
        for row in findings:
            if (
                row.get("check") == SQUADS_CONFIG_CHECK
                and row.get("subject") == address
                and row.get("digest")
            ):
                return str(row["digest"])
    return None


def check_squads_config(address: str, multisig: Multisig, previous: str | None) -> Finding:
    """The multisig's config must be the one the last run saw; a change is a warning
    (members, threshold or time lock changed: confirm it was voted and meant)."""
    digest = squads_config_digest(multisig)
    summary = f"{multisig.threshold} of {len(multisig.members)}, time lock {multisig.time_lock} s"
    if multisig.controlled:
        summary += f", config authority {multisig.config_authority}"
    if previous is None:
        message = f"config ({summary}) recorded as the baseline"
        return Finding(SQUADS_CONFIG_CHECK, address, "info", message, digest)
    if previous == digest:
        return Finding(
            SQUADS_CONFIG_CHECK, address, "info", f"config unchanged ({summary})", digest
        )
    return Finding(
        SQUADS_CONFIG_CHECK,
        address,
        "warning",
        f"the multisig's config changed since the last health run (now {summary}; members, "
        "permissions, threshold, time lock, config authority or rent collector): confirm in "
        "the Squads app that the change was voted and intended, and update the policy block",
        digest,
    )


def check_squads_proposals(
    address: str,
    multisig: Multisig,
    proposals: Mapping[int, SquadsProposal | None],
    now: datetime,
    stuck_after: timedelta,
) -> list[Finding]:
    """Proposals left Active longer than ``stuck_after``, or Approved and not executed
    ``stuck_after`` past the end of their time lock."""
    findings: list[Finding] = []
    open_count = 0
    at = now.timestamp()
    for index, proposal in sorted(proposals.items()):
        if proposal is None or proposal.status.timestamp is None:
            continue
        kind, since = proposal.status.kind, proposal.status.timestamp
        subject = f"{address} proposal {index}"
        if kind == "Active":
            open_count += 1
            if at - since > stuck_after.total_seconds():
                hours = (at - since) / 3600
                findings.append(
                    Finding(
                        "squads-proposal",
                        subject,
                        "warning",
                        f"Active for {hours:.1f} h without reaching the threshold: ask the "
                        "members to vote, or cancel it",
                    )
                )
        elif kind == "Approved":
            open_count += 1
            executable_at = since + multisig.time_lock
            if at - executable_at > stuck_after.total_seconds():
                hours = (at - executable_at) / 3600
                findings.append(
                    Finding(
                        "squads-proposal",
                        subject,
                        "warning",
                        f"Approved, time lock ended {hours:.1f} h ago, still not executed: "
                        "resume its run or have the members cancel it",
                    )
                )
    if not findings:
        findings.append(
            Finding("squads-proposal", address, "info", f"{open_count} open, none stuck")
        )
    return findings


def table_rows(findings: Iterable[Finding]) -> list[dict[str, str]]:
    """The artifact's rows, the worst first (the order of checks kept within a level)."""
    ordered = sorted(findings, key=lambda f: -LEVELS.index(f.level))
    return [f.row() for f in ordered]


def actual_or_none(info: ProgramInfo) -> str:
    return info.authority or "none (immutable)"


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
