"""``runbooks up``: the operator's console on this machine.

A localnet on 127.0.0.1:8899 with demo_vault v1 deployed and a v2 buffer written, the
Prefect server and UI on 127.0.0.1:4200, the blocks the runbooks load, member key files
under var/up/, and every deployment of prefect.yaml served from this process (with its
schedules) until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from core.errors import InputError
from core.keys import keypair_to_json
from core.settings import (
    EPHEMERAL_STARTUP_TIMEOUT,
    REPO_ROOT,
    settings,
)

if TYPE_CHECKING:
    from localnet.cluster_mode import ClusterBehaviour

UI_HOST = "127.0.0.1"
UI_PORT = 4200
LOCALNET_PORT = 8899
UP_DIR = REPO_ROOT / "var" / "up"
PREFECT_YAML = REPO_ROOT / "prefect.yaml"
# The Program Pause block of demo_vault; prefect.yaml's kill-switch deployment names it.
PAUSE_BLOCK = "localnet-pause"


SERVER_LOG = REPO_ROOT / "var" / "prefect-server.log"


def start_prefect_server(
    host: str = UI_HOST, port: int = UI_PORT, log_path: Path = SERVER_LOG
) -> subprocess.Popen[bytes]:
    """Start `prefect server start` bound to ``host`` and wait until its API answers; its
    output goes to ``log_path`` (appended)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    # A first start creates and migrates the server's database: slow on a busy host.
    wait = settings().prefect_startup_timeout_seconds
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the Prefect server exited; see {log_path}")
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/api/health", timeout=2) as resp:
                if resp.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    server.terminate()
    raise RuntimeError(
        f"the Prefect server did not answer within {wait:.0f} s; see {log_path}. "
        f"On a slow or busy machine set {EPHEMERAL_STARTUP_TIMEOUT} higher (e.g. 600)."
    )


def load_deployments(path: Path = PREFECT_YAML) -> list[Any]:
    """prefect.yaml's deployments as runner deployments (schedules and parameters kept)."""
    from prefect.flows import load_flow_from_entrypoint
    from prefect.schedules import Cron

    spec = yaml.safe_load(path.read_text())
    deployments = []
    for entry in spec.get("deployments", []):
        flow = load_flow_from_entrypoint(str(REPO_ROOT / entry["entrypoint"]))
        crons = [s["cron"] for s in entry.get("schedules") or [] if "cron" in s]
        deployments.append(
            flow.to_deployment(
                name=entry["name"],
                description=entry.get("description"),
                parameters=entry.get("parameters") or {},
                tags=entry.get("tags") or [],
                schedules=[Cron(c, timezone="UTC") for c in crons],
            )
        )
    return deployments


async def prepare_chain(behaviour: ClusterBehaviour | None = None) -> dict[str, str]:
    """Localnet scenario + blocks (a cluster-like localnet with ``behaviour``); returns
    what to tell the operator."""
    from runbooks.demo import start_demo_chain

    return await prepare_console(start_demo_chain(port=LOCALNET_PORT, behaviour=behaviour))


async def prepare_console(chain: Any, members_dir: Path = UP_DIR) -> dict[str, str]:
    """Everything the console needs on ``chain`` (a ``DemoChain``): every block type
    registered (so each can be created in the UI), the onchain governance, the v2 buffer,
    the blocks the deployments name (demo_vault's pause included) and the member keys."""
    from blocks import register_block_types
    from runbooks.demo import (
        hand_buffer_to_governance,
        save_blocks,
        setup_governance,
        write_buffer,
    )
    from runbooks.demo_migration import create_config, save_pause_block

    await register_block_types()
    # The onchain backend: upgrade_manager's governance PDA holds demo_vault's authority.
    await setup_governance(chain, timelock_seconds=60)
    buffer = await write_buffer(chain, chain.binaries["v2"])
    await hand_buffer_to_governance(chain, buffer)
    await save_blocks(
        chain, timelock_seconds=60, signoff_timeout_seconds=24 * 3600, backend="onchain"
    )
    await save_managed_programs(chain)
    # demo_vault's own pause (its Config), which the kill-switch deployment pulls.
    config = await create_config(chain)
    await save_pause_block(chain, config, PAUSE_BLOCK)
    members_dir.mkdir(parents=True, exist_ok=True)
    for i, member in enumerate(chain.members, start=1):
        path = members_dir / f"member-{i}.json"
        path.write_text(keypair_to_json(member))
        path.chmod(0o600)
    return {
        "program_id": str(chain.program_id),
        "buffer": str(buffer),
        "rpc": chain.url,
        "pause_config": str(config),
    }


