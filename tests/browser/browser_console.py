"""What a person does in the Prefect UI, and what a member does on their own machine.

UI helpers follow DESIGN.md's notes on Prefect 3.8.8's bundled UI: form fields are found
through ``.schema-form-property`` by their exact label, the Resume dialog is the page's
only dialog, and the run's progress is read from the API, never from the page.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import shutil
import struct
import time
import warnings
from contextlib import redirect_stdout, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from browser_stack import patched_environ
from playwright.async_api import Locator, Page, expect
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import LogSort
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from core.approval import DOMAIN_TAG, MESSAGE_VERSION
from core.settings import REPO_ROOT
from runbooks.cli import main as runbooks_cli

BPF_LOADER_UPGRADEABLE = Pubkey.from_string("BPFLoaderUpgradeab1e11111111111111111111111")
PROGRAMDATA_HEADER = 45
SUBMIT_FAILED = REPO_ROOT / "test-output" / "screenshots" / "submit-failed.png"
# Prefect's server on SQLite answers 503 ("retry") when a write finds the database
# locked, which happens on a busy machine (PrefectHQ/prefect#17473); nothing was written.
# Prefect's client retries it by itself; the UI shows this and keeps the form.
SERVER_BUSY = 503
UI_ERROR = "Something went wrong"
SUBMIT_ATTEMPTS = 5


class Shots:
    """Numbered screenshots of one test under ``out``; with ``publish_to``, the ones the
    README shows are copied there too (opt-in, so CI never rewrites tracked files)."""

    def __init__(self, page: Page, test_name: str, out: Path, publish_to: Path | None) -> None:
        self.page = page
        self.out = out
        self.publish_to = publish_to
        self.prefix = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")
        self.count = 0
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob(f"{self.prefix}-*.png"):
            old.unlink()

    async def take(self, name: str, *, publish: str | None = None) -> Path:
        """Save step ``name``; ``publish`` names its README copy."""
        self.count += 1
        path = self.out / f"{self.prefix}-{self.count:02d}-{name}.png"
        # Dialogs fade in: a screenshot mid-animation is translucent.
        await self.page.screenshot(path=path, animations="disabled")
        if publish and self.publish_to is not None:
            self.publish_to.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, self.publish_to / f"{publish}.png")
        return path


def form_property(scope: Page | Locator, label: str) -> Locator:
    """The schema-form property whose label is exactly ``label`` (the UI adds
    "(Optional)" to the label of a parameter with a default)."""
    page = scope.page if isinstance(scope, Locator) else scope
    text = re.compile(rf"^\s*{re.escape(label)}(\s*\(Optional\))?\s*$")
    return scope.locator(".schema-form-property").filter(has=page.get_by_text(text))


async def fill_text(scope: Page | Locator, label: str, value: str) -> None:
    await form_property(scope, label).get_by_role("textbox").fill(value)


async def submit_custom_run(page: Page) -> UUID:
    """Submit the deployment's Custom run form; returns the new run's id.

    A create the server answers with 503 (see ``SERVER_BUSY``) created nothing, and the
    form stays: submitted again, as a person would.
    """
    for _ in range(SUBMIT_ATTEMPTS):
        async with page.expect_response(
            lambda r: r.request.method == "POST" and r.url.endswith("/create_flow_run")
        ) as created:
            await page.get_by_role("button", name="Submit", exact=True).click()
        response = await created.value
        if response.ok:
            return UUID((await response.json())["id"])
        if response.status != SERVER_BUSY:
            break
    raise AssertionError(f"creating the run failed: {response.status} {await response.text()}")


def pause_key_of(run: FlowRun) -> str:
    """The key of the pause a paused run waits at."""
    assert run.state is not None and run.state.is_paused(), run.state
    return run.state.state_details.pause_key or ""


async def open_resume_form(page: Page, ui_url: str, run_id: UUID) -> Locator:
    """Open the paused run's page and its Resume dialog; returns the dialog."""
    await page.goto(f"{ui_url}/runs/flow-run/{run_id}")
    resume = page.get_by_role("button", name="Resume")
    await resume.wait_for()
    await resume.click()
    dialog = page.get_by_role("dialog")
    await dialog.wait_for()
    # The description is markdown rendered once the run input schema has loaded.
    await dialog.get_by_text("The exact message to sign").wait_for()
    return dialog


async def approval_message(dialog: Locator) -> str:
    """The approval message exactly as the form shows it (its code block)."""
    block = dialog.locator("pre, code").filter(
        has_text=re.compile(rf"^{DOMAIN_TAG} {MESSAGE_VERSION}; ")
    )
    return (await block.first.inner_text()).strip()


async def proposal_number(dialog: Locator) -> int:
    """The proposal's records id: the form names it beside the signed number when the two
    differ (the onchain backend), else the heading's number is both."""
    heading = await dialog.get_by_text(re.compile(r"Sign off \w+ proposal \d+")).inner_text()
    records_note = dialog.get_by_text(re.compile(r"records #\d+"))
    if await records_note.count():
        heading = await records_note.first.inner_text()
    match = re.search(r"(?:records #|proposal )(\d+)", heading)
    assert match, heading
    return int(match.group(1))


async def fill_signoff(dialog: Locator, member: str, signature: str) -> None:
    await fill_text(dialog, "Your public key", member)
    await fill_text(dialog, "Signature", signature)


