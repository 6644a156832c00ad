"""The demo: the upgrade runbook end to end on the embedded localnet.

Starts a localnet, deploys demo_vault v1 and the upgrade_manager program, creates a
governance of five members (3 of 5, 5 s timelock) and hands demo_vault's upgrade
authority to its PDA; writes the v2 buffer over RPC (as `solana program write-buffer`
would) and hands it to the PDA too; then runs the upgrade flow with the ``onchain``
backend and signs it off with three of five member keys through the Resume API the
Prefect UI uses. The flow relays each signature to the program, which enforces the
threshold and timelock and upgrades by CPI. Ends with one line ``RESULT {json}``.

The pieces are reusable: tests and `make up` build the same scenario.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from core import approval
from localnet.cluster_mode import ClusterBehaviour
from localnet.server import LocalnetServer
from programs import loader, rpc, send
from programs.loader import verifiable_hash
from programs.rpc_transport import RetryPolicy, retrying_client
from programs.upgrade_manager import client as upgrade_manager

SOL = 1_000_000_000
DEMO_PROGRAM = "demo_vault"

# The demo's own calls go to its localnet: the one retry policy, with no rate limit.
LOCALNET_POLICY = RetryPolicy(requests_per_second=None)


def demo_client(url: str) -> AsyncClient:
    """A client on the demo's localnet under the one RPC retry policy."""
    return retrying_client([url], LOCALNET_POLICY)


@dataclass
class DemoChain:
    """A localnet with demo_vault v1 deployed, and the keys of its operators."""

    server: LocalnetServer
    authority: Keypair  # upgrade authority (keypair backend) and fee payer
    members: list[Keypair]
    program_id: Pubkey
    binaries: dict[str, bytes] = field(default_factory=dict)
    governance: Pubkey | None = None  # set by setup_governance

    @property
    def url(self) -> str:
        return self.server.url


def demo_binaries() -> dict[str, bytes]:
    """demo_vault v1 and v2, built from C (cached by source hash)."""
    from programs.toolchain.build import build_program

    return {v: build_program(f"{DEMO_PROGRAM}/{v}").read_bytes() for v in ("v1", "v2")}


def start_demo_chain(
    members: int = 5,
    *,
    port: int = 0,
    headroom: float = 2.0,
    binaries: dict[str, bytes] | None = None,
    behaviour: ClusterBehaviour | None = None,
) -> DemoChain:
    """A running localnet with demo_vault v1 deployed (ProgramData with ``headroom``x room);
    ``behaviour`` makes it cluster-like (the setup here is direct, so immediate)."""
    binaries = binaries or demo_binaries()
    server = LocalnetServer(port=port, behaviour=behaviour).start()
    authority = Keypair()
    server.localnet.airdrop(authority.pubkey(), 1_000 * SOL)
    v1 = binaries["v1"]
    program_id = server.localnet.deploy_upgradeable(
        Keypair(), v1, authority, max_data_len=int(len(v1) * headroom)
    )
    return DemoChain(
        server=server,
        authority=authority,
        members=[Keypair() for _ in range(members)],
        program_id=program_id,
        binaries=binaries,
    )


async def write_buffer(chain: DemoChain, elf: bytes, authority: Keypair | None = None) -> Pubkey:
    """Write ``elf`` to a new buffer over RPC; its authority is the upgrade authority."""
    async with demo_client(chain.url) as client:
        return await send.write_buffer(
            client, chain.authority, Keypair(), authority or chain.authority, elf
        )


async def setup_governance(
    chain: DemoChain, *, threshold: int = 3, timelock_seconds: int = 5, adopt: bool = True
) -> Pubkey:
    """Deploy upgrade_manager, create a governance of ``chain.members`` for this cluster
    (its genesis hash) with the fee payer as proposer (the runbook proposes with it),
    and (``adopt``) make its authority PDA demo_vault's upgrade authority with
    upgrade_manager's checked adopt; returns the governance address.

    The adopt is the one-time hand-over: the current authority signs and the program
    signs for its PDA as the new authority, so a mistyped governance cannot strand the
    program (the unchecked `solana program set-upgrade-authority ...
    --skip-new-upgrade-authority-signer-check` could).
    """
    from programs.toolchain.build import build_program

    manager = build_program(upgrade_manager.BUILD_NAME).read_bytes()
    chain.server.localnet.deploy_upgradeable(upgrade_manager.PROGRAM_ID, manager, chain.authority)
    create_key = Keypair()
    config = upgrade_manager.GovernanceConfig(
        members=tuple(m.pubkey() for m in chain.members),
        threshold=threshold,
        timelock=timelock_seconds,
        emergency_threshold=min(threshold + 1, len(chain.members)),
        emergency_timelock=min(timelock_seconds, 60),
        proposer=chain.authority.pubkey(),
    )
    governance = upgrade_manager.governance_address(create_key.pubkey())
    payer = chain.authority
    async with demo_client(chain.url) as client:
        genesis = await rpc.genesis_hash(client)
        create = upgrade_manager.create_governance(
            create_key.pubkey(), payer.pubkey(), config, genesis
        )
        await send.send_and_confirm(client, [create], payer, [create_key])
        if adopt:
            hand_over = upgrade_manager.adopt_program(governance, chain.program_id, payer.pubkey())
            await send.send_and_confirm(client, [hand_over], payer)
    chain.governance = governance
    return governance


