"""Runbook: the metrics dashboard (seeds 000 and 003's key metrics).

1. Read the figures from the records database: proposals by kind and status, time from
   proposal to threshold and to execution, sign-off latency per member, each runbook's
   success rate, migration throughput.
2. Publish them as a markdown artifact (``metrics-dashboard``) with bar charts: tables
   and charts the on-call engineer reads in the Prefect UI (Artifacts).

The same figures are served live to Prometheus by ``runbooks metrics``.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact

from domain import dashboard
from domain.forms import titled_form
from store.metrics import RecordsMetrics, collect_metrics
from tasks.records import records_engine

ARTIFACT_KEY = "metrics-dashboard"


@task(name="read-metrics", retries=2, retry_delay_seconds=2)
def read_metrics() -> RecordsMetrics:
    return collect_metrics(records_engine())


@flow(name="metrics-dashboard", persist_result=False)
@titled_form
async def metrics_dashboard() -> dict[str, Any]:
    logger = get_run_logger()
    figures = read_metrics()
    await acreate_markdown_artifact(
        key=ARTIFACT_KEY,
        markdown=dashboard.render(figures),
        description="Proposals, sign-off times, runbook success rates, migration throughput",
    )
    ratios = {r.runbook: r.success_ratio for r in figures.runbooks.values()}
    logger.info(
        "%d proposals; success rates %s",
        sum(figures.proposals.values()),
        {k: dashboard.percent(v) for k, v in ratios.items()},
    )
    return {
        "proposals": sum(figures.proposals.values()),
        "success_ratio": ratios,
        "migrations": len(figures.migrations),
    }
