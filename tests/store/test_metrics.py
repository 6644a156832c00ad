"""The records' figures (store.metrics) on SQLite and PostgreSQL, against hand-worked ones."""

from __future__ import annotations

import pytest
from metrics_seed import (
    EXPECTED_EXECUTIONS,
    EXPECTED_LATENCY,
    EXPECTED_MIGRATIONS,
    EXPECTED_PROPOSALS,
    EXPECTED_RUNBOOKS,
    EXPECTED_SIGNOFFS,
    EXPECTED_TO_EXECUTION,
    EXPECTED_TO_THRESHOLD,
    PROGRAM,
    seed,
)
from sqlalchemy import Engine

from core.errors import RecordsError
from store.db import create_engine
from store.metrics import collect_metrics


def test_empty_records_have_no_figures(engine: Engine) -> None:
    m = collect_metrics(engine)
    assert m.proposals == {} and m.signoff_latency == {} and m.runbooks == {}
    assert m.migrations == [] and m.kill_switches == {}


def test_figures_match_the_hand_worked_ones(engine: Engine) -> None:
    seed(engine)
    m = collect_metrics(engine)

    assert m.proposals == EXPECTED_PROPOSALS
    assert m.executions == EXPECTED_EXECUTIONS
    for got, expected in ((m.time_to_threshold, EXPECTED_TO_THRESHOLD),
                          (m.time_to_execution, EXPECTED_TO_EXECUTION)):  # fmt: skip
        assert {k: (d.count, d.total_seconds) for k, d in got.items()} == expected
    assert {
        member: (d.count, d.total_seconds, d.max_seconds) for member, d in m.signoff_latency.items()
    } == EXPECTED_LATENCY
    assert m.signoff_latency[next(iter(EXPECTED_LATENCY))].mean_seconds == pytest.approx(100 / 3)
    assert m.signoffs == EXPECTED_SIGNOFFS

    assert {
        r.runbook: (r.outcomes, r.succeeded, r.failed, r.success_ratio) for r in m.runbooks.values()
    } == {k: (o, s, f, pytest.approx(ratio)) for k, (o, s, f, ratio) in EXPECTED_RUNBOOKS.items()}
    # set-authority has no closed proposal: no runbook outcome, no ratio to invent.
    assert "set-authority" not in m.runbooks

    runs = {(run.status, tuple(sorted(run.accounts.items()))): run for run in m.migrations}
    assert len(m.migrations) == len(EXPECTED_MIGRATIONS)
    for status, accounts, migrated, elapsed, rate in EXPECTED_MIGRATIONS.values():
        run = runs[(status, tuple(sorted(accounts.items())))]
        assert run.program_id == PROGRAM
        assert run.accounts_migrated == migrated
        assert run.elapsed_seconds == pytest.approx(elapsed)
        assert run.accounts_per_second == pytest.approx(rate)

    assert m.kill_switches == {("localnet", PROGRAM): True}


def test_unreachable_database_is_a_records_error_without_the_password() -> None:
    engine = create_engine(
        "postgresql+psycopg://ops:s3cret-pw@127.0.0.1:1/records?connect_timeout=2"
    )
    with pytest.raises(RecordsError) as caught:
        collect_metrics(engine)
    assert "s3cret-pw" not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)
