"""The Prefect UI as the operator's console, driven in headless Chromium.

An upgrade is started from the deployment's Custom run form and signed off through the
run's Resume form: three members with `runbooks sign`, one with a signature made over
the stock `solana sign-offchain-message` envelope. A wrong signature entered in the form
is refused, with its reason in the run's logs and the approvals table.
"""

from __future__ import annotations

import json
import re

import pytest
from browser_console import (
    Shots,
    approval_message,
    fill_signoff,
    fill_text,
    open_resume_form,
    pause_key_of,
    programdata_sha256,
    proposal_number,
    run_artifacts,
    runbooks_sign,
    stock_cli_signature,
    submit,
    submit_custom_run,
    verifiable_sha256,
    wait_for_log,
    wait_for_state,
)
from browser_stack import Console
from playwright.async_api import Page, expect
from sqlalchemy import Engine

from runbooks.console import resume_with_input, wait_for_pause
from runbooks.demo import write_buffer
from store import db
from store.records import proposals

# Never beside another exclusive test: a real `prefect server start` and Chromium.
pytestmark = pytest.mark.exclusive


async def new_buffer(console: Console) -> str:
    """A fresh demo_vault v2 buffer (an upgrade consumes its buffer)."""
    return str(await write_buffer(console.chain, console.chain.binaries["v2"]))


def records_engine(console: Console) -> Engine:
    """The records database the served runs write to."""
    return db.create_engine(console.env.database_url)


async def test_upgrade_from_custom_run_signed_off_in_the_pause_form(
    console: Console, page: Page, shots: Shots
) -> None:
    chain = console.chain
    program_id = str(chain.program_id)
    buffer = await new_buffer(console)
    assert await programdata_sha256(chain.url, chain.program_id) == verifiable_sha256(
        chain.binaries["v1"]
    )

    # Start: Deployments > program-upgrade/upgrade > Run > Custom run.
    await page.goto(f"{console.env.ui_url}/deployments/deployment/{console.deployment_id}")
    await page.get_by_role("button", name="Run", exact=True).wait_for()
    await shots.take("deployment")
    await page.get_by_role("button", name="Run", exact=True).click()
    await page.get_by_text("Custom run", exact=True).click()
    # The fields carry the titles domain/forms.py gives them, not the bare names.
    await fill_text(page, "Program ID", program_id)
    await fill_text(page, "Buffer", buffer)
    await fill_text(page, "Description", "demo_vault v2: layout v2 and migrate")
    await fill_text(page, "Proposer", "on-call")
    await expect(page.get_by_text("The upgradeable program to upgrade")).to_be_visible()
    await shots.take("custom-run-form", publish="custom-run-form")
    run_id = await submit_custom_run(page)

    async with console.client() as client:
        pause_key = None
        for i, keyfile in enumerate(console.member_files[:4]):
            pause_key = pause_key_of(await wait_for_pause(client, run_id, not_key=pause_key))
            form = await open_resume_form(page, console.env.ui_url, run_id)
            await expect(form.get_by_text(f"{i} of 4 needed")).to_be_visible()
            if i == 0:
                # A taller window shows more of the form's description (it scrolls).
                await page.set_viewport_size({"width": 1360, "height": 1400})
                await shots.take("signoff-form", publish="signoff-form")
                await page.set_viewport_size({"width": 1360, "height": 900})
                await form.get_by_text("The exact message to sign").scroll_into_view_if_needed()
                await shots.take("signoff-form-message")
            message = await approval_message(form)
            proposal_id = await proposal_number(form)
            if i < 3:
                # A member on their own machine: `runbooks sign` with their key file.
                signed = runbooks_sign(keyfile, proposal_id, console.env.database_url)
                assert signed.message == message  # the form shows exactly what is signed
                member, signature = signed.pubkey, signed.signature
            else:
                # A member with the stock Solana CLI (or a Ledger through it).
                keypair = chain.members[i]
                member, signature = str(keypair.pubkey()), stock_cli_signature(keypair, message)
            await fill_signoff(form, member, signature)
            await shots.take(
                f"signoff-{i + 1}-filled", publish="signoff-filled" if i == 0 else None
            )
            await submit(form, client, run_id, pause_key)

        run = await wait_for_state(client, run_id)
        assert run.state is not None and run.state.is_completed(), run.state

    # The program runs v2 on the localnet.
    assert await programdata_sha256(chain.url, chain.program_id) == verifiable_sha256(
        chain.binaries["v2"]
    )
    engine = records_engine(console)
    proposal = proposals.get_proposal(engine, proposal_id)
    assert proposal is not None and proposal.status == "executed"
    accepted = proposals.accepted_approvals(engine, proposal_id)
    assert [a.member for a in accepted] == [str(m.pubkey()) for m in chain.members[:4]]

    await page.goto(f"{console.env.ui_url}/runs/flow-run/{run_id}")
    await expect(page.get_by_text("Completed").first).to_be_visible()
    sent = page.get_by_text(re.compile(rf"upgrade of {program_id} sent: \w+"))
    await sent.scroll_into_view_if_needed()
    await expect(sent).to_be_visible()
    await shots.take("run-completed", publish="run-completed")

    by_key = {a["key"]: a for a in await run_artifacts(console.env.api_url, run_id)}
    report = by_key[f"upgrade-report-{proposal_id}"]
    table = by_key[f"upgrade-approvals-{proposal_id}"]
    assert verifiable_sha256(chain.binaries["v2"]) in str(report["data"])
    await page.goto(f"{console.env.ui_url}/artifacts/artifact/{report['id']}")
    await expect(page.get_by_text(f"Upgrade proposal #{proposal_id}: executed")).to_be_visible()
    await shots.take("report-artifact", publish="report-artifact")
    await page.goto(f"{console.env.ui_url}/artifacts/artifact/{table['id']}")
    await expect(page.get_by_text(str(chain.members[3].pubkey())).first).to_be_visible()
    await shots.take("approvals-artifact")


