"""The production layout in one context manager, for the fan-out's tests and bench: a
`prefect server start` on a scratch PostgreSQL database, the ``runbooks`` work pool,
prefect.yaml's deployments registered with `prefect deploy --all`, and process workers.

The caller's process talks to the same server (``PREFECT_API_URL`` set inside the
block), so blocks it saves and flows it runs are the workers' too.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from core.http_server import free_port
from core.settings import REPO_ROOT
from runbooks import workers

HOST = "127.0.0.1"


@dataclass
class WorkerStack:
    """A running server and its workers; ``env`` is what the workers run with."""

    api_url: str
    env: dict[str, str]
    log_dir: Path
    limit: int | None
    running: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_workers(self, count: int) -> list[subprocess.Popen[bytes]]:
        """Stop the running workers, then start ``count`` (runbooks-worker-1 ... N)."""
        workers.stop(self.running)
        self.running = workers.start_workers(count, self.env, self.log_dir, limit=self.limit)
        return self.running

    async def online(self, timeout: float = 120.0) -> None:
        """Wait until every running worker has polled the server (it takes runs then)."""
        import asyncio
        import time

        from prefect.client.orchestration import get_client

        wanted = {f"runbooks-worker-{n}" for n in range(1, len(self.running) + 1)}
        deadline = time.monotonic() + timeout
        async with get_client() as client:
            while True:
                seen = await client.read_workers_for_work_pool(workers.POOL)
                if wanted <= {w.name for w in seen if w.status == "ONLINE"}:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"workers not online after {timeout:.0f} s: {seen}")
                await asyncio.sleep(0.5)

    async def ran_by(self, run_ids: list[str]) -> dict[str, str]:
        """Flow run id -> the worker running or that ran it: the ``prefect.worker.name``
        label the worker that won the run's Pending state gives it (a worker that loses
        that race logs "submitting" too, so its log cannot say)."""
        from prefect.client.orchestration import get_client

        found: dict[str, str] = {}
        async with get_client() as client:
            for run_id in run_ids:
                name = (await client.read_flow_run(run_id)).labels.get("prefect.worker.name")
                if name:
                    found[run_id] = str(name)
        return found


@asynccontextmanager
async def worker_stack(
    work_dir: Path, *, records_url: str, workers_count: int, limit: int | None = 1
) -> AsyncIterator[WorkerStack]:
    """Server on PostgreSQL + pool + deployments + ``workers_count`` workers (each running
    at most ``limit`` flow runs at once), all stopped and dropped on leaving."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from runbooks.up import start_prefect_server
    from store.testing import create_scratch_database, drop_database

    port = free_port(HOST)
    api_url = f"http://{HOST}:{port}/api"
    variables = {
        "PREFECT_HOME": str(work_dir / "prefect"),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "DATABASE_URL": records_url,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env = workers.runbooks_env({**base, **variables})
    database = create_scratch_database()
    saved = dict(os.environ)
    os.environ.update({**variables, **workers.server_database_env(database)})
    try:
        (REPO_ROOT / "var").mkdir(exist_ok=True)  # start_prefect_server logs there
        server = start_prefect_server(host=HOST, port=port)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    stack = WorkerStack(api_url, env, work_dir / "workers", limit)
    try:
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            await workers.ensure_work_pool()
            workers.deploy_all(env, work_dir / "deploy.log")
            if workers_count:
                stack.start_workers(workers_count)
                await stack.online()
            yield stack
    finally:
        workers.stop(stack.running)
        workers.stop([server])
        drop_database(database)
