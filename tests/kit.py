"""@solana/kit as a second, independent implementation of Solana off-chain messages: what
a wallet or script built on kit signs for an approval line.

``kit_sign(message, keypair, **options)`` runs tests/node/kit_offchain.mjs with the
machine's ``node`` and returns kit's envelope bytes and the signature. The clients are
installed by ``bash scripts/install-node-clients`` (into .build/node, from the lock in
tests/node/); without them ``require_node_clients()`` skips the test with that command, or
fails it when ``RUNBOOKS_REQUIRE_NODE_CLIENTS=1`` (CI installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from core.approval import ZERO_DOMAIN

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "node" / "kit_offchain.mjs"
LOCK = REPO / "tests" / "node" / "package-lock.json"
NODE_DIR = REPO / ".build" / "node"
INSTALL = "bash scripts/install-node-clients"


def node_clients_missing() -> str | None:
    """Why kit cannot run here, or None when the pinned clients are installed."""
    if shutil.which("node") is None:
        return f"node is not on PATH; run `{INSTALL}`"
    installed = NODE_DIR / "package-lock.json"
    if not (NODE_DIR / "node_modules" / "@solana" / "kit").is_dir() or not installed.exists():
        return f"the node clients are not installed in {NODE_DIR}; run `{INSTALL}`"
    if installed.read_bytes() != LOCK.read_bytes():
        return f"the node clients in {NODE_DIR} are not the pinned ones; run `{INSTALL}`"
    return None


def require_node_clients() -> None:
    """Skip the calling test when kit is not installed (fail it where it must be)."""
    missing = node_clients_missing()
    if missing is None:
        return
    message = f"@solana/kit tests not run: {missing}"
    if os.environ.get("RUNBOOKS_REQUIRE_NODE_CLIENTS", "").strip() not in ("", "0"):
        pytest.fail(message)
    pytest.skip(message)


def kit_sign(
    message: str,
    keypair: Keypair,
    *,
    version: int = 0,
    application_domain: bytes = ZERO_DOMAIN,
    signatories: Sequence[Pubkey] | None = None,
    format: int = 0,
) -> tuple[bytes, Signature]:
    """The bytes kit compiles for ``message`` and ``keypair``'s signature over them.

    ``version`` 0 (compileOffchainMessageV0Envelope, with ``application_domain`` and
    ``format``) or 1 (compileOffchainMessageV1Envelope); ``signatories``: the required
    signers kit writes into the envelope (default: ``keypair``'s key alone).
    """
    require_node_clients()
    request: dict[str, object] = {
        "secret_key": list(bytes(keypair)),
        "message": message,
        "version": version,
        "application_domain": str(Pubkey(application_domain)),
        "format": format,
    }
    if signatories is not None:
        request["signatories"] = [str(s) for s in signatories]
    # The secret key goes through stdin only: argv and the environment can be logged.
    done = subprocess.run(
        ["node", str(SCRIPT)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "RUNBOOKS_NODE_DIR": str(NODE_DIR)},
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"kit refused to sign: {done.stderr.strip()}")
    out = json.loads(done.stdout)
    assert out["signer"] == str(keypair.pubkey())
    return bytes.fromhex(out["envelope"]), Signature.from_string(out["signature"])
