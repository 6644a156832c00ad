"""The production layout on one machine: a Prefect server (on PostgreSQL when asked),
the ``runbooks`` process work pool, prefect.yaml's deployments registered on it with
`prefect deploy --all`, and process workers that run them.

Across machines it is the same pieces (README, "Production"): the server and its
PostgreSQL on one host; `prefect worker start --pool runbooks --type process` wherever the
keys and RPC access are, each with ``RUNBOOKS_HOME`` pointing at a checkout (prefect.yaml's
pull step runs flows from there) and ``DATABASE_URL`` at the records database.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from core.errors import InputError
from core.settings import REPO_ROOT

POOL = "runbooks"
# Workers ask the server for runs this often (Prefect's default is 10 s).
WORKER_POLL_SECONDS = 5
# The server's setting for its own database (asyncpg for PostgreSQL).
SERVER_DATABASE_SETTING = "PREFECT_API_DATABASE_CONNECTION_URL"


def server_database_env(url: str | None) -> dict[str, str]:
    """The environment that puts the Prefect server's database at ``url``: a PostgreSQL
    URL (``postgresql+asyncpg://...``; ``postgresql://`` and ``+psycopg`` are accepted and
    turned into asyncpg, which Prefect's server speaks). None: Prefect's SQLite."""
    if not url:
        return {}
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgresql+asyncpg", "postgresql+psycopg"):
        raise InputError(
            f"--prefect-database {_shown(url)} is not a PostgreSQL URL; give "
            "postgresql+asyncpg://user:password@host/database (SQLite needs no option)"
        )
    return {SERVER_DATABASE_SETTING: f"postgresql+asyncpg://{rest}"}


def _shown(url: str) -> str:
    """A URL as an error may show it: never its password."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"[:80]


async def ensure_work_pool(name: str = POOL) -> None:
    """Create the process work pool ``name`` unless the server has it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    async with get_client() as client:
        with contextlib.suppress(ObjectAlreadyExists):
            await client.create_work_pool(WorkPoolCreate(name=name, type="process"))


def runbooks_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment deploys and workers run with: prefect.yaml's pull step runs flows
    from ``RUNBOOKS_HOME`` (this checkout unless set)."""
    env = dict(os.environ if base is None else base)
    env.setdefault("RUNBOOKS_HOME", str(REPO_ROOT))
    env.setdefault("PREFECT_WORKER_QUERY_SECONDS", str(WORKER_POLL_SECONDS))
    return env


def deploy_all(env: Mapping[str, str], log: Path) -> None:
    """`prefect deploy --all`: every deployment of prefect.yaml, on the ``runbooks`` pool,
    with its schedules, as an operator registers them."""
    with log.open("ab") as out:
        done = subprocess.run(
            [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
            cwd=REPO_ROOT,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=600,
        )
    if done.returncode != 0:
        raise RuntimeError(f"`prefect deploy --all` failed ({done.returncode}); see {log}")


def start_workers(
    count: int, env: Mapping[str, str], log_dir: Path, *, limit: int | None = None
) -> list[subprocess.Popen[bytes]]:
    """``count`` process workers on the ``runbooks`` pool, named runbooks-worker-N; each
    runs at most ``limit`` flow runs at once (None: no limit). Logs in ``log_dir``."""
    if count < 1:
        raise InputError(f"--workers {count}: give 1 or more workers")
    log_dir.mkdir(parents=True, exist_ok=True)
    workers = []
    for number in range(1, count + 1):
        name = f"runbooks-worker-{number}"
        command = [
            sys.executable,
            "-m",
            "prefect",
            "worker",
            "start",
            "--pool",
            POOL,
            "--type",
            "process",
            "--name",
            name,
        ]
        if limit is not None:
            command += ["--limit", str(limit)]
        with (log_dir / f"{name}.log").open("ab") as out:
            workers.append(
                subprocess.Popen(
                    command, cwd=REPO_ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT
                )
            )
    return workers


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Terminate ``processes`` and wait for them (killed after 30 s)."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
