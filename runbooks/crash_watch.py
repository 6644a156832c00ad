"""Crashes Prefect sees: served runs send heartbeats, and two automations act on them.

A flow run whose process is killed (kill -9, a lost machine) stops sending
``prefect.flow-run.heartbeat`` events; without them Prefect shows it Running or Paused
forever. "crash silent flow runs" (Prefect's documented zombie-flow automation: a
proactive trigger) sets a run Crashed when no heartbeat nor final state follows its last
heartbeat within ``crash_after`` seconds. "retry crashed runbooks" sets a Crashed run of
a runbook that is safe to rerun back to Scheduled (AwaitingRetry), at most twice per run,
for the served deployment to pick up again.

Safe to rerun as the same flow run: the upgrade and the rollback (the proposal is keyed by
the run's id; a restart finds it, picks up sign-offs left at earlier pauses and votes on
chain, executes once), the migration (per-account records and an on-chain check before
each migrate) and the daily health check (read-only; its report is recorded once per run).
Not retried: key rotation, the kill switch, backup and restore, housekeeping, the review
and register runs (an operator decides after a crash).
"""

from __future__ import annotations

from datetime import timedelta

from prefect import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

# Prefect's floor for flow-run heartbeats (PREFECT_FLOWS_HEARTBEAT_FREQUENCY >= 30).
HEARTBEAT_SECONDS = 30
# Four missed heartbeats: a busy host's late one is not a crash.
CRASH_AFTER_SECONDS = 120
# Flow names (prefect.yaml) whose crashed runs are rerun; see the module's text for why.
RETRIED_FLOWS = (
    "program-upgrade",
    "emergency-rollback",
    "account-migration",
    "daily-health",
)
# A run that crashed on its first and second attempts is left Crashed for an operator.
MAX_RUN_COUNT_RETRIED = 2

CRASH_AUTOMATION = "crash silent flow runs"
RETRY_AUTOMATION = "retry crashed runbooks"


def crash_automation(crash_after: float = CRASH_AFTER_SECONDS) -> AutomationCore:
    """Prefect's zombie-flow automation: no heartbeat nor end after a heartbeat -> Crashed."""
    return AutomationCore(
        name=CRASH_AUTOMATION,
        description="A run that stopped sending heartbeats is marked Crashed.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
                # A suspended run (a long timelock) has no process and sends none.
                "prefect.flow-run.Suspended",
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=crash_after),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {crash_after:.0f} s: the run's process is gone",
                # The run may be Paused (killed at a sign-off); the process is gone anyway.
                force=True,
            )
        ],
    )


def retry_automation(flows: tuple[str, ...] = RETRIED_FLOWS) -> AutomationCore:
    """A Crashed run of one of ``flows`` goes back to Scheduled, for its first two runs."""
    return AutomationCore(
        name=RETRY_AUTOMATION,
        description="A crashed run of a runbook that is safe to rerun is scheduled again.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Crashed"},
            match=ResourceSpecification(
                {
                    "prefect.resource.id": ["prefect.flow-run.*"],
                    "prefect.run-count": [str(n) for n in range(1, MAX_RUN_COUNT_RETRIED + 1)],
                }
            ),
            match_related=ResourceSpecification(
                {"prefect.resource.role": "flow", "prefect.resource.name": list(flows)}
            ),
            for_each={"prefect.resource.id"},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.SCHEDULED,
                name="AwaitingRetry",
                message="crashed; rerun (the runbook finds every step it had done)",
                force=True,
            )
        ],
    )


async def ensure_crash_automations(
    crash_after: float = CRASH_AFTER_SECONDS, retried: tuple[str, ...] = RETRIED_FLOWS
) -> None:
    """Create both automations, replacing any of the same names (``make up`` runs again)."""
    async with get_client() as client:
        for automation in (crash_automation(crash_after), retry_automation(retried)):
            for existing in await client.read_automations_by_name(automation.name):
                await client.delete_automation(existing.id)
            await client.create_automation(automation)
