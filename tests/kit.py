"""@solana/kit as a second, independent implementation of Solana off-chain messages: what
a wallet or script built on kit signs for an approval line.

``kit_sign(message, keypair, **options)`` asks tests/node/kit_offchain.mjs, run by the
machine's ``node`` (one ``NodeScript`` for the session), and returns kit's envelope bytes
and the signature. The clients are installed by ``bash scripts/install-node-clients``
(into .build/node, from the lock in tests/node/); without them ``require_node_clients()``
skips the test with that command, or fails it when ``RUNBOOKS_REQUIRE_NODE_CLIENTS=1``
(CI installs them).
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


class NodeScript:
    """One ``node`` running ``script`` for the whole test session, asked one JSON line at a
    time: node's start and the clients' load cost a second or more, once per session
    instead of once per call. The script answers each request line with one line, a
    result or ``{"error": ...}``; it exits when its stdin closes (at the latest, when this
    process exits)."""

    def __init__(self, script: Path) -> None:
        self.script = script
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str] = queue.Queue()
        # Open for the session: what node said on stderr, for the error when it dies.
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        atexit.register(self.close)

    def _start(self) -> subprocess.Popen[str]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._lines = queue.Queue()
        proc = subprocess.Popen(
            ["node", str(self.script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env={**os.environ, "RUNBOOKS_NODE_DIR": str(NODE_DIR)},
        )
        lines = self._lines

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put("")  # end of output: node exited

        threading.Thread(target=read, daemon=True).start()
        self._proc = proc
        return proc

    def ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """The script's answer to ``request``; RuntimeError with its reason when it refused,
        died or did not answer within ``timeout`` seconds."""
        with self._lock:
            proc = self._start()
            assert proc.stdin is not None
            try:
                proc.stdin.write(json.dumps(request) + "\n")
                proc.stdin.flush()
                line = self._lines.get(timeout=timeout)
            except (BrokenPipeError, queue.Empty):
                line = ""
            if not line:
                self.close()
                self._stderr.seek(0)
                raise RuntimeError(f"node {self.script.name} gave no answer: {self._stderr.read()}")
            answer: dict[str, Any] = json.loads(line)
            if "error" in answer:
                raise RuntimeError(str(answer["error"]).strip())
            return answer

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


KIT = NodeScript(SCRIPT)


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
    try:
        out = KIT.ask(request, timeout=60)
    except RuntimeError as refused:
        raise RuntimeError(f"kit refused to sign: {refused}") from None
    assert out["signer"] == str(keypair.pubkey())
    return bytes.fromhex(out["envelope"]), Signature.from_string(out["signature"])
