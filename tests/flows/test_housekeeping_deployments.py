"""prefect.yaml: every runbook's deployment registers with a Prefect server, and the
server lists each schedule (cron, UTC) with its parameters and each Run form's fields
titled and explained.

Two paths: the served one (`make up`: ``runbooks.up.load_deployments`` registered as
``serve`` registers them), and ``prefect deploy --all`` against a process work pool.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
from typing import Any

import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.flows import load_flow_from_entrypoint
from prefect.settings import PREFECT_API_URL

from core.settings import REPO_ROOT
from domain.forms import unlabelled
from runbooks.up import PREFECT_YAML, load_deployments

SCHEDULED = {
    ("daily-health", "daily"): "0 6 * * *",
    ("backup", "weekly"): "0 3 * * 0",
    ("key-rotation-review", "review"): "0 4 1 * *",
    ("housekeeping", "monthly"): "0 5 1 * *",
    ("metrics-dashboard", "metrics"): "30 6 * * *",
}


def spec() -> list[dict[str, Any]]:
    return yaml.safe_load(PREFECT_YAML.read_text())["deployments"]


async def registered() -> dict[tuple[str, str], dict[str, Any]]:
    """(flow name, deployment name) -> the server's deployment, as the UI reads it."""
    async with get_client() as client:
        flows = (await client._client.post("/flows/filter", json={"limit": 200})).json()
        deployments = (await client._client.post("/deployments/filter", json={"limit": 200})).json()
    names = {f["id"]: f["name"] for f in flows}
    return {(names[d["flow_id"]], d["name"]): d for d in deployments}


def check_against_yaml(server: dict[tuple[str, str], dict[str, Any]]) -> None:
    by_entrypoint = {(d["entrypoint"], d["name"]): d for d in server.values()}
    for entry in spec():
        deployment = by_entrypoint[(entry["entrypoint"], entry["name"])]
        for key, value in (entry.get("parameters") or {}).items():
            assert deployment["parameters"][key] == value, (entry["name"], key)
        crons = [s["cron"] for s in entry.get("schedules") or []]
        assert [s["schedule"]["cron"] for s in deployment["schedules"]] == crons
        # The Run form, as the UI reads it: every parameter of the flow, each titled and
        # explained.
        form = deployment["parameter_openapi_schema"]
        flow = load_flow_from_entrypoint(str(REPO_ROOT / entry["entrypoint"]))
        assert set(form["properties"]) == set(inspect.signature(flow.fn).parameters)
        assert not unlabelled(form), (entry["name"], unlabelled(form))
    for (flow_name, name), cron in SCHEDULED.items():
        [schedule] = server[(flow_name, name)]["schedules"]
        assert schedule["schedule"] == {**schedule["schedule"], "cron": cron, "timezone": "UTC"}
        assert schedule["active"] is True
    # Every runbook of the scheduled-operations issue has a deployment.
    entrypoints = {e["entrypoint"] for e in spec()}
    assert entrypoints >= {
        "flows/upgrade.py:upgrade_program",
        "flows/health.py:daily_health",
        "flows/backup.py:backup_records_and_programs",
        "flows/backup.py:restore_backup",
        "flows/key_rotation.py:rotate_upgrade_authority",
        "flows/key_rotation.py:key_rotation_review",
        "flows/key_rotation.py:register_key",
        "flows/housekeeping.py:housekeeping",
    }


async def test_served_deployments_register_with_their_schedules(prefect_api: None) -> None:
    # What `make up` does: build runner deployments from prefect.yaml and register them
    # (serve() registers each with apply(), then polls for their runs).
    # (load_deployments is synchronous code, as in `runbooks up`: call it off the loop.)
    for deployment in await asyncio.to_thread(load_deployments):
        await deployment.aapply()
    check_against_yaml(await registered())


async def test_prefect_deploy_all_accepts_prefect_yaml(prefect_api: None) -> None:
    async with get_client() as client:
        pools = (await client._client.post("/work_pools/filter", json={"limit": 50})).json()
        if "runbooks" not in {p["name"] for p in pools}:
            await client.create_work_pool(WorkPoolCreate(name="runbooks", type="process"))
    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "RUNBOOKS_HOME": str(REPO_ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    server = await registered()
    check_against_yaml(server)
    assert all(d["work_pool_name"] == "runbooks" for d in server.values() if d["work_pool_name"])
