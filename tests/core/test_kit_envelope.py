"""The envelope `runbooks sign` and core.approval build is byte for byte the one
@solana/kit compiles (compileOffchainMessageV0Envelope) for the same line and signer, and
kit's signature is the same signature (Ed25519 is deterministic)."""

from __future__ import annotations

from pathlib import Path

import pytest
from solders.keypair import Keypair

from core import approval
from core.approval import ApprovalSubject
from core.keys import keypair_to_json
from runbooks.cli import main as runbooks_cli
from tests.kit import kit_sign, require_node_clients

MEMBER = Keypair()
SUBJECT = ApprovalSubject(
    governance=str(Keypair().pubkey()),
    proposal="12",
    program=str(Keypair().pubkey()),
    buffer=str(Keypair().pubkey()),
    sha256="0f" * 32,
    cluster=str(Keypair().pubkey()),  # a genesis hash
)


@pytest.fixture(autouse=True)
def _kit() -> None:
    require_node_clients()


@pytest.mark.parametrize("action", ["approve", "reject", "cancel"])
def test_runbooks_sign_envelope_is_kits_byte_for_byte(
    action: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = SUBJECT.message(action)  # type: ignore[arg-type]
    assert len(line) > 255  # the u16 length's high byte is not zero: its order is checked
    keyfile = tmp_path / "id.json"
    keyfile.write_text(keypair_to_json(MEMBER))
    capsys.readouterr()
    argv = ["sign", "--keypair", str(keyfile), "--message", line, "--print-envelope"]
    assert runbooks_cli(argv) == 0
    out = {
        k: v.strip() for k, v in (row.split(":", 1) for row in capsys.readouterr().out.splitlines())
    }
    kit_bytes, kit_signature = kit_sign(line, MEMBER)
    assert bytes.fromhex(out["bytes"]) == kit_bytes
    assert out["signature"] == str(kit_signature)
    assert out["envelope"] == "standard"


def test_an_application_domain_is_placed_as_kit_places_it() -> None:
    domain = bytes(range(1, 33))
    line = SUBJECT.message()
    kit_bytes, kit_signature = kit_sign(line, MEMBER, application_domain=domain)
    ours = approval.standard_envelope(line, MEMBER.pubkey(), domain)
    assert ours == kit_bytes and ours[17:49] == domain
    form = approval.SignedForm("standard", domain)
    assert approval.sign(MEMBER, line, form=form) == kit_signature


def test_the_legacy_envelope_is_none_of_kits() -> None:
    # Older CLIs' header has no domain or signers: kit (v0 or v1) never produces it, so a
    # legacy signature can only come from a legacy tool.
    line = SUBJECT.message()
    legacy = approval.envelope(line, MEMBER.pubkey(), approval.LEGACY)
    assert legacy not in {kit_sign(line, MEMBER, version=v)[0] for v in (0, 1)}
