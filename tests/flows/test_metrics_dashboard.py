"""The metrics-dashboard flow publishes the figures and its charts as a markdown artifact."""

from __future__ import annotations

import re

import pytest
from metrics_seed import A, B, C, seed
from prefect.client.orchestration import get_client
from sqlalchemy import Engine

from domain.dashboard import bar, duration, short
from flows.metrics_dashboard import ARTIFACT_KEY, metrics_dashboard


async def published(run_id: object) -> str:
    """The dashboard artifact of that run, through the same API call the UI makes."""
    async with get_client() as client:
        resp = await client._client.post(
            "/artifacts/filter",
            json={
                "artifacts": {
                    "flow_run_id": {"any_": [str(run_id)]},
                    "key": {"any_": [ARTIFACT_KEY]},
                },
                "limit": 10,
            },
        )
    found = resp.json()
    assert len(found) == 1, found
    assert found[0]["type"] == "markdown"
    return str(found[0]["data"])


async def test_dashboard_artifact_holds_the_figures_and_charts(
    prefect_api: None, db_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    seed(engine)
    state = await metrics_dashboard(return_state=True)
    assert state.is_completed(), state
    result = await state.result()
    assert result["proposals"] == 5
    assert result["success_ratio"]["health"] == pytest.approx(3 / 4)

    md = await published(state.state_details.flow_run_id)
    # Proposals table: kinds by status (statuses in lifecycle order), with totals.
    assert "| Kind | proposed | executed | cancelled | rejected | failed | Total |" in md
    assert "| upgrade | 0 | 1 | 1 | 1 | 0 | 3 |" in md
    assert "| rollback | 0 | 0 | 0 | 0 | 1 | 1 |" in md
    # Times: upgrade met its threshold after 3m, executed after 4m; rollback after 40s.
    assert "| upgrade | 1 | 3m 00s | 3m 00s | 1 | 4m 00s | 4m 00s |" in md
    assert "| rollback | 1 | 40s | 40s | 0 | – | – |" in md
    # Sign-off latency: A (60+30+10)/3 s, B (180+20)/2 s, C (90+40)/2 s.
    assert f"| `{A}` | 3 | 33s | 1m 00s |" in md
    assert f"| `{B}` | 2 | 1m 40s | 3m 00s |" in md
    assert f"| `{C}` | 2 | 1m 05s | 1m 30s |" in md
    # The latency chart: B is the slowest on average, so its bar is full.
    assert re.search(rf"{re.escape(short(B))}\s+{bar(1.0)}\s+1m 40s", md), md
    assert re.search(rf"{re.escape(short(A))}\s+{bar(100 / 3 / 100)}\s+33s", md), md
    # Success rates, in the table and the chart (scale 0..100%).
    assert "| health | 3 | 1 | critical 1, info 2, warning 1 | 75% |" in md
    assert "| migration | 1 | 1 | completed 1, incomplete 1 | 50% |" in md
    assert re.search(rf"health\s+{bar(0.75)}\s+75%  \(3 of 4\)", md), md
    assert re.search(rf"rollback\s+{bar(0.0)}\s+0%  \(0 of 1\)", md), md
    # Migration throughput per run: 10 accounts in 50 s = 0.20/s.
    assert re.search(r"\| completed \| 10 \| 50s \| 0\.20 \|", md), md
    assert "0.20 accounts/s" in md and "0.15 accounts/s" in md and "0.04 accounts/s" in md
    assert md.count("```") == 6  # three charts


def test_duration_reads_at_a_glance() -> None:
    assert [duration(s) for s in (None, 2.5, 40, 95, 3600 * 2 + 60 * 5, 86400 + 3600 * 3)] == [
        "–", "2.5s", "40s", "1m 35s", "2h 5m", "1d 3h",
    ]  # fmt: skip
    assert bar(0.5, width=4) == "██░░" and bar(1 / 8, width=4) == "▌░░░"
