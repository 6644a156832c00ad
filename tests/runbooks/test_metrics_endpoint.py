"""The Prometheus endpoint, scraped over HTTP against seeded records (SQLite, PostgreSQL)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from metrics_seed import (
    EXPECTED_EXECUTIONS,
    EXPECTED_LATENCY,
    EXPECTED_PROPOSALS,
    EXPECTED_RUNBOOKS,
    EXPECTED_SIGNOFFS,
    EXPECTED_TO_EXECUTION,
    EXPECTED_TO_THRESHOLD,
    PROGRAM,
    seed,
)
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from core.settings import REPO_ROOT
from runbooks import up
from runbooks.metrics import METRICS, endpoint_url, serve

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(url: str) -> tuple[str, Samples]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.status == 200
        body = resp.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return body, samples


def by(samples: Samples, name: str, *labels: str) -> dict[Any, float]:
    """``name``'s samples keyed by the values of ``labels`` (one value: not a tuple)."""
    out: dict[Any, float] = {}
    for key, value in samples.get(name, {}).items():
        d = dict(key)
        values = tuple(d[label] for label in labels)
        out[values[0] if len(values) == 1 else values] = value
    return out


@pytest.fixture
def endpoint(db_url: str, engine: Engine) -> Iterator[str]:
    server, _ = serve("127.0.0.1", 0, url=db_url)
    yield endpoint_url(server, "127.0.0.1")
    server.shutdown()
    server.server_close()


def test_scrape_reports_the_hand_worked_figures(engine: Engine, endpoint: str) -> None:
    seed(engine)
    body, samples = scrape(endpoint)

    assert by(samples, "runbooks_records_up") == {(): 1.0}
    assert by(samples, "runbooks_proposals", "kind", "status") == EXPECTED_PROPOSALS
    assert by(samples, "runbooks_executions", "kind", "outcome") == EXPECTED_EXECUTIONS
    for name, expected in (
        ("runbooks_proposal_time_to_threshold_seconds", EXPECTED_TO_THRESHOLD),
        ("runbooks_proposal_time_to_execution_seconds", EXPECTED_TO_EXECUTION),
    ):
        assert by(samples, f"{name}_count", "kind") == {k: c for k, (c, _) in expected.items()}
        assert by(samples, f"{name}_sum", "kind") == {k: s for k, (_, s) in expected.items()}
    latency = "runbooks_signoff_latency_seconds"
    assert by(samples, f"{latency}_count", "member") == {
        m: c for m, (c, _, _) in EXPECTED_LATENCY.items()
    }
    assert by(samples, f"{latency}_sum", "member") == {
        m: s for m, (_, s, _) in EXPECTED_LATENCY.items()
    }
    assert by(samples, "runbooks_signoff_latency_max_seconds", "member") == {
        m: mx for m, (_, _, mx) in EXPECTED_LATENCY.items()
    }
    assert by(samples, "runbooks_signoffs", "member", "decision", "accepted") == {
        (m, d, "true" if ok else "false"): n for (m, d, ok), n in EXPECTED_SIGNOFFS.items()
    }
    assert by(samples, "runbooks_runbook_runs", "runbook", "outcome") == {
        (r, o): n
        for r, (outcomes, _, _, _) in EXPECTED_RUNBOOKS.items()
        for o, n in outcomes.items()
    }
    assert by(samples, "runbooks_runbook_success_ratio", "runbook") == pytest.approx(
        {r: ratio for r, (_, _, _, ratio) in EXPECTED_RUNBOOKS.items()}
    )
    # Per run: migrated / elapsed (10/50, 3/20, 4/100), keyed here by the migrated count.
    throughput = by(samples, "runbooks_migration_throughput_accounts_per_second", "migration")
    migrated = by(samples, "runbooks_migration_accounts", "migration", "status")
    per_run = {
        run: migrated.get((run, "migrated"), 0) + migrated.get((run, "verified"), 0)
        for run in throughput
    }
    assert {per_run[r]: v for r, v in throughput.items()} == pytest.approx(
        {3: 3 / 20, 4: 4 / 100, 10: 10 / 50}
    )
    assert sorted(by(samples, "runbooks_migration_elapsed_seconds", "migration").values()) == [
        20.0, 50.0, 100.0,
    ]  # fmt: skip
    assert by(samples, "runbooks_kill_switch_engaged", "cluster", "program") == {
        ("localnet", PROGRAM): 1.0
    }
    assert "not-a-key paste" not in body  # a refused non-member is not named
    # Every family served is documented, with its HELP text.
    served = {line.split()[2] for line in body.splitlines() if line.startswith("# HELP ")}
    assert served == set(METRICS)


def test_a_records_error_still_answers_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = "postgresql+psycopg://ops:s3cret-pw@127.0.0.1:1/records?connect_timeout=2"
    server, _ = serve("127.0.0.1", 0, url=url)
    try:
        with caplog.at_level(logging.WARNING, logger="runbooks.metrics"):
            body, samples = scrape(endpoint_url(server, "127.0.0.1"))
            # Twice: a failed first connection must not leave the collector broken.
            body2, _ = scrape(endpoint_url(server, "127.0.0.1"))
    finally:
        server.shutdown()
        server.server_close()
    assert by(samples, "runbooks_records_up") == {(): 0.0}
    assert "runbooks_proposals" not in samples
    for text in (body, body2, caplog.text):
        assert "s3cret-pw" not in text
    assert "127.0.0.1" in caplog.text  # the log names the database (redacted) for the operator


def test_runbooks_metrics_command_serves_a_free_port(db_url: str, engine: Engine) -> None:
    seed(engine)
    env = {**os.environ, "DATABASE_URL": db_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "runbooks.cli", "metrics", "--port", "0"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Prometheus metrics: http://127.0.0.1:"), line + proc.stderr.read()
        _, samples = scrape(line.split()[2])
        assert by(samples, "runbooks_proposals", "kind", "status") == EXPECTED_PROPOSALS
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_up_starts_the_endpoint_and_prints_its_url(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'records.db'}")
    monkeypatch.setenv("RUNBOOKS_METRICS_PORT", "0")
    up.start_metrics_endpoint()
    printed = capsys.readouterr().out
    assert printed.startswith("Metrics:     http://127.0.0.1:"), printed
    _, samples = scrape(printed.split()[1])
    # A fresh database is migrated, so it reads as empty records, not as an error.
    assert by(samples, "runbooks_records_up") == {(): 1.0}
    # The same port again is in use: reported, not fatal.
    port = printed.split()[1].split(":")[2].split("/")[0]
    monkeypatch.setenv("RUNBOOKS_METRICS_PORT", port)
    up.start_metrics_endpoint()
    assert "not started" in capsys.readouterr().out