async def save_managed_programs(chain: Any) -> None:
    """What the daily health check and the backups watch: demo_vault and the fee payer."""
    from blocks.programs import FeePayer, ManagedProgram, ManagedPrograms
    from programs.upgrade_manager.client import authority_address

    assert chain.governance is not None
    await ManagedPrograms(
        programs=[
            ManagedProgram(
                name="demo_vault",
                program_id=str(chain.program_id),
                expected_authority=str(authority_address(chain.governance)),
            )
        ],
        fee_payers=[FeePayer(label="fee payer", address=str(chain.authority.pubkey()))],
    ).asave("managed-programs", overwrite=True)


def start_metrics_endpoint() -> None:
    """The Prometheus endpoint (``runbooks metrics``) in this process; prints its URL.

    127.0.0.1:9464 unless RUNBOOKS_METRICS_HOST / RUNBOOKS_METRICS_PORT say otherwise. A
    port in use is reported, not fatal: the console works without it.
    """
    from runbooks.metrics import configured_address, endpoint_url, serve

    host, port = configured_address()
    try:
        server, _ = serve(host, port)
    except OSError as exc:
        print(
            f"Metrics:     not started: {host}:{port} {exc.strerror}; "
            "set RUNBOOKS_METRICS_PORT to a free port",
            flush=True,
        )
        return
    print(f"Metrics:     {endpoint_url(server, host)}  (Prometheus)", flush=True)


def main(
    behaviour: ClusterBehaviour | None = None,
    *,
    workers: int = 0,
    prefect_database: str | None = None,
) -> int:
    """The console. With ``workers``, prefect.yaml's deployments go to the ``runbooks``
    process work pool and that many workers run them (the production layout, on one
    machine); without, this process serves them. ``prefect_database``: the Prefect
    server's PostgreSQL (else its SQLite under PREFECT_HOME)."""
    from runbooks import workers as pool

    server_env = pool.server_database_env(prefect_database)  # refused before anything starts
    if workers < 0:
        raise InputError(f"--workers {workers}: give 0 (serve from this process) or more")
    os.environ.setdefault("PREFECT_API_URL", f"http://{UI_HOST}:{UI_PORT}/api")
    os.environ.setdefault("PREFECT_UI_API_URL", f"http://{UI_HOST}:{UI_PORT}/api")
    os.environ.setdefault("RUNBOOKS_PAUSE_POLL_SECONDS", "2")
    os.environ.update(server_env)
    # Prefect reads its settings at import: after the environment above is set.
    from runbooks.crash_watch import HEARTBEAT_SECONDS, ensure_crash_automations

    # Served runs inherit it: a killed run stops sending heartbeats and is marked Crashed.
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_SECONDS))
    (REPO_ROOT / "var").mkdir(exist_ok=True)
    server = start_prefect_server()
    running: list[subprocess.Popen[bytes]] = []
    start_metrics_endpoint()
    try:
        asyncio.run(ensure_crash_automations())
        scenario = asyncio.run(prepare_chain(behaviour))
        if workers:
            asyncio.run(pool.ensure_work_pool())
            env = pool.runbooks_env()
            pool.deploy_all(env, REPO_ROOT / "var" / "deploy.log")
            running = pool.start_workers(workers, env, REPO_ROOT / "var" / "workers")
        where = (
            f"{workers} process worker(s) on work pool {pool.POOL!r} (logs in var/workers/)"
            if workers
            else "served from this process"
        )
        print(
            f"\nPrefect UI:  http://{UI_HOST}:{UI_PORT}"
            f"  ({'PostgreSQL' if server_env else 'SQLite'}; deployments {where})\n"
            f"Localnet:    {scenario['rpc']}\n"
            f"Program:     {scenario['program_id']}  (demo_vault v1)\n"
            f"Buffer:      {scenario['buffer']}  (demo_vault v2)\n"
            f"Members:     {UP_DIR}/member-1.json ... member-5.json (3 of 5 sign)\n"
            "Start Deployments > program-upgrade/upgrade > Run > Custom run with the program\n"
            "and buffer above; sign with `uv run runbooks sign --proposal ID --keypair FILE`.\n"
            "Kill switch: Deployments > kill-switch > Run (engage pauses demo_vault through\n"
            f"block {PAUSE_BLOCK}; release asks 3 of 5 members to sign its line).\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        if workers:
            while all(worker.poll() is None for worker in running):
                time.sleep(1)
            raise RuntimeError("a worker exited; see var/workers/")
        from prefect import serve

        serve(*load_deployments(), print_starting_message=True)
    finally:
        pool.stop(running)
        server.terminate()
        server.wait(timeout=30)
    return 0
