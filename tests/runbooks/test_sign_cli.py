"""`runbooks sign`: the standard off-chain envelope by default, the legacy one with
--legacy, the exact bytes on request, and bad input refused with a clear message and
exit code (never the key file's bytes)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from solders.keypair import Keypair
from solders.signature import Signature

from core.approval import ApprovalSubject
from core.keys import keypair_to_json
from domain import signoff
from domain.policy import Policy
from runbooks.cli import main as runbooks_cli

MEMBER = Keypair()
SUBJECT = ApprovalSubject(
    governance=str(Keypair().pubkey()),
    proposal="3",
    program=str(Keypair().pubkey()),
    buffer=str(Keypair().pubkey()),
    sha256="5e" * 32,
    cluster=str(Keypair().pubkey()),  # a genesis hash
)
POLICY = Policy(name="ops", members=(str(MEMBER.pubkey()),), threshold=1, timelock_seconds=0)


def spec_standard_envelope(message: str, signer: bytes) -> bytes:
    """Off-chain message v0 as the Agave 3.x CLI signs it, written out from the format
    (zero application domain, restricted ASCII, one signer) rather than through the code
    under test."""
    body = message.encode()
    return (
        b"\xffsolana offchain\x00"
        + bytes(32)
        + b"\x00\x01"
        + signer
        + len(body).to_bytes(2, "little")
        + body
    )


def spec_legacy_envelope(message: str) -> bytes:
    body = message.encode()
    return b"\xffsolana offchain\x00\x00" + len(body).to_bytes(2, "little") + body


@pytest.fixture
def keyfile(tmp_path: Path) -> Path:
    path = tmp_path / "id.json"
    path.write_text(keypair_to_json(MEMBER))
    return path


def sign(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, str], str]:
    capsys.readouterr()
    rc = runbooks_cli(["sign", *argv])
    out, err = capsys.readouterr()
    printed = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return rc, {k: v.strip() for k, v in printed.items()}, err


def test_sign_makes_the_standard_envelope_by_default(
    keyfile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = SUBJECT.message()
    rc, out, err = sign(capsys, "--keypair", str(keyfile), "--message", line, "--print-envelope")
    assert rc == 0, err
    assert out["envelope"] == "standard" and out["pubkey"] == str(MEMBER.pubkey())
    assert bytes.fromhex(out["bytes"]) == spec_standard_envelope(line, bytes(MEMBER.pubkey()))
    signature = Signature.from_string(out["signature"])
    assert signature.verify(MEMBER.pubkey(), bytes.fromhex(out["bytes"]))
    verdict = signoff.review(SUBJECT, POLICY, out["pubkey"], out["signature"], "approve", ())
    assert verdict.accepted and verdict.envelope == "standard", verdict.reason


def test_sign_legacy_makes_the_old_cli_envelope(
    keyfile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = SUBJECT.message("reject")
    rc, out, err = sign(
        capsys,
        *("--keypair", str(keyfile), "--message", line, "--legacy", "--print-envelope"),
    )
    assert rc == 0, err
    assert out["envelope"] == "legacy"
    assert bytes.fromhex(out["bytes"]) == spec_legacy_envelope(line)
    verdict = signoff.review(SUBJECT, POLICY, out["pubkey"], out["signature"], "reject", ())
    assert verdict.accepted and verdict.envelope == "legacy", verdict.reason


def test_the_envelope_bytes_are_printed_only_when_asked(
    keyfile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, _ = sign(capsys, "--keypair", str(keyfile), "--message", SUBJECT.message())
    assert rc == 0 and "bytes" not in out and out["envelope"] == "standard"


def test_a_missing_keypair_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope" / "id.json"
    rc, out, err = sign(capsys, "--keypair", str(missing), "--message", SUBJECT.message())
    assert rc == 2 and "signature" not in out
    assert f"runbooks sign: keypair file {missing}: cannot be read" in err
    assert "No such file or directory" in err


SECRET = bytes(MEMBER)


@pytest.mark.parametrize(
    "content",
    [
        json.dumps(list(SECRET[:63])).encode(),  # one byte short
        json.dumps(list(SECRET[:32]) + list(bytes(Keypair().pubkey()))).encode(),  # halves differ
        SECRET,  # the raw bytes, not the CLI's JSON
        base64.b64encode(SECRET),
        SECRET.hex().encode(),
        b"\xff\xfe" + SECRET,  # not text at all
    ],
    ids=["63-bytes", "mismatched-halves", "raw-bytes", "base64", "hex", "binary"],
)
def test_a_file_that_is_not_a_keypair_is_refused_without_its_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    path = tmp_path / "id.json"
    path.write_bytes(content)
    rc, out, err = sign(capsys, "--keypair", str(path), "--message", SUBJECT.message())
    assert rc == 2 and "signature" not in out
    assert "not a Solana keypair (expected a JSON array of 64 integers" in err
    # Nothing of the file shows: no number of it, no text of it, no encoding of the key.
    printed = err + "".join(out.values())
    for secretish in (SECRET.hex(), base64.b64encode(SECRET).decode(), str(list(SECRET[:4]))):
        assert secretish[:12] not in printed
    assert str(SECRET[0]) + "," not in printed and str(SECRET[0]) + ", " not in printed


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("hello world", "not an approval line"),
        (SUBJECT.message()[:-20], "looks cut off"),
        (SUBJECT.message().replace("action: approve", "action: withdraw"), "action: 'withdraw'"),
    ],
    ids=["other-text", "cut-off", "unknown-action"],
)
def test_a_line_that_is_not_an_approval_line_is_not_signed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, complaint: str
) -> None:
    # The line is checked before the key file is read: a missing one is never reached.
    rc, out, err = sign(capsys, "--keypair", str(tmp_path / "absent.json"), "--message", line)
    assert rc == 2 and "signature" not in out and out == {}
    assert err.startswith("runbooks sign: ") and complaint in err
    assert "cannot be read" not in err


def test_sign_without_a_keypair_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        runbooks_cli(["sign", "--message", SUBJECT.message()])
    assert exit_.value.code == 2
    assert "--keypair" in capsys.readouterr().err
