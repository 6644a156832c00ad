"""upgrade_manager compute units, against the 200,000 CU a transaction gets by default.

Relayed approve (Ed25519SigVerify + approve: message rebuilt on chain, base58 of three
keys), approve signed by the member, and execute_upgrade, whose cost grows with the
program: it hashes the buffer again (``sol_sha256``, about one CU per two bytes) before
the loader's Upgrade by CPI. propose_upgrade hashes it too. Programs measured: demo_vault
v2 (ours, ~12 KiB) and two synthetic programs carrying 96 KiB and 600 KiB of read-only
data (the sizes of SPL Token and Token-2022; LiteSVM's bundled copies of those fail
today's deploy-time ELF checks, so they cannot be upgraded to). Above roughly 350 KiB a
propose or execute needs a SetComputeUnitLimit instruction (up to 1,400,000).
"""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

from solders.compute_budget import set_compute_unit_limit
from solders.instruction import Instruction

from benches._report import figure, heading, ratio
from programs import loader
from programs.toolchain.build import compile_c
from programs.toolchain.link import link
from programs.upgrade_manager import client
from programs.upgrade_manager.sandbox import Sandbox, Sent, new_sandbox, vault_so

DEFAULT_LIMIT = 200_000
MAX_LIMIT = 1_400_000
SYNTHETIC_KIB = (96, 600)


def _program_cu(sent: Sent) -> int:
    """Compute units upgrade_manager itself consumed (its CPIs included)."""
    assert sent.ok, "\n".join(sent.logs)
    (units,) = sent.consumed_by(client.PROGRAM_ID)
    return units


@cache
def synthetic_program(kib: int) -> bytes:
    """A loadable program carrying ``kib`` KiB of read-only data (nonzero, so none of it
    is stripped before hashing)."""
    size = kib * 1024
    source = (
        "typedef unsigned char u8;\n"
        "typedef unsigned long long u64;\n"
        f"static const u8 blob[{size}] = {{{', '.join(str(i % 251 + 1) for i in range(size))}}};\n"
        "u64 entrypoint(const u8 *input) { return blob[input[0]] == 0; }\n"
    )
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        c = Path(tmp) / "blob.c"
        c.write_text(source)
        return link([compile_c(c, Path(tmp) / "blob.o")])


def _send_with_limit(box: Sandbox, ix: Instruction) -> Sent:
    return box.send([set_compute_unit_limit(MAX_LIMIT), ix])


def _upgrade_costs(so: bytes) -> tuple[int, int]:
    """(propose_upgrade, execute_upgrade) compute units for a buffer holding ``so``."""
    box = new_sandbox(max_len=len(so) + 1024)
    buffer = box.write_buffer(so)
    index = box.gov().proposal_count + 1
    digest = loader.buffer_hash(box.data(buffer))
    propose = client.propose_upgrade(
        box.governance, index, box.program, buffer, digest, box.payer.pubkey()
    )
    propose_cu = _program_cu(_send_with_limit(box, propose))
    box.approve_all(index)
    box.pass_timelock(index)
    p = box.proposal(index)
    execute = client.execute_upgrade(
        box.governance, box.proposal_account(index), box.program, p.buffer, box.payer.pubkey()
    )
    execute_cu = _program_cu(_send_with_limit(box, execute))
    return propose_cu, execute_cu


def measure_compute_units() -> dict[str, int]:
    """Compute units of each step, keyed by a short description."""
    box = new_sandbox()
    v2 = vault_so(2)
    index = box.propose_upgrade(box.write_buffer(v2))
    out: dict[str, int] = {}
    first = box.ok(box.relay_instructions(index, box.members[0]))
    out["approve (relayed)"] = _program_cu(first)
    out["approve (relayed), transaction total"] = first.compute_units
    member = box.members[1]
    signed = client.vote_signed(box.governance, box.proposal_account(index), member.pubkey())
    out["approve_signed"] = _program_cu(box.ok([signed], member))
    box.ok(box.relay_instructions(index, box.members[2]))  # the threshold: 3 of 5
    box.pass_timelock(index)
    out["execute_upgrade, demo_vault v2"] = _program_cu(box.execute_upgrade(index))
    out["propose_upgrade, demo_vault v2"], _ = _upgrade_costs(v2)
    for kib in SYNTHETIC_KIB:
        propose_cu, execute_cu = _upgrade_costs(synthetic_program(kib))
        out[f"propose_upgrade, {kib} KiB program"] = propose_cu
        out[f"execute_upgrade, {kib} KiB program"] = execute_cu
    return out


def main() -> None:
    heading("upgrade_manager compute units (default limit 200,000 per transaction)")
    sizes = {"demo_vault v2": len(vault_so(2))}
    sizes.update({f"{kib} KiB program": len(synthetic_program(kib)) for kib in SYNTHETIC_KIB})
    for name, size in sizes.items():
        figure(f"program size: {name}", size / 1024, "KiB")
    for name, units in measure_compute_units().items():
        figure(name, units, "CU")
        ratio(f"  {name} / 200,000", units, DEFAULT_LIMIT)


if __name__ == "__main__":
    main()
