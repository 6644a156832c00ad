"""The Squads audit task against the localnet: Multisig bytes serialized by the official
SDK (``@sqds/multisig``) written at the multisig PDA, owned by the Squads program, are
read, decoded and audited, with the report published as an artifact; a wrong owner, a
missing account, an account that is no Multisig and a policy naming no multisig are
refused clearly, with no artifact."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from solders.account import Account
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from blocks.cluster import SolanaCluster
from core.errors import AccountNotFound, ChainError, InputError, PolicyViolation
from domain.policy import Member, Policy
from localnet import Localnet, LocalnetServer
from programs.squads.client import ALL_PERMISSIONS, PROGRAM_ID, Permission, multisig_pda
from tasks.squads_audit import ARTIFACT_KEY, audit_squads_multisig, read_squads_multisig
from tests.squads_sdk import sdk

DAY = 24 * 3600
POLICY = Policy(
    name="squads-test",
    members=(),
    threshold=1,
    timelock_seconds=DAY,
    min_timelock_seconds=DAY,
    backend="squads",
)


@pytest.fixture(scope="module")
def server() -> Iterator[LocalnetServer]:
    with LocalnetServer(port=0) as srv:
        yield srv


@pytest.fixture
def cluster(server: LocalnetServer) -> SolanaCluster:
    return SolanaCluster(cluster="localnet", rpc_urls=[server.url])


def sdk_multisig(
    voters: list[Pubkey], runbook: Pubkey, threshold: int, time_lock: int, config: Pubkey
) -> tuple[Pubkey, bytes]:
    """A multisig PDA and its account data as the SDK serializes it."""
    create_key = Keypair().pubkey()
    address, bump = multisig_pda(create_key)
    members = [{"key": str(k), "permissions": int(ALL_PERMISSIONS)} for k in voters]
    members.append(
        {"key": str(runbook), "permissions": int(Permission.INITIATE | Permission.EXECUTE)}
    )
    fields: dict[str, Any] = {
        "createKey": str(create_key),
        "configAuthority": str(config),
        "threshold": threshold,
        "timeLock": time_lock,
        "transactionIndex": "3",
        "staleTransactionIndex": "0",
        "rentCollector": None,
        "bump": bump,
        "members": members,
    }
    (raw,) = sdk([{"op": "serialize", "account": "Multisig", "fields": fields}])
    return address, bytes.fromhex(raw)


def put(net: Localnet, address: Pubkey, data: bytes, owner: Pubkey = PROGRAM_ID) -> None:
    rent = net.minimum_balance_for_rent_exemption(len(data))
    net.svm.set_account(address, Account(rent, data, owner, False, 0))


async def artifacts_for(address: Pubkey) -> list[str]:
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY]))
        )
    return [str(a.data) for a in found if str(address) in str(a.data)]


async def test_a_multisig_written_by_the_sdk_is_read_and_audited(
    prefect_api: None, server: LocalnetServer, cluster: SolanaCluster
) -> None:
    voters = [Keypair().pubkey() for _ in range(3)]
    runbook = Keypair().pubkey()
    address, data = sdk_multisig(voters, runbook, 2, DAY, Pubkey.default())
    put(server.localnet, address, data)

    multisig = await read_squads_multisig(cluster, str(address))
    assert [m.key for m in multisig.members] == [*voters, runbook]
    assert (multisig.threshold, multisig.time_lock, multisig.controlled) == (2, DAY, False)

    audit = await audit_squads_multisig(cluster, POLICY, str(address), str(runbook))
    assert audit.refusals == () and audit.warnings == ()
    assert f"| (this runbook) | `{runbook}` | yes | no | yes |" in audit.report
    (published,) = await artifacts_for(address)
    assert "- Threshold: 2 of 3 members with Vote permission" in published


async def test_a_config_authority_is_warned_and_weak_settings_refused(
    prefect_api: None, server: LocalnetServer, cluster: SolanaCluster
) -> None:
    runbook = Keypair().pubkey()
    authority = Keypair().pubkey()
    voters = [Keypair().pubkey() for _ in range(3)]
    address, data = sdk_multisig(voters, runbook, 2, DAY, authority)
    put(server.localnet, address, data)
    audit = await audit_squads_multisig(cluster, POLICY, str(address), str(runbook))
    assert audit.refusals == ()
    assert [w for w in audit.warnings if f"config authority {authority}" in w]

    weak, data = sdk_multisig(voters[:2], runbook, 1, 60, Pubkey.default())
    put(server.localnet, weak, data)
    with pytest.raises(PolicyViolation) as refused:
        await audit_squads_multisig(cluster, POLICY, str(weak), str(runbook))
    findings = refused.value.findings
    assert any("has 2 members with Vote permission; at least 3 needed" in f for f in findings)
    assert any("time lock 60 s is below the policy minimum 86400 s" in f for f in findings)
    # The refusal's report is published all the same: it shows what to fix.
    (published,) = await artifacts_for(weak)
    assert "**Refused:**" in published


async def test_a_wrong_owner_or_missing_account_is_refused_clearly(
    prefect_api: None, server: LocalnetServer, cluster: SolanaCluster
) -> None:
    runbook = Keypair().pubkey()
    voters = [Keypair().pubkey() for _ in range(3)]
    impostor, data = sdk_multisig(voters, runbook, 2, DAY, Pubkey.default())
    other_owner = Pubkey.new_unique()
    put(server.localnet, impostor, data, owner=other_owner)
    with pytest.raises(ChainError, match=f"owned by {other_owner}, not the Squads program"):
        await audit_squads_multisig(cluster, POLICY, str(impostor), str(runbook))

    missing = Pubkey.new_unique()
    with pytest.raises(
        AccountNotFound, match=f"no account at {missing} on this cluster: not a Squads multisig"
    ):
        await audit_squads_multisig(cluster, POLICY, str(missing), str(runbook))

    not_multisig = Pubkey.new_unique()
    put(server.localnet, not_multisig, b"\x01" * 120)
    with pytest.raises(ChainError, match=f"{not_multisig} is not a Squads multisig"):
        await read_squads_multisig(cluster, str(not_multisig))

    for address in (impostor, missing, not_multisig):
        assert await artifacts_for(address) == []


async def test_a_policy_naming_no_multisig_is_refused(
    prefect_api: None, cluster: SolanaCluster
) -> None:
    with pytest.raises(InputError, match="names no multisig; set its squads_multisig"):
        await audit_squads_multisig(cluster, POLICY, None)
    with pytest.raises(InputError, match="squads_multisig: 'nope' is not a base58 public key"):
        await audit_squads_multisig(cluster, POLICY, "nope")


async def test_a_stale_member_list_is_warned_in_the_published_report(
    prefect_api: None, server: LocalnetServer, cluster: SolanaCluster
) -> None:
    voters = [Keypair().pubkey() for _ in range(3)]
    runbook, gone = Keypair().pubkey(), Keypair().pubkey()
    address, data = sdk_multisig(voters, runbook, 2, DAY, Pubkey.default())
    put(server.localnet, address, data)
    listed = [Member(name="Alice", pubkey=str(voters[0])), Member(name="Eve", pubkey=str(gone))]
    policy = replace(POLICY, members=tuple(m.pubkey for m in listed), profiles=tuple(listed))

    audit = await audit_squads_multisig(cluster, policy, str(address), str(runbook))
    assert audit.refusals == ()  # a warning: the multisig decides who votes
    assert [w.split(" ", 4)[:4] for w in audit.warnings] == [
        ["policy", "member", "Eve", f"({gone})"],
        ["the", "Squads", "multisig's", "voter(s)"],
    ]
    assert f"{voters[1]}, {voters[2]} are missing" in audit.warnings[1]
    [report] = await artifacts_for(address)
    assert "**Warnings:**" in report and f"Eve ({gone})" in report