async def submit(dialog: Locator, client: PrefectClient, run_id: UUID, pause_key: str) -> None:
    """Submit the Resume form of pause ``pause_key``; the dialog closes once it is taken.

    When the server answers 503 (see ``SERVER_BUSY``) the UI says "Something went wrong"
    and keeps the form. A person submits again, and so does this, but only while the API
    shows the run still waiting at this very pause, so nothing is submitted twice.
    """
    page = dialog.page
    statuses: list[int] = []
    while len(statuses) < SUBMIT_ATTEMPTS:
        async with page.expect_response(
            lambda r: r.request.method == "POST" and r.url.endswith(f"/flow_runs/{run_id}/resume")
        ) as answered:
            await dialog.get_by_role("button", name="Submit", exact=True).click()
        statuses.append((await answered.value).status)
        if statuses[-1] != SERVER_BUSY:
            # Taken, or refused for a reason a retry will not change (see the screenshot).
            with suppress(AssertionError):
                await expect(dialog).to_be_hidden()
                return
            break
        run = await client.read_flow_run(run_id)
        state = run.state
        if state is None or not state.is_paused() or state.state_details.pause_key != pause_key:
            break
        await expect(page.get_by_text(UI_ERROR).first).to_be_visible()
        # Visible in pytest's summary: how often the server's SQLite got in the way.
        warnings.warn(f"Resume: server answered {statuses[-1]}; submitting again", stacklevel=2)
    await page.screenshot(path=SUBMIT_FAILED, animations="disabled")
    raise AssertionError(f"the Resume form stayed open; the server answered {statuses}")


@dataclass(frozen=True)
class CliSignature:
    message: str
    pubkey: str
    signature: str


def runbooks_sign(
    keypair_file: Path, proposal_id: int, database_url: str, action: str = "approve"
) -> CliSignature:
    """Run `runbooks sign` as a member would, and read what it prints.

    In this process (its entry point and argument parsing, not a shortcut): a fresh
    interpreter would spend seconds importing Prefect for each signature.
    """
    argv = ["sign", "--proposal", str(proposal_id), "--keypair", str(keypair_file)]
    out = io.StringIO()
    with patched_environ({"DATABASE_URL": database_url}), redirect_stdout(out):
        code = runbooks_cli([*argv, "--action", action])
    assert code == 0, out.getvalue()
    fields = dict(line.split(":", 1) for line in out.getvalue().splitlines() if ":" in line)
    return CliSignature(
        message=fields["message"].strip(),
        pubkey=fields["pubkey"].strip(),
        signature=fields["signature"].strip(),
    )


def stock_cli_signature(member: Keypair, message: str) -> str:
    """What `solana sign-offchain-message` signs: the v0 envelope, written out here
    independently of core.approval (signing domain, version 0, format 0 = restricted
    ASCII, u16 LE length, message)."""
    body = message.encode("ascii")
    envelope = b"\xffsolana offchain" + bytes([0, 0]) + struct.pack("<H", len(body)) + body
    return str(member.sign_message(envelope))


async def wait_for_state(
    client: PrefectClient, run_id: UUID, timeout_seconds: float = 90.0
) -> FlowRun:
    """Wait until the run is in a final state."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        run = await client.read_flow_run(run_id)
        if run.state is not None and run.state.is_final():
            return run
        if time.monotonic() > deadline:
            state = run.state.type.value if run.state else "no state"
            raise TimeoutError(f"flow run {run_id} still {state} after {timeout_seconds} s")
        await asyncio.sleep(0.25)


async def run_logs(client: PrefectClient, run_id: UUID) -> list[str]:
    logs = await client.read_logs(
        log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])),
        sort=LogSort.TIMESTAMP_ASC,
        limit=200,  # Prefect 3.8's client would send null, which its server refuses
        offset=0,
    )
    return [log.message for log in logs]


async def wait_for_log(
    client: PrefectClient, run_id: UUID, needle: str, timeout_seconds: float = 20.0
) -> str:
    """The run's first log line containing ``needle`` (logs reach the API in batches)."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        for message in await run_logs(client, run_id):
            if needle in message:
                return message
        if time.monotonic() > deadline:
            raise TimeoutError(f"no log line with {needle!r} in run {run_id}")
        await asyncio.sleep(0.5)


async def run_artifacts(api_url: str, run_id: UUID) -> list[dict[str, Any]]:
    """The run's artifacts, straight from the API.

    Prefect 3.8's ``read_artifacts`` sends null for the filters it is not given, which its
    server refuses, and empty ones join on task runs (dropping flow-level artifacts).
    """
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as http:
        resp = await http.post(
            "/artifacts/filter",
            json={"artifacts": {"flow_run_id": {"any_": [str(run_id)]}}, "sort": "KEY_ASC"},
        )
        resp.raise_for_status()
        return list(resp.json())


def verifiable_sha256(program_bytes: bytes) -> str:
    """solana-verify's hash: SHA-256 of the program bytes, trailing zeros stripped."""
    return hashlib.sha256(program_bytes.rstrip(b"\x00")).hexdigest()


async def programdata_sha256(rpc_url: str, program_id: Pubkey) -> str:
    """The deployed program's verifiable hash, read over RPC from its ProgramData."""
    programdata, _ = Pubkey.find_program_address([bytes(program_id)], BPF_LOADER_UPGRADEABLE)
    async with AsyncClient(rpc_url) as rpc:
        account = (await rpc.get_account_info(programdata)).value
    assert account is not None, f"ProgramData {programdata} missing"
    return verifiable_sha256(bytes(account.data)[PROGRAMDATA_HEADER:])