async def test_wrong_signature_in_the_form_is_refused(
    console: Console, page: Page, shots: Shots
) -> None:
    chain = console.chain
    buffer = await new_buffer(console)
    before = await programdata_sha256(chain.url, chain.program_id)
    async with console.client() as client:
        run = await client.create_flow_run_from_deployment(
            console.deployment_id,
            parameters={
                "program_id": str(chain.program_id),
                "buffer": buffer,
                "description": "demo_vault v2 again",
                "proposer": "on-call",
            },
        )
        run_id = run.id
        first = pause_key_of(await wait_for_pause(client, run_id))

        form = await open_resume_form(page, console.env.ui_url, run_id)
        proposal_id = await proposal_number(form)
        # Member 1's key with member 2's (real, but not member 1's) signature.
        member = str(chain.members[0].pubkey())
        other = runbooks_sign(console.member_files[1], proposal_id, console.env.database_url)
        await fill_signoff(form, member, other.signature)
        await shots.take("wrong-signature-filled")
        await submit(form, client, run_id, first)

        # Refused: the flow asks again, and says why in its logs.
        await wait_for_pause(client, run_id, not_key=first)
        refusal = await wait_for_log(client, run_id, "sign-off refused")
        assert f"signature is not {member}'s" in refusal

        engine = records_engine(console)
        attempts = proposals.approvals(engine, proposal_id)
        assert [(a.member, a.accepted) for a in attempts] == [(member, False)]
        assert attempts[0].reason and f"signature is not {member}'s" in attempts[0].reason
        assert proposals.accepted_approvals(engine, proposal_id) == []
        proposal = proposals.get_proposal(engine, proposal_id)
        assert proposal is not None and proposal.threshold_met_at is None
        assert await programdata_sha256(chain.url, chain.program_id) == before

        await page.goto(f"{console.env.ui_url}/runs/flow-run/{run_id}")
        refused = page.get_by_text(re.compile("sign-off refused")).first
        await refused.scroll_into_view_if_needed()
        await expect(refused).to_be_visible()
        await shots.take("refusal-in-logs", publish="signature-refused")
        form = await open_resume_form(page, console.env.ui_url, run_id)
        await expect(form.get_by_text("0 of 4 needed")).to_be_visible()
        await shots.take("form-asks-again")

        # Leave nothing paused: member 1 cancels the proposal with a valid signature.
        cancel = runbooks_sign(
            console.member_files[0], proposal_id, console.env.database_url, action="cancel"
        )
        await resume_with_input(
            client,
            run_id,
            {"member": cancel.pubkey, "signature": cancel.signature, "decision": "cancel"},
        )
        run = await wait_for_state(client, run_id)
        assert run.state is not None and run.state.is_cancelled(), run.state

    table = {a["key"]: a for a in await run_artifacts(console.env.api_url, run_id)}[
        f"upgrade-approvals-{proposal_id}"
    ]
    rows = json.loads(table["data"])  # a table artifact's data is its JSON text
    assert [(row["accepted"], row["decision"]) for row in rows] == [
        ("refused", "approve"),
        ("yes", "cancel"),
    ]
    await page.goto(f"{console.env.ui_url}/artifacts/artifact/{table['id']}")
    await expect(page.get_by_text("refused", exact=True)).to_be_visible()
    await shots.take("approvals-table")
    proposal = proposals.get_proposal(engine, proposal_id)
    assert proposal is not None and proposal.status == "cancelled"
