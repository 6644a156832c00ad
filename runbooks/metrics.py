"""The records' figures for Prometheus: a collector that reads them at scrape time and the
HTTP endpoint that serves it (``runbooks metrics``; ``runbooks up`` starts one).

Every figure is recomputed from the records database when Prometheus scrapes (nothing is
cached in this process), so several endpoints, or a restarted one, all report the same.
Counts are gauges, not counters: housekeeping removes old proposals, so they can go down.
When the records cannot be read the scrape still answers, with ``runbooks_records_up 0``
and no other records figure; the reason goes to this process's log, never to the scrape
(it could name the database).

Metric names are listed in the README (Metrics) and in ``METRICS`` below.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from core.errors import InputError, RecordsError
from core.settings import settings
from store import db
from store.metrics import RecordsMetrics, collect_metrics

DEFAULT_HOST = "127.0.0.1"
# 9464: the port OpenTelemetry's Prometheus exporter uses; free of Prefect's 4200.
DEFAULT_PORT = 9464
HOST_ENV = "RUNBOOKS_METRICS_HOST"
PORT_ENV = "RUNBOOKS_METRICS_PORT"

# name -> (type, labels, help): the README's table is this dict.
METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "runbooks_records_up": ("gauge", (), "1 when the records database answered this scrape"),
    "runbooks_records_scrape_duration_seconds": (
        "gauge",
        (),
        "Time this scrape spent reading the records",
    ),
    "runbooks_proposals": ("gauge", ("kind", "status"), "Proposals in the records"),
    "runbooks_executions": (
        "gauge",
        ("kind", "outcome"),
        "Recorded executions of proposals (upgraded, already-applied, failed)",
    ),
    "runbooks_proposal_time_to_threshold_seconds": (
        "summary",
        ("kind",),
        "From proposal to sign-off threshold met",
    ),
    "runbooks_proposal_time_to_execution_seconds": (
        "summary",
        ("kind",),
        "From proposal to execution, executed proposals",
    ),
    "runbooks_signoff_latency_seconds": (
        "summary",
        ("member",),
        "From proposal to a member's accepted approve/reject",
    ),
    "runbooks_signoff_latency_max_seconds": (
        "gauge",
        ("member",),
        "A member's slowest accepted approve/reject",
    ),
    "runbooks_signoffs": (
        "gauge",
        ("member", "decision", "accepted"),
        "Sign-off attempts, refused ones included",
    ),
    "runbooks_runbook_runs": (
        "gauge",
        ("runbook", "outcome"),
        "Finished runbook runs by outcome (proposal kinds, migration, backup, health)",
    ),
    "runbooks_runbook_success_ratio": (
        "gauge",
        ("runbook",),
        "succeeded / (succeeded + failed); absent until one of either",
    ),
    "runbooks_migration_accounts": (
        "gauge",
        ("migration", "program", "status"),
        "Accounts of a migration run by state",
    ),
    "runbooks_migration_elapsed_seconds": (
        "gauge",
        ("migration", "program"),
        "A migration run's elapsed time (to finish, or to its last progress)",
    ),
    "runbooks_migration_throughput_accounts_per_second": (
        "gauge",
        ("migration", "program"),
        "Accounts migrated per second of a migration run",
    ),
    "runbooks_kill_switch_engaged": (
        "gauge",
        ("cluster", "program"),
        "1 while the kill switch is engaged (program * : the whole cluster)",
    ),
}

log = logging.getLogger(__name__)


class RecordsCollector(Collector):
    """Reads the records at every scrape; ``url`` None means ``DATABASE_URL``."""

    def __init__(self, url: str | None = None) -> None:
        self._url = url
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def describe(self) -> list[Metric]:
        # Nothing to check at registration; a describe() that read the records would
        # make registering fail whenever the database is down.
        return []

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        try:
            figures = collect_metrics(self._get_engine())
        except RecordsError as exc:
            # RecordsError messages name the database by its redacted URL.
            log.warning("metrics scrape: the records database did not answer: %s", exc)
            figures = None
        except Exception as exc:  # a scrape must answer whatever went wrong
            log.warning("metrics scrape: reading the records failed (%s)", type(exc).__name__)
            figures = None
        yield _gauge("runbooks_records_up", [((), 0.0 if figures is None else 1.0)])
        yield _gauge(
            "runbooks_records_scrape_duration_seconds", [((), time.perf_counter() - started)]
        )
        if figures is not None:
            yield from families(figures)

    def _get_engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                engine = db.create_engine(self._url)
                try:
                    # As every flow does at start-up (idempotent): a fresh database then
                    # reads as empty records rather than as missing tables.
                    db.migrate(engine)
                except BaseException:
                    engine.dispose()
                    raise
                self._engine = engine
            return self._engine


def families(m: RecordsMetrics) -> Iterator[Metric]:
    """The Prometheus metric families of one reading of the records."""
    yield _gauge("runbooks_proposals", [(k, n) for k, n in sorted(m.proposals.items())])
    yield _gauge("runbooks_executions", [(k, n) for k, n in sorted(m.executions.items())])
    for name, durations in (
        ("runbooks_proposal_time_to_threshold_seconds", m.time_to_threshold),
        ("runbooks_proposal_time_to_execution_seconds", m.time_to_execution),
        ("runbooks_signoff_latency_seconds", m.signoff_latency),
    ):
        family = SummaryMetricFamily(name, METRICS[name][2], labels=METRICS[name][1])
        for label, d in sorted(durations.items()):
            family.add_metric([label], count_value=d.count, sum_value=d.total_seconds)
        yield family
    yield _gauge(
        "runbooks_signoff_latency_max_seconds",
        [((member,), d.max_seconds) for member, d in sorted(m.signoff_latency.items())],
    )
    yield _gauge(
        "runbooks_signoffs",
        [
            ((member, decision, "true" if accepted else "false"), n)
            for (member, decision, accepted), n in sorted(m.signoffs.items())
        ],
    )
    yield _gauge(
        "runbooks_runbook_runs",
        [
            ((r.runbook, outcome), n)
            for r in m.runbooks.values()
            for outcome, n in r.outcomes.items()
        ],
    )
    yield _gauge(
        "runbooks_runbook_success_ratio",
        [
            ((r.runbook,), r.success_ratio)
            for r in m.runbooks.values()
            if r.success_ratio is not None
        ],
    )
    yield _gauge(
        "runbooks_migration_accounts",
        [
            ((str(run.migration_id), run.program_id, status), n)
            for run in m.migrations
            for status, n in sorted(run.accounts.items())
        ],
    )
    yield _gauge(
        "runbooks_migration_elapsed_seconds",
        [((str(run.migration_id), run.program_id), run.elapsed_seconds) for run in m.migrations],
    )
    yield _gauge(
        "runbooks_migration_throughput_accounts_per_second",
        [
            ((str(run.migration_id), run.program_id), run.accounts_per_second)
            for run in m.migrations
            if run.accounts_per_second is not None
        ],
    )
    yield _gauge(
        "runbooks_kill_switch_engaged",
        [(k, 1.0 if engaged else 0.0) for k, engaged in sorted(m.kill_switches.items())],
    )


def registry(url: str | None = None) -> CollectorRegistry:
    """A registry holding only the records collector (no process or Python figures)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(RecordsCollector(url))
    return reg


