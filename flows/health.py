"""Runbook: daily health check.

Seed 001's daily health monitoring and seed 002's daily health check, for a Solana
program team:

1. The cluster: an RPC endpoint answers, the slot advances, the node's version.
2. The records database answers.
3. Each managed program (the ``ManagedPrograms`` block: program ids with their expected
   upgrade authority, and the fee payers): the account exists and is executable, the
   upgrade authority is the expected one, and the ProgramData hash is the last recorded
   one — a change that no executed proposal made is an upgrade nobody proposed: critical.
4. Fee payers hold enough SOL.
5. Proposals whose timelock ends soon (announced on Slack) or ended without execution.
6. Migrations stuck in flight (the migration runbook's records; skipped, and said so,
   where they are not installed), engaged kill switches, and keys overdue for rotation.
7. With a policy on the Squads backend: the multisig's config (members, permissions,
   threshold, time lock, config authority, rent collector) against the last run's, and
   its proposals stuck Active, or Approved and not executed after the time lock.

Every finding is info, warning or critical; the run publishes them as a table artifact,
records them, alerts Slack on warning or critical, and fails on critical — after waiting
(``ack_timeout_seconds``) for the on-call engineer to acknowledge the alert, from Slack or
the run's Resume form.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_table_artifact
from prefect.runtime import flow_run
from pydantic import Field

from blocks import load_block
from blocks.cluster import SolanaCluster
from blocks.multisig import MultisigPolicy
from blocks.programs import ManagedPrograms
from core.errors import ChainError, HealthCheckFailed, RecordsError
from domain import health, key_rotation, messages
from domain.forms import titled_form
from domain.health import Finding
from flows._confirmations import wait_for_confirmation
from flows._signoff import pause_poll_seconds
from store import db
from store.records import health as health_records
from store.records import housekeeping, kill_switch
from store.records import key_rotation as key_rotation_records
from tasks import health as tasks
from tasks.notify import notify
from tasks.records import current_run_id, records_engine

# The migration runbook's records (Alembic branch 0002): one row per migration run.
MIGRATION_TABLE = "migration_runs"
MIGRATION_IN_FLIGHT = ("running", "incomplete")


@flow(name="daily-health", persist_result=False)
@titled_form
async def daily_health(
    cluster_block: str = "localnet",
    programs_block: str = "managed-programs",
    slack_block: str | None = None,
    timelock_window_hours: Annotated[float, Field(ge=0)] = 24.0,
    stuck_migration_hours: Annotated[float, Field(gt=0)] = 6.0,
    slot_sample_seconds: Annotated[float, Field(ge=0)] = 2.0,
    min_version: str | None = None,
    accept_current_hash_of: list[str] = [],  # noqa: B006 - Prefect parameters are copied per run
    ack_timeout_seconds: Annotated[int, Field(ge=0)] = 3600,
    policy_block: str | None = None,
    stuck_proposal_hours: Annotated[float, Field(gt=0)] = 24.0,
) -> dict[str, Any]:
    """Check the cluster, the records database and every managed program; report.

    Args:
        cluster_block: The SolanaCluster block of the cluster to check.
        programs_block: The ManagedPrograms block: program ids with their expected
            upgrade authority, and the fee payers to watch.
        slack_block: The SlackChannel block to alert; empty logs the messages instead.
        timelock_window_hours: Announce proposals whose timelock ends within this many
            hours.
        stuck_migration_hours: A migration without progress for this many hours is
            reported stuck.
        slot_sample_seconds: Seconds between the two slot reads that show the cluster
            advancing.
        min_version: The minimum solana-core version; below it is a warning. Empty: no
            check.
        accept_current_hash_of: Program ids whose unexplained code change has been
            investigated: their current hash becomes the baseline (recorded as a warning).
        ack_timeout_seconds: On a critical finding, how long the run waits for the on-call
            engineer to acknowledge the alert before it fails; 0 fails at once.
        policy_block: The MultisigPolicy block; on the squads backend its multisig's
            config and proposals are checked. Empty: no multisig checks.
        stuck_proposal_hours: A Squads proposal Active this long, or Approved and not
            executed this long after its time lock, is reported stuck.
    """
    logger = get_run_logger()
    now = datetime.now(UTC)
    cluster = await load_block(SolanaCluster, cluster_block)
    name = cluster.cluster
    findings: list[Finding] = []

    managed = await _load_managed(programs_block, findings)

    # 1. The cluster.
    observed: tasks.ClusterObservation | None = None
    try:
        observed = await tasks.observe_cluster(cluster, slot_sample_seconds)
    except Exception as exc:  # whatever stops the observation is the finding
        findings.append(health.rpc_unreachable(name, _first_line(exc)))

    # 2. The records database.
    engine = None
    try:
        engine = records_engine()
        revision = db.current_revision(engine)
        findings.append(Finding("database", "records", "info", f"reachable (revision {revision})"))
    except RecordsError as exc:
        findings.append(health.database_unreachable(str(exc)))

    if observed is not None:
        previous = _previous_slot(engine, name)
        findings.append(
            health.check_slot(
                name,
                observed.first_slot,
                observed.second_slot,
                observed.waited_seconds,
                localnet=name == "localnet",
                previous_slot=previous,
            )
        )
        findings.append(health.check_version(name, observed.version, min_version))

    # 3-4. Programs and fee payers.
    if observed is not None and managed is not None:
        try:
            findings += await _check_programs(cluster, managed, engine, set(accept_current_hash_of))
            if managed.fee_payers:
                addresses = [f.address for f in managed.fee_payers]
                balances = await tasks.read_balances(cluster, addresses)
                findings += [
                    health.check_balance(
                        f.label,
                        f.address,
                        balances[f.address],
                        f.warn_below_sol,
                        f.critical_below_sol,
                    )
                    for f in managed.fee_payers
                ]
        except (ChainError, RecordsError, OSError) as exc:
            findings.append(
                Finding("program", name, "critical", f"could not finish: {_first_line(exc)}")
            )

    # 5-6. Proposals, migrations, keys.
    expiring: list[health.TimelockStatus] = []
    if engine is not None:
        found, statuses = health.check_timelocks(
            health_records.proposals_in_timelock(engine, name),
            now,
            timedelta(hours=timelock_window_hours),
        )
        findings += found
        expiring = [s for s in statuses if s.expiring]
        in_flight = housekeeping.rows_in_state(
            engine,
            table=MIGRATION_TABLE,
            status_column="status",
            activity_column="updated_at",
            statuses=MIGRATION_IN_FLIGHT,
        )
        findings += health.check_migrations(
            None if isinstance(in_flight, str) else in_flight,
            now,
            timedelta(hours=stuck_migration_hours),
            table=MIGRATION_TABLE,
            absent_reason=in_flight if isinstance(in_flight, str) else None,
        )
        if managed is not None:
            switches = {
                (k.cluster, k.program_id): k
                for p in managed.programs
                for k in kill_switch.engaged_kill_switches(engine, name, p.program_id)
            }
            findings += health.check_kill_switches(switches.values())
        dues = key_rotation.review(
            key_rotation_records.managed_keys(engine, name), now, key_rotation.DEFAULT_REMIND_DAYS
        )
        findings += health.check_keys(d for d in dues if d.status == "overdue")

    # 7. The Squads multisig.
    if observed is not None and policy_block:
        findings += await _check_squads(
            cluster, policy_block, engine, now, timedelta(hours=stuck_proposal_hours)
        )

    # Report: records, artifact, Slack.
    level = health.worst(findings)
    rows = health.table_rows(findings)
    report = None
    if engine is not None:
        report = tasks.record_report(
            cluster=name,
            level=level,
            findings=rows,
            slot=observed.second_slot if observed else None,
            at=now,
        )
    await acreate_table_artifact(
        key=_artifact_key(f"health-{name}"),
        table=rows,
        description=f"Daily health of {name}: {level} "
        f"({len(health.by_level(findings, 'critical'))} critical, "
        f"{len(health.by_level(findings, 'warning'))} warning)",
    )
    logger.info("health of %s: %s (%d findings)", name, level, len(findings))

    run_id = current_run_id()
    ack_key = f"ack-health-{report.id if report else 'unrecorded'}"
    wait_for_ack = level == "critical" and ack_timeout_seconds > 0 and run_id is not None
    if level != "info":
        await notify(
            *messages.health_alert(
                level=level,
                cluster=name,
                findings=rows,
                run_url=flow_run.ui_url,
                ack=(run_id, ack_key) if wait_for_ack else None,
            ),
            slack_block=slack_block,
        )
    for status in expiring:
        await notify(
            *messages.timelock_expiring(
                proposal_id=status.proposal_id,
                program=status.program_id,
                ends_at=status.ends_at.isoformat(timespec="seconds"),
            ),
            slack_block=slack_block,
        )

    acknowledged_by = None
    if wait_for_ack:
        answer = await wait_for_confirmation(
            key=ack_key,
            description=_ack_description(name, findings),
            timeout_seconds=ack_timeout_seconds,
            poll_interval=pause_poll_seconds(),
        )
        if answer is None:
            logger.warning(
                "nobody acknowledged the critical alert within %d s", ack_timeout_seconds
            )
        else:
            acknowledged_by = answer.by
            if report is not None:
                tasks.acknowledge(report.id, answer.by)
            logger.info("alert acknowledged by %s", answer.by)

    if level == "critical":
        raise HealthCheckFailed(health.by_level(findings, "critical"))
    return {
        "cluster": name,
        "level": level,
        "report_id": report.id if report else None,
        "findings": rows,
        "acknowledged_by": acknowledged_by,
    }


async def _load_managed(block: str, findings: list[Finding]) -> ManagedPrograms | None:
    try:
        return await load_block(ManagedPrograms, block)
    except ValueError as exc:  # Prefect: no block document of that name
        findings.append(
            Finding(
                "config",
                block,
                "warning",
                f"no managed programs block {block!r} ({exc}); program, authority, hash and fee "
                "payer checks were skipped. Create it in Blocks > Managed Programs.",
            )
        )
        return None


async def _check_programs(
    cluster: SolanaCluster, managed: ManagedPrograms, engine: Any, accept: set[str]
) -> list[Finding]:
    findings: list[Finding] = []
    observed = await tasks.observe_programs(cluster, [p.program_id for p in managed.programs])
    for program in managed.programs:
        seen = observed[program.program_id]
        findings += health.check_program(program.name, program.expected_authority, seen)
        info = seen.info
        if info is None:
            continue
        if engine is None:
            findings.append(
                Finding("hash", program.name, "warning", "not compared: no records database")
            )
            continue
        recorded = health_records.get_program_hash(engine, cluster.cluster, info.program_id)
        executed = None
        if recorded is not None and recorded.hash != info.sha256:
            executed = health_records.executed_change_to_hash(
                engine, cluster.cluster, info.program_id, info.sha256
            )
        verdict = health.check_hash(
            program.name,
            info,
            recorded.hash if recorded else None,
            executed,
            accepted=info.program_id in accept,
        )
        findings += verdict.findings
        if verdict.record_baseline:
            tasks.record_program_hash(cluster.cluster, info.program_id, info.sha256, info.slot)
    return findings


async def _check_squads(
    cluster: SolanaCluster, policy_block: str, engine: Any, now: datetime, stuck: timedelta
) -> list[Finding]:
    try:
        policy = await load_block(MultisigPolicy, policy_block)
    except ValueError as exc:  # BlockNotFound: named, and the other checks still run
        return [Finding("config", policy_block, "warning", f"{_first_line(exc)}; not checked")]
    if policy.backend != "squads":
        return []
    address = policy.squads_multisig.strip()
    if not address:
        return [
            Finding(
                health.SQUADS_CONFIG_CHECK,
                policy_block,
                "warning",
                "the policy's backend is squads but it names no multisig: set "
                "squads_multisig in the policy block; the multisig was not checked",
            )
        ]
    try:
        seen = await tasks.observe_squads(cluster, address)
    except (ChainError, ValueError) as exc:  # a wrong address or account: the finding
        return [Finding(health.SQUADS_CONFIG_CHECK, address, "critical", _first_line(exc))]
    previous = None
    if engine is not None:
        reports = health_records.health_reports(engine, cluster.cluster, limit=30)
        previous = health.previous_squads_digest((r.findings for r in reports), address)
    return [
        health.check_squads_config(address, seen.multisig, previous),
        *health.check_squads_proposals(address, seen.multisig, seen.proposals, now, stuck),
    ]


def _previous_slot(engine: Any, cluster: str) -> int | None:
    if engine is None:
        return None
    last = health_records.health_reports(engine, cluster, limit=1)
    return last[0].slot if last else None


def _ack_description(cluster: str, findings: list[Finding]) -> str:
    lines = [
        f"## Critical health alert on {cluster}",
        "",
        "Acknowledge that you are on it (decision **acknowledge**, your name). The run "
        "fails either way once acknowledged or timed out; the acknowledgement is recorded.",
        "",
        "| check | subject | message |",
        "|---|---|---|",
    ]
    lines += [
        f"| {f.check} | {f.subject} | {f.message} |" for f in health.by_level(findings, "critical")
    ]
    return "\n".join(lines)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _artifact_key(raw: str) -> str:
    # Artifact keys: lowercase letters, digits and dashes only.
    return re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")
