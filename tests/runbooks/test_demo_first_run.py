"""`runbooks demo` as a new operator's first command, on a slow machine (about 1-2 min).

The real command in a subprocess, with a fresh, empty PREFECT_HOME (Prefect's local API
server creates and migrates its database on this first start), the CPU kept busy by
one busy-loop process per core, and the API server's start held back past Prefect's own
20 s default startup timeout. It must still end with exit 0 and its ``RESULT {json}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from core.settings import REPO_ROOT
from programs.loader import verifiable_hash

# Past Prefect's default PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (20 s).
SERVER_START_DELAY_SECONDS = 30
BUSY_LOOPS = 2  # one per core of the CI machines

# Imported at start-up by every Python process that gets this directory on PYTHONPATH;
# it only acts in Prefect's ephemeral API server (Prefect sets PREFECT__SERVER_EPHEMERAL
# for it), holding its start back as a slow, busy host does, and leaves a mark.
SLOW_START_HOOK = """\
import os
import time

if os.environ.get("PREFECT__SERVER_EPHEMERAL") == "1":
    time.sleep(float(os.environ["RUNBOOKS_TEST_SERVER_START_DELAY"]))
    with open(os.environ["RUNBOOKS_TEST_SERVER_START_MARK"], "a") as mark:
        mark.write("delayed\\n")
"""


@contextmanager
def cpu_load(processes: int) -> Iterator[None]:
    """``processes`` busy loops for the duration of the block."""
    loops = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], env={"PATH": "/usr/bin"})
        for _ in range(processes)
    ]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait(timeout=10)


def demo_environ(tmp_path: Path, hook_dir: Path, mark: Path) -> dict[str, str]:
    """The operator's shell, minus any Prefect setting: no API URL, a Prefect home that
    does not exist yet, and the records in a scratch SQLite file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.pop("DATABASE_URL", None)
    env.update(
        {
            "PREFECT_HOME": str(tmp_path / "prefect-home"),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'records.db'}",
            "RUNBOOKS_PAUSE_POLL_SECONDS": "1",  # as `make demo`
            "PYTHONPATH": os.pathsep.join(filter(None, [str(hook_dir), env.get("PYTHONPATH")])),
            "RUNBOOKS_TEST_SERVER_START_DELAY": str(SERVER_START_DELAY_SECONDS),
            "RUNBOOKS_TEST_SERVER_START_MARK": str(mark),
        }
    )
    return env


@pytest.mark.load
def test_demo_first_run_on_a_loaded_machine_with_a_slow_prefect_start(
    tmp_path: Path, demo_binaries: dict[str, bytes]
) -> None:
    # demo_binaries: the programs are built (and cached) before the clock starts.
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(SLOW_START_HOOK)
    mark = tmp_path / "server-start-delayed"
    env = demo_environ(tmp_path, hook_dir, mark)
    assert not Path(env["PREFECT_HOME"]).exists()

    started = time.monotonic()
    with cpu_load(BUSY_LOOPS):
        done = subprocess.run(
            [sys.executable, "-m", "runbooks.cli", "demo"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,  # generous: CI hosts are shared
            check=False,
        )
    seconds = time.monotonic() - started

    output = f"exit {done.returncode} after {seconds:.0f} s\n"
    output += f"{done.stdout[-3000:]}\n{done.stderr[-4000:]}"
    assert done.returncode == 0, output
    assert mark.read_text() == "delayed\n", "the slow-start hook never ran: " + output
    assert seconds > SERVER_START_DELAY_SECONDS, output
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT "), output
    result = json.loads(last.removeprefix("RESULT "))
    assert result["backend"] == "onchain", result
    assert result["new_hash"] == verifiable_hash(demo_binaries["v2"]), result
    assert result["old_hash"] == verifiable_hash(demo_binaries["v1"]), result
    # The server's database was created by this run, in the fresh home.
    assert (Path(env["PREFECT_HOME"]) / "prefect.db").is_file()