def serve(
    host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, url: str | None = None
) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics`` (prometheus_client's own server, in a daemon thread).

    ``port`` 0 picks a free port: read it from ``server.server_port``. Stop it with
    ``server.shutdown()``. An address already in use raises ``OSError``.
    """
    return start_http_server(port, addr=host, registry=registry(url))


def configured_address() -> tuple[str, int]:
    """``RUNBOOKS_METRICS_HOST`` / ``RUNBOOKS_METRICS_PORT``, else 127.0.0.1:9464."""
    env = settings()
    host = env.metrics_host or DEFAULT_HOST
    raw = env.metrics_port
    if not raw:
        return host, DEFAULT_PORT
    if not raw.isdigit() or not 0 <= int(raw) <= 65535:
        raise InputError(f"{PORT_ENV}={raw!r} is not a port number; set it to 0-65535")
    return host, int(raw)


def endpoint_url(server: WSGIServer, host: str) -> str:
    return f"http://{host}:{server.server_port}/metrics"


def _gauge(name: str, samples: list[tuple[tuple[str, ...], float | None]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, METRICS[name][2], labels=METRICS[name][1])
    for labels, value in samples:
        if value is not None:
            family.add_metric(list(labels), float(value))
    return family


__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "METRICS",
    "RecordsCollector",
    "configured_address",
    "endpoint_url",
    "families",
    "registry",
    "serve",
]
