"""The official Squads v4 SDK, ``@sqds/multisig``, as the second implementation the Squads
wire format is proven against.

``sdk(ops)`` asks tests/node/squads_wire.mjs, run by the machine's ``node`` once for the
session (``tests.kit.NodeScript``; the clients installed by ``bash
scripts/install-node-clients``; see tests/kit.py for the skip rule) and returns one result
per op. ``described(ix)`` puts a solders instruction in the same shape
as the script's instruction results, so the two compare with ``==``.
"""

from __future__ import annotations

from typing import Any

from solders.instruction import Instruction

from tests.kit import REPO, NodeScript, require_node_clients

SCRIPT = REPO / "tests" / "node" / "squads_wire.mjs"
SQUADS = NodeScript(SCRIPT)


def sdk(ops: list[dict[str, Any]]) -> list[Any]:
    """The SDK's answer to each op (see the script's header for their shapes)."""
    require_node_clients()
    try:
        answer = SQUADS.ask({"ops": ops}, timeout=120)
    except RuntimeError as refused:
        raise RuntimeError(f"@sqds/multisig refused: {refused}") from None
    results: list[Any] = answer["results"]
    assert len(results) == len(ops)
    return results


def described(ix: Instruction) -> dict[str, Any]:
    return {
        "program_id": str(ix.program_id),
        "data": bytes(ix.data).hex(),
        "keys": [[str(m.pubkey), m.is_signer, m.is_writable] for m in ix.accounts],
    }
