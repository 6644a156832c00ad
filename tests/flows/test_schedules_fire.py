"""prefect.yaml's schedules fire: on a real `prefect server start` (the server `make up`
runs), the scheduled deployments served as `make up` serves them get SCHEDULED runs
created by the server's scheduler, and one brought due is picked up by the serving
process and runs to Completed. Their Run forms, read back from that server, title and
explain every parameter, and `make up`'s setup registers every block type on it, so each
can be created in the UI.

The check `test_housekeeping_deployments.py` makes (each schedule is listed, active) held
while no run was ever created: with SQLAlchemy 2.1, Prefect 3.8.8's scheduler service
fails every cycle with "Can't evaluate bulk DML statement" (hence the pin in
pyproject.toml). About 1-3 min: a server start, the serving process, one flow run.

Run as a script, this module is the serving process: ``python test_schedules_fire.py
NAME ...`` serves those deployments of prefect.yaml.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

# The browser tests' console stack: `runbooks.up`'s server start on a free port and home.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "browser"))
from browser_stack import ConsoleEnv, patched_environ, start_server, stop

from core.http_server import free_port
from core.settings import REPO_ROOT
from domain.forms import unlabelled

# Never beside another exclusive test: a real `prefect server start` and its scheduler's cycle.
pytestmark = pytest.mark.exclusive

# (flow name, deployment name) -> what its cron says about every run it creates.
SCHEDULED = {
    ("daily-health", "daily"): {"hour": 6, "minute": 0},
    ("backup", "weekly"): {"hour": 3, "minute": 0, "weekday": 6},  # Sunday
    ("key-rotation-review", "review"): {"day": 1, "hour": 4, "minute": 0},
    ("housekeeping", "monthly"): {"day": 1, "hour": 5, "minute": 0},
}
RUN_NOW = ("housekeeping", "monthly")  # needs nothing but the records database
# The scheduler's cycle is 60 s by default; the test does not wait that long for it.
SCHEDULER_SETTINGS = {"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5"}
BULK_DML_ERROR = "Can't evaluate bulk DML statement"


def cron_fields(when: datetime) -> dict[str, int]:
    return {
        "day": when.day,
        "hour": when.hour,
        "minute": when.minute,
        "weekday": when.weekday(),
    }


class Stack:
    """The server (with a log of its own: other tests' servers may run beside it) and the
    serving process."""

    def __init__(self, env: ConsoleEnv, server_log: Path, serve_log: Path) -> None:
        self.env = env
        self.server_log_path = server_log
        self.serve_log = serve_log

    def server_log(self) -> str:
        return self.server_log_path.read_text(errors="replace")

    def diagnostics(self) -> str:
        errors = [line for line in self.server_log().splitlines() if "Error" in line]
        serving = self.serve_log.read_text(errors="replace")[-3000:]
        return f"server log errors: {errors[-10:]}\nserving log ({self.serve_log}):\n{serving}"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    env = ConsoleEnv(
        port=free_port(),
        prefect_home=tmp_path / "prefect",
        database_url=f"sqlite:///{tmp_path / 'records.db'}",
    )
    server_log = tmp_path / "prefect-server.log"
    with patched_environ(SCHEDULER_SETTINGS):
        server = start_server(env, server_log)
    serve_log = tmp_path / "serve.log"
    names = sorted(name for _, name in SCHEDULED)
    with serve_log.open("ab") as out:
        serving = subprocess.Popen(
            [sys.executable, __file__, *names],
            cwd=REPO_ROOT,
            env=env.environ(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Stack(env, server_log, serve_log)
    finally:
        stop(serving)
        stop(server)


async def scheduled_runs(client: Any, deployment_id: uuid.UUID) -> list[Any]:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    return await client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        flow_run_filter=FlowRunFilter(
            state=dict(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
        ),
        limit=200,
    )


async def wait_for_deployments(client: Any, stack: Stack, timeout: float) -> dict[Any, Any]:
    """(flow, deployment) -> deployment id, once the serving process registered them all."""
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    found: dict[tuple[str, str], uuid.UUID] = {}
    while len(found) < len(SCHEDULED):
        for flow_name, name in SCHEDULED:
            try:
                deployment = await client.read_deployment_by_name(f"{flow_name}/{name}")
            except ObjectNotFound:
                continue
            found[(flow_name, name)] = deployment.id
        if time.monotonic() > deadline:
            missing = sorted(set(SCHEDULED) - set(found))
            raise AssertionError(f"not served within {timeout} s: {missing}\n{stack.diagnostics()}")
        await asyncio.sleep(1)
    return found


async def test_scheduled_deployments_get_runs_and_a_due_run_completes(
    stack: Stack, demo_binaries: dict[str, bytes], tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Scheduled

    with temporary_settings(updates={PREFECT_API_URL: stack.env.api_url}):
        async with get_client() as client:
            deployments = await wait_for_deployments(client, stack, timeout=120)

            # 0. Each served Run form, as the UI reads it, labels and explains every field.
            for key, deployment_id in deployments.items():
                form = (await client.read_deployment(deployment_id)).parameter_openapi_schema
                assert form and form["properties"], key
                assert not unlabelled(form), (key, unlabelled(form))

            # 1. The server's scheduler creates the runs of every schedule.
            runs: dict[tuple[str, str], list[Any]] = {}
            deadline = time.monotonic() + 90
            while True:
                for key, deployment_id in deployments.items():
                    runs[key] = await scheduled_runs(client, deployment_id)
                if all(runs.values()):
                    break
                if time.monotonic() > deadline:
                    counts = {name: len(r) for (_, name), r in runs.items()}
                    raise AssertionError(
                        f"no scheduled run created within 90 s: {counts}\n{stack.diagnostics()}"
                    )
                await asyncio.sleep(2)
            started = datetime.now(UTC)
            for key, created in runs.items():
                for run in created:
                    assert run.auto_scheduled, (key, run.name)
                    assert run.created_by is not None and run.created_by.type == "SCHEDULE"
                    when = run.expected_start_time.astimezone(UTC)
                    assert when > started, (key, when)
                    fields = cron_fields(when)
                    assert {k: fields[k] for k in SCHEDULED[key]} == SCHEDULED[key], (key, when)

            # 2. One of them, brought due, is picked up by the serving process and completes.
            run = min(runs[RUN_NOW], key=lambda r: r.expected_start_time)
            await client.set_flow_run_state(
                run.id, Scheduled(scheduled_time=datetime.now(UTC)), force=True
            )
            deadline = time.monotonic() + 180
            while True:
                current = await client.read_flow_run(run.id)
                assert current.state is not None
                if current.state.is_final():
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"run {run.id} still {current.state.type.value} after 180 s\n"
                        + stack.diagnostics()
                    )
                await asyncio.sleep(1)
            assert current.state.type == StateType.COMPLETED, (
                f"{current.state!r}\n{stack.diagnostics()}"
            )
            assert current.deployment_id == deployments[RUN_NOW]
            artifacts = await client._client.post(
                "/artifacts/filter",
                json={"artifacts": {"flow_run_id": {"any_": [str(run.id)]}}, "limit": 10},
            )
            assert "housekeeping-report" in {a["key"] for a in artifacts.json()}

            # 3. `make up`'s setup, on this server that knew none of the project's block
            # types, registers them all: the UI's Blocks > + lists each.
            from blocks import BLOCK_TYPES
            from runbooks.demo import start_demo_chain
            from runbooks.up import prepare_console

            slugs = {b.get_block_type_slug() for b in BLOCK_TYPES}
            known = {t.slug for t in await client.read_block_types()}
            assert not slugs & known, slugs & known
            chain = start_demo_chain(binaries=demo_binaries)
            try:
                await prepare_console(chain, tmp_path / "members")
            finally:
                chain.server.stop()
            known = {t.slug for t in await client.read_block_types()}
            assert slugs <= known, slugs - known

    server_log = stack.server_log()
    assert BULK_DML_ERROR not in server_log, stack.diagnostics()


def serve(names: list[str]) -> None:
    """Serve the named deployments of prefect.yaml, as `make up` serves them all."""
    from prefect import serve as prefect_serve

    from runbooks.up import load_deployments

    prefect_serve(*[d for d in load_deployments() if d.name in names], print_starting_message=False)


if __name__ == "__main__":
    serve(sys.argv[1:])
