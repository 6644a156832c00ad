"""A served run killed with SIGKILL (its process and the serving process, as when a
machine is lost) is marked Crashed by the server within the configured window, through
the heartbeats and the automations `make up` sets up, then scheduled again (its flow is
one the automation retries).

A real `prefect server start` (runbooks.up's start, on a free port and home)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from crash_probe import FLOW_NAME

# The browser tests' console stack: `runbooks.up`'s server start on a free port and home.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "browser"))
from browser_stack import ConsoleEnv, start_server, stop

from core.http_server import free_port
from core.settings import REPO_ROOT
from runbooks.crash_watch import HEARTBEAT_SECONDS, ensure_crash_automations

# Never beside another exclusive test: a real `prefect server start` and its services' timing.
pytestmark = pytest.mark.exclusive

PROBE = Path(__file__).resolve().parent / "crash_probe.py"
# Longer than one heartbeat interval (30 s, Prefect's floor) with room for a late one.
CRASH_AFTER = 45.0
# The server's proactive triggers are evaluated every few seconds; a busy host is slower.
SLACK = 30.0


@pytest.fixture
def env(tmp_path: Path) -> Iterator[ConsoleEnv]:
    env = ConsoleEnv(
        port=free_port(),
        prefect_home=tmp_path / "prefect",
        database_url=f"sqlite:///{tmp_path / 'records.db'}",
    )
    server = start_server(env)
    try:
        yield env
    finally:
        stop(server)


async def test_a_killed_served_run_is_marked_crashed_then_retried(
    env: ConsoleEnv, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    pid_file = tmp_path / "run.pid"
    serve_log = tmp_path / "serve.log"
    with serve_log.open("ab") as out:
        serving = subprocess.Popen(
            [sys.executable, str(PROBE)],
            cwd=REPO_ROOT,
            env={**env.environ(), "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    run_pid: int | None = None
    try:
        with temporary_settings(updates={PREFECT_API_URL: env.api_url}):
            await ensure_crash_automations(crash_after=CRASH_AFTER, retried=(FLOW_NAME,))
            async with get_client() as client:
                deadline = time.monotonic() + 60
                while not (
                    found := await client.read_deployments(
                        deployment_filter=DeploymentFilter(
                            name=DeploymentFilterName(any_=["probe"])
                        )
                    )
                ):
                    assert time.monotonic() < deadline, serve_log.read_text()[-2000:]
                    await asyncio.sleep(1)
                run = await client.create_flow_run_from_deployment(
                    found[0].id, parameters={"pid_file": str(pid_file)}
                )
                deadline = time.monotonic() + 60
                while not pid_file.exists() or not pid_file.read_text():
                    assert time.monotonic() < deadline, serve_log.read_text()[-2000:]
                    await asyncio.sleep(0.5)
                run_pid = int(pid_file.read_text())
                state = (await client.read_flow_run(run.id)).state
                assert state is not None and state.is_running(), state
                await asyncio.sleep(2)  # the first heartbeat goes out as the run starts

                # The machine is lost: no process is left to report anything.
                serving.send_signal(signal.SIGKILL)
                serving.wait(timeout=10)
                os.kill(run_pid, signal.SIGKILL)
                killed = datetime.now(UTC)

                # Wait for the retry; the states' history says when it was Crashed and why.
                while True:
                    current = await client.read_flow_run(run.id)
                    assert current.state is not None
                    if current.state.name == "AwaitingRetry":
                        break
                    waited = (datetime.now(UTC) - killed).total_seconds()
                    assert waited < CRASH_AFTER + HEARTBEAT_SECONDS + SLACK, (
                        f"still {current.state.name} {waited:.0f} s after the kill"
                    )
                    await asyncio.sleep(1)
                history = await client.read_flow_run_states(run.id)
    finally:
        stop(serving)
        if run_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(run_pid, signal.SIGKILL)
    names = [h.name for h in history]
    assert names[-3:] == ["Running", "Crashed", "AwaitingRetry"], names
    crashed = history[-2]
    assert "no heartbeat" in (crashed.message or ""), crashed.message  # the automation's
    crashed_after = (crashed.timestamp - killed).total_seconds()
    # After the window that follows the last heartbeat (sent before the kill), not much later.
    assert CRASH_AFTER - HEARTBEAT_SECONDS < crashed_after < CRASH_AFTER + SLACK, crashed_after
    print(f"Crashed {crashed_after:.0f} s after the kill (window {CRASH_AFTER:.0f} s); {names}")


def test_the_retried_flows_are_served_and_the_window_outlasts_a_late_heartbeat() -> None:
    from runbooks.crash_watch import CRASH_AFTER_SECONDS, RETRIED_FLOWS, retry_automation
    from runbooks.up import load_deployments

    served = {d.flow_name for d in load_deployments()}
    assert set(RETRIED_FLOWS) <= served, set(RETRIED_FLOWS) - served
    # Not retried: runs an operator must look at after a crash.
    assert not {"key-rotation", "kill-switch", "backup", "restore-backup"} & set(RETRIED_FLOWS)
    assert CRASH_AFTER_SECONDS >= 3 * HEARTBEAT_SECONDS
    related = retry_automation().trigger.match_related
    assert related.root["prefect.resource.name"] == list(RETRIED_FLOWS)
