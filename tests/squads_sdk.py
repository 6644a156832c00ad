"""The official Squads v4 SDK, ``@sqds/multisig``, as the second implementation the Squads
wire format is proven against.

``sdk(ops)`` runs tests/node/squads_wire.mjs with the machine's ``node`` (the clients
installed by ``bash scripts/install-node-clients``; see tests/kit.py for the skip rule) and
returns one result per op. ``described(ix)`` puts a solders instruction in the same shape
as the script's instruction results, so the two compare with ``==``.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from solders.instruction import Instruction

from tests.kit import NODE_DIR, REPO, require_node_clients

SCRIPT = REPO / "tests" / "node" / "squads_wire.mjs"


def sdk(ops: list[dict[str, Any]]) -> list[Any]:
    """The SDK's answer to each op (see the script's header for their shapes)."""
    require_node_clients()
    done = subprocess.run(
        ["node", str(SCRIPT)],
        input=json.dumps({"ops": ops}),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RUNBOOKS_NODE_DIR": str(NODE_DIR)},
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"@sqds/multisig refused: {done.stderr.strip()}")
    results: list[Any] = json.loads(done.stdout)["results"]
    assert len(results) == len(ops)
    return results


def described(ix: Instruction) -> dict[str, Any]:
    return {
        "program_id": str(ix.program_id),
        "data": bytes(ix.data).hex(),
        "keys": [[str(m.pubkey), m.is_signer, m.is_writable] for m in ix.accounts],
    }
