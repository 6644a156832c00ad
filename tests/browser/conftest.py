"""Browser fixtures: headless Chromium driving the Prefect UI of a real console.

- ``chromium`` (session): Debian's /usr/bin/chromium; without it the browser tests skip
  with instructions, unless ``RUNBOOKS_REQUIRE_BROWSER=1`` (CI), where they fail.
- ``console`` (module): `prefect server start` on a free port with its own PREFECT_HOME,
  the upgrade deployment served from a subprocess, a localnet with demo_vault v1, the
  blocks, member key files and a temporary SQLite records database; stopped when the
  module's tests are done, so the rest of the suite does not share the machine with it.
- ``page`` (per test): a fresh browser context; ``shots`` saves its screenshots under
  test-output/screenshots/ (and, with ``RUNBOOKS_UPDATE_SCREENSHOTS=1``, the ones the
  README shows under docs/screenshots/).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from browser_console import Shots
from browser_stack import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Console,
    ConsoleEnv,
    start_server,
    start_serving,
    stop,
    wait_for_deployment,
)
from playwright.async_api import Browser, Page, async_playwright, expect

from core.http_server import free_port
from core.keys import keypair_to_json
from core.settings import REPO_ROOT
from runbooks.demo import save_blocks, start_demo_chain

OUTPUT = REPO_ROOT / "test-output"
SCREENSHOTS = OUTPUT / "screenshots"
PUBLISHED = REPO_ROOT / "docs" / "screenshots"
SERVE_LOG = OUTPUT / "browser-serve.log"
# Pages render while other test suites load this machine: give assertions some slack.
expect.set_options(timeout=15_000)
INSTALL_HINT = "install it with `bash scripts/install-browser` (apt-get install chromium)"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip() not in ("", "0")


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        message = f"browser tests not run: {CHROMIUM} is missing; {INSTALL_HINT}"
        if _flag("RUNBOOKS_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def _console_processes(
    chromium: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ConsoleEnv, subprocess.Popen[bytes]]]:
    home = tmp_path_factory.mktemp("console")
    env = ConsoleEnv(
        port=free_port(),
        prefect_home=home / "prefect",
        database_url=f"sqlite:///{home / 'records.db'}",
    )
    OUTPUT.mkdir(exist_ok=True)
    server = start_server(env)
    serving = start_serving(env, SERVE_LOG)
    try:
        yield env, serving
    finally:
        stop(serving)
        stop(server)


@pytest.fixture(scope="module")
async def console(
    _console_processes: tuple[ConsoleEnv, subprocess.Popen[bytes]],
    demo_binaries: dict[str, bytes],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Console]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env, serving = _console_processes
    chain = start_demo_chain(binaries=demo_binaries)
    try:
        # Blocks go to this console's server, whatever API the rest of the session uses.
        with temporary_settings(updates={PREFECT_API_URL: env.api_url}):
            # 4 of 5: three sign with `runbooks sign`, one over the stock CLI envelope.
            await save_blocks(chain, threshold=4, timelock_seconds=2, signoff_timeout_seconds=300)
        keys = tmp_path_factory.mktemp("members")
        member_files = []
        for i, member in enumerate(chain.members, start=1):
            path = keys / f"member-{i}.json"
            path.write_text(keypair_to_json(member))
            path.chmod(0o600)
            member_files.append(path)
        # The deployment registers while the chain is set up above.
        deployment_id = wait_for_deployment(env, serving, SERVE_LOG)
        yield Console(env, chain, deployment_id, member_files)
    finally:
        chain.server.stop()


@pytest.fixture(scope="module")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        # launch() gives Chromium a fresh temporary user-data dir, removed on close.
        browser = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1360, "height": 900})
    context.set_default_timeout(20_000)
    try:
        yield await context.new_page()
    finally:
        await context.close()


@pytest.fixture
def shots(page: Page, request: pytest.FixtureRequest) -> Shots:
    publish_to = PUBLISHED if _flag("RUNBOOKS_UPDATE_SCREENSHOTS") else None
    return Shots(page, request.node.name, SCREENSHOTS, publish_to)
