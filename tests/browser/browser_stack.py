"""The console under test: a real `prefect server start` on a free port with its own
PREFECT_HOME, the upgrade deployment served from a subprocess, and the localnet scenario.

Reuses `runbooks.up` (server start, prefect.yaml deployments) and `runbooks.demo`
(localnet, buffer, blocks); only ports, homes and the records database differ.
Run as a script, this module is the serving subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient

    from runbooks.demo import DemoChain

CHROMIUM = Path("/usr/bin/chromium")
# From DESIGN.md: headless Debian Chromium as root in a container, no network chatter.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UPGRADE_DEPLOYMENT = "upgrade"
UPGRADE_FLOW = "program-upgrade"


@dataclass(frozen=True)
class ConsoleEnv:
    """Where the test console lives: its API, its Prefect home and its records database."""

    port: int
    prefect_home: Path
    database_url: str

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.ui_url}/api"

    def variables(self) -> dict[str, str]:
        """Environment of the server, the served runs and `runbooks sign`."""
        return {
            "PREFECT_HOME": str(self.prefect_home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_UI_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "DATABASE_URL": self.database_url,
            # Paused runs notice a Resume within a second, the runner picks up new runs
            # within two (each of its polls is a write on the server's SQLite).
            "RUNBOOKS_PAUSE_POLL_SECONDS": "1",
            "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        }

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(self.variables())
        return env


@contextmanager
def patched_environ(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` inside the block, restored after it."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class Console:
    """A running console: Prefect server + served upgrade deployment + localnet."""

    env: ConsoleEnv
    chain: DemoChain
    deployment_id: str
    member_files: list[Path]

    @asynccontextmanager
    async def client(self) -> AsyncIterator[PrefectClient]:
        """A client of this console's API (not the test harness's)."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: self.env.api_url}):
            async with get_client() as client:
                yield client


def start_server(env: ConsoleEnv, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """`runbooks up`'s server start, on this console's port and home (its output in
    ``log_path``, else the shared var/prefect-server.log)."""
    from runbooks.up import SERVER_LOG, start_prefect_server

    # The child inherits os.environ at spawn; this process gets its own back right after.
    with patched_environ(env.variables()):
        return start_prefect_server(
            host="127.0.0.1", port=env.port, log_path=log_path or SERVER_LOG
        )


def start_serving(env: ConsoleEnv, log: Path) -> subprocess.Popen[bytes]:
    """Serve the upgrade deployment from prefect.yaml in a subprocess (this module)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, __file__],
            env=env.environ(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_for_deployment(
    env: ConsoleEnv, serving: subprocess.Popen[bytes], log: Path, timeout_seconds: float = 90.0
) -> str:
    """The served upgrade deployment's id, once the server knows it."""
    import json

    url = f"{env.api_url}/deployments/name/{UPGRADE_FLOW}/{UPGRADE_DEPLOYMENT}"
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return str(json.load(resp)["id"])
        except OSError:
            if serving.poll() is not None:
                raise RuntimeError(f"serving the deployments failed; see {log}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"deployment {UPGRADE_FLOW}/{UPGRADE_DEPLOYMENT} not served "
                    f"within {timeout_seconds} s; see {log}"
                ) from None
            time.sleep(0.3)


def stop(process: subprocess.Popen[bytes], timeout_seconds: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if it does not go."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def serve_upgrade() -> None:
    """Serve only the upgrade deployment: other runbooks' schedules stay out of the test."""
    from prefect import serve

    from runbooks.up import load_deployments

    deployments = [d for d in load_deployments() if d.name == UPGRADE_DEPLOYMENT]
    # Prefect's runner stops on SIGTERM by itself (see `stop`).
    serve(*deployments, print_starting_message=False)


if __name__ == "__main__":
    serve_upgrade()
