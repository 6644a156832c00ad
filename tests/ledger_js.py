"""LedgerHQ's JavaScript clients as the second implementation the Ledger wire format is
proven against: ``@ledgerhq/hw-app-solana`` (the APDUs) and ``@ledgerhq/devices``' HID
framing, run by tests/node/ledger_apdus.mjs under the machine's ``node`` once for the
session (``tests.kit.NodeScript``; see tests/kit.py for the skip rule)."""

from __future__ import annotations

from typing import Any

from tests.kit import REPO, NodeScript, require_node_clients

SCRIPT = REPO / "tests" / "node" / "ledger_apdus.mjs"
LEDGER_JS = NodeScript(SCRIPT)


def ledger_js(ops: list[dict[str, Any]]) -> list[list[bytes]]:
    """For each op, the APDUs (or HID reports) the JS clients produce, as bytes."""
    require_node_clients()
    answer = LEDGER_JS.ask({"ops": ops}, timeout=60)
    results: list[list[str]] = answer["results"]
    assert len(results) == len(ops)
    return [[bytes.fromhex(item) for item in result] for result in results]
