"""The production layout `runbooks up --workers 2 --prefect-database ...` builds, with real
parts: `prefect server start` on PostgreSQL, the `runbooks` process work pool,
`prefect deploy --all` of prefect.yaml (each Run form titled and explained), and two
`prefect worker start` processes that share the runs of a deployment."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from core.errors import InputError
from core.settings import REPO_ROOT
from domain.forms import unlabelled
from runbooks import workers
from store.testing import create_scratch_database, drop_database, postgres_unavailable_reason

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "browser"))
from browser_stack import ConsoleEnv, patched_environ, stop

from core.http_server import free_port

# Never beside another exclusive test: the production stack (server and workers).
pytestmark = pytest.mark.exclusive

# Two runs at once: with one run at a time each (--limit 1), each worker must take one.
RUNS = 2


@pytest.fixture
def production(tmp_path: Path) -> Iterator[tuple[ConsoleEnv, dict[str, str]]]:
    reason = postgres_unavailable_reason()
    if reason is not None:
        if os.environ.get("TEST_POSTGRES_REQUIRED", "").strip() not in ("", "0"):
            pytest.fail(f"the Prefect server's PostgreSQL: {reason}")
        pytest.skip(f"the Prefect server's PostgreSQL: {reason}")
    from runbooks.up import start_prefect_server

    database = create_scratch_database()
    env = ConsoleEnv(
        port=free_port(),
        prefect_home=tmp_path / "prefect",
        database_url=f"sqlite:///{tmp_path / 'records.db'}",
    )
    server_env = workers.server_database_env(database)
    (REPO_ROOT / "var").mkdir(exist_ok=True)  # start_prefect_server logs there
    with patched_environ({**env.variables(), **server_env}):
        server = start_prefect_server(host="127.0.0.1", port=env.port)
    try:
        yield env, server_env
    finally:
        stop(server)
        drop_database(database)


async def test_two_workers_on_a_postgresql_server_share_a_deployments_runs(
    production: tuple[ConsoleEnv, dict[str, str]], tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env, server_env = production
    assert server_env[workers.SERVER_DATABASE_SETTING].startswith("postgresql+asyncpg://")
    run_env = workers.runbooks_env({**env.environ(), "PREFECT_WORKER_QUERY_SECONDS": "1"})
    with temporary_settings(updates={PREFECT_API_URL: env.api_url}):
        await workers.ensure_work_pool()
        await workers.ensure_work_pool()  # a second time changes nothing
        workers.deploy_all(run_env, tmp_path / "deploy.log")
        running = workers.start_workers(2, run_env, tmp_path / "workers", limit=1)
        try:
            async with get_client() as client:
                pool = await client.read_work_pool(workers.POOL)
                assert pool.type == "process"
                # Every deployment of prefect.yaml is on the pool, as `prefect deploy --all`
                # registers them for an operator.
                spec = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
                deployed = await client.read_deployments()
                names = {d.name: d for d in deployed}
                assert {d["name"] for d in spec["deployments"]} <= set(names)
                assert {d.work_pool_name for d in deployed} == {workers.POOL}
                # Their Run forms, as the UI reads them: no bare names, no field without help.
                forms = {d.name: d.parameter_openapi_schema for d in deployed}
                assert forms["upgrade"]["properties"]["program_id"]["title"] == "Program ID"
                assert {n: unlabelled(f) for n, f in forms.items() if unlabelled(f)} == {}
                monthly = names["monthly"]
                runs = [
                    await client.create_flow_run_from_deployment(monthly.id) for _ in range(RUNS)
                ]
                states = await _wait_until_final(client, [r.id for r in runs], timeout=240)
                ran = {
                    str(r.id): (await client.read_flow_run(r.id)).labels.get("prefect.worker.name")
                    for r in runs
                }
        finally:
            workers.stop(running)
    assert all(state == "COMPLETED" for state in states.values()), states
    # Who ran each run: the worker that won its Pending state labels it (a worker that
    # loses the race logs "submitting" too, so the logs do not say). Each worker, one run
    # at a time (--limit 1), ran a share.
    assert sorted(set(ran.values())) == ["runbooks-worker-1", "runbooks-worker-2"], ran


async def _wait_until_final(client: object, ids: list, timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        states = {}
        for run_id in ids:
            run = await client.read_flow_run(run_id)  # type: ignore[attr-defined]
            states[str(run_id)] = run.state.type.value if run.state else "NONE"
        if all(s in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for s in states.values()):
            return states
        if time.monotonic() > deadline:
            raise AssertionError(f"runs not finished after {timeout:.0f} s: {states}")
        await asyncio.sleep(1)


def test_the_prefect_database_must_be_postgresql_and_its_password_is_never_shown() -> None:
    with pytest.raises(InputError, match="not a PostgreSQL URL") as refused:
        workers.server_database_env("mysql://admin:hunter2@db/prefect")
    assert "hunter2" not in str(refused.value)
    assert workers.server_database_env(None) == {}
    assert workers.server_database_env("postgresql+psycopg://u:p@h/db") == {
        workers.SERVER_DATABASE_SETTING: "postgresql+asyncpg://u:p@h/db"
    }
    with pytest.raises(InputError, match="--workers 0"):
        workers.start_workers(0, {}, Path("/nonexistent"))