async def hand_buffer_to_governance(chain: DemoChain, buffer: Pubkey) -> None:
    """Make the governance's PDA the buffer's authority, as proposals require
    (`solana program set-buffer-authority <buffer> --new-buffer-authority <PDA>`)."""
    assert chain.governance is not None, "call setup_governance first"
    authority_pda = upgrade_manager.authority_address(chain.governance)
    async with demo_client(chain.url) as client:
        ix = loader.set_authority(buffer, chain.authority.pubkey(), authority_pda)
        await send.send_and_confirm(client, [ix], chain.authority)


async def save_blocks(
    chain: DemoChain,
    *,
    prefix: str = "localnet",
    threshold: int = 3,
    timelock_seconds: int = 5,
    signoff_timeout_seconds: int = 600,
    backend: str = "keypair",
) -> dict[str, str]:
    """Save the cluster, policy and keypair blocks the upgrade flow loads; returns names.

    ``backend="onchain"`` names ``chain.governance`` (see ``setup_governance``).
    """
    from blocks import MultisigPolicy, SolanaCluster, SolanaKeypair
    from domain.policy import Member

    names = {
        "cluster_block": prefix,
        "policy_block": f"{prefix}-multisig",
        "authority_block": f"{prefix}-upgrade-authority",
        "fee_payer_block": f"{prefix}-fee-payer",
    }
    # A localnet has no request limit to respect.
    await SolanaCluster(cluster="localnet", rpc_urls=[chain.url], requests_per_second=None).asave(
        names["cluster_block"], overwrite=True
    )
    await MultisigPolicy(
        # Named as their key files under var/up/, so forms and reports say who is who.
        members=[
            Member(name=f"member-{i}", pubkey=str(m.pubkey()))
            for i, m in enumerate(chain.members, start=1)
        ],
        threshold=threshold,
        timelock_seconds=timelock_seconds,
        min_timelock_seconds=0,  # a localnet policy may use seconds
        backend=backend,
        signoff_timeout_seconds=signoff_timeout_seconds,
        governance=str(chain.governance) if chain.governance else None,
    ).asave(names["policy_block"], overwrite=True)
    # One instance per name: a saved block instance stays bound to its first document.
    for name in (names["authority_block"], names["fee_payer_block"]):
        await SolanaKeypair.from_keypair(chain.authority).asave(name, overwrite=True)
    return names


async def find_run(tag: str, timeout_seconds: float = 60.0) -> uuid.UUID:
    """The id of the flow run carrying ``tag``, once it exists."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.client.schemas.sorting import FlowRunSort

    deadline = time.monotonic() + timeout_seconds
    async with get_client() as client:
        while True:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])),
                sort=FlowRunSort.ID_DESC,  # the server refuses a null sort
                limit=1,
            )
            if runs:
                return runs[0].id
            if time.monotonic() > deadline:
                raise TimeoutError(f"no flow run tagged {tag} after {timeout_seconds} s")
            await asyncio.sleep(0.2)


async def sign_with(
    run_id: uuid.UUID, signers: list[Keypair], *, cluster: str, program_id: str, buffer: str
) -> list[str]:
    """Each signer signs the run's proposal and submits the Resume form in turn."""
    from prefect.client.orchestration import get_client

    from flows._signoff import approval_subject
    from flows.upgrade import proposal_key
    from runbooks.console import sign_off, wait_for_pause
    from tasks.records import proposal_by_key

    key = None
    async with get_client() as client:
        await wait_for_pause(client, run_id)
        proposal = proposal_by_key(proposal_key(cluster, program_id, buffer, str(run_id)))
        if proposal is None:
            raise RuntimeError(f"flow run {run_id} paused without a recorded proposal")
        message = approval_subject(proposal).message("approve")
        for member in signers:
            signature = approval.sign(member, message)
            key = await sign_off(
                client,
                run_id,
                {"member": str(member.pubkey()), "signature": str(signature)},
                after_key=key,
            )
    return [str(m.pubkey()) for m in signers]


async def run_upgrade(
    chain: DemoChain, buffer: Pubkey, signers: list[Keypair], names: dict[str, str], **params: Any
) -> dict[str, Any]:
    """Run the upgrade flow in this process while ``signers`` sign it off."""
    from prefect import tags

    from flows.upgrade import upgrade_program

    tag = f"demo-{uuid.uuid4().hex[:12]}"
    with tags(tag):
        flow_task = asyncio.create_task(
            upgrade_program(
                program_id=str(chain.program_id),
                buffer=str(buffer),
                description=params.pop("description", "demo_vault v2: layout v2 and migrate"),
                proposer=params.pop("proposer", "on-call"),
                **names,
                **params,
            )
        )
        run_id = await find_run(tag)
        signing = asyncio.create_task(
            sign_with(
                run_id,
                signers,
                cluster="localnet",
                program_id=str(chain.program_id),
                buffer=str(buffer),
            )
        )
        done, _ = await asyncio.wait({flow_task, signing}, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()  # surface the first failure
        await signing
        return await flow_task


async def demo(behaviour: ClusterBehaviour | None = None) -> dict[str, Any]:
    started = time.monotonic()
    chain = start_demo_chain(behaviour=behaviour)
    try:
        await setup_governance(chain)
        buffer = await write_buffer(chain, chain.binaries["v2"])
        await hand_buffer_to_governance(chain, buffer)
        names = await save_blocks(chain, backend="onchain")
        result = await run_upgrade(
            chain,
            buffer,
            chain.members[:3],
            names,
            expected_sha256=verifiable_hash(chain.binaries["v2"]),
        )
    finally:
        chain.server.stop()
    result["seconds"] = round(time.monotonic() - started, 2)
    return result


def main(behaviour: ClusterBehaviour | None = None) -> int:
    result = asyncio.run(demo(behaviour))
    print("RESULT " + json.dumps(result, sort_keys=True))
    return 0
