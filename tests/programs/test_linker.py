"""The sBPF linker: ELF layout, relocations, and programs that really run in LiteSVM."""

from __future__ import annotations

import re
import shutil
import struct
from pathlib import Path

import pytest
from program_testkit import Chain, Result
from solders.clock import Clock
from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM
from solders.sysvar import INSTRUCTIONS

from core.errors import BuildError, LinkError
from programs.toolchain import build, elf
from programs.toolchain.build import compile_c
from programs.toolchain.elf import R_BPF_64_32, R_BPF_64_RELATIVE, elf_relocations, elf_sections
from programs.toolchain.link import OP_CALL, OP_LDDW, link

SDK_HEADER = build.INCLUDE_DIR / "solana_sdk.h"


def deploy(chain: Chain, so: bytes) -> Pubkey:
    program_id = Pubkey.new_unique()
    chain.svm.add_program(program_id, so)
    return program_id


def probe(
    chain: Chain, program_id: Pubkey, data: bytes, accounts: list[AccountMeta] | None = None
) -> Result:
    return chain.send([Instruction(program_id, data, accounts or [])])


def link_source(tmp_path: Path, source: str) -> bytes:
    c = tmp_path / "prog.c"
    c.write_text(source)
    return link([compile_c(c, tmp_path / "prog.o")])


# ------------------------------------------------------------------------ layout


def test_elf_header_and_sections(probe_so: bytes) -> None:
    e_type, e_machine, _version, e_entry = struct.unpack_from("<HHIQ", probe_so, 16)
    e_flags = struct.unpack_from("<I", probe_so, 48)[0]
    assert probe_so[:4] == b"\x7fELF"
    assert (e_type, e_machine, e_flags) == (3, 247, 0)  # ET_DYN, EM_BPF, sBPF v0

    sections = elf_sections(probe_so)
    names = list(sections)
    assert names == [".text", ".rodata", ".dynamic", ".dynsym", ".dynstr", ".rel.dyn", ".shstrtab"]
    offsets = [s.offset for s in sections.values()]
    assert offsets == sorted(offsets)
    for s in sections.values():
        if s.flags & elf.SHF_ALLOC:
            assert s.addr == s.offset, f"{s.name}: address must equal file offset"
        assert s.offset + s.size <= len(probe_so)
    text = sections[".text"]
    assert text.offset <= e_entry < text.offset + text.size
    assert (e_entry - text.offset) % 8 == 0
    # Only .dynamic is writable (the loader rejects writable .data/.bss).
    assert [s.name for s in sections.values() if s.flags & elf.SHF_WRITE] == [".dynamic"]


def test_syscalls_become_dynsym_relocations(probe_so: bytes) -> None:
    text = elf_sections(probe_so)[".text"]
    calls = {name for _, kind, name in elf_relocations(probe_so) if kind == R_BPF_64_32}
    assert {"sol_log_", "sol_log_64_", "sol_log_pubkey", "sol_get_clock_sysvar"} <= calls
    assert "probe_sum" not in calls  # defined in the other object: a pc-relative call
    for off, kind, _ in elf_relocations(probe_so):
        if kind == R_BPF_64_32:
            assert text.offset <= off < text.offset + text.size
            assert probe_so[off] == OP_CALL
            # imm -1: the loader treats any other call immediate as pc-relative
            assert struct.unpack_from("<i", probe_so, off + 4)[0] == -1


def test_pointer_slots_hold_the_address_in_the_upper_half(probe_so: bytes) -> None:
    """R_BPF_64_ABS64 in .rodata: the v0 loader reads the target from the upper u32."""
    sections = elf_sections(probe_so)
    rodata = sections[".rodata"]
    data_slots = [
        off
        for off, kind, _ in elf_relocations(probe_so)
        if kind == R_BPF_64_RELATIVE and rodata.offset <= off < rodata.offset + rodata.size
    ]
    assert len(data_slots) >= 5  # three names, two seeds
    targets = []
    for off in data_slots:
        low, high = struct.unpack_from("<II", probe_so, off)
        assert low == 0
        assert rodata.offset <= high < rodata.offset + rodata.size
        targets.append(probe_so[high : probe_so.index(b"\0", high)])
    assert {b"first", b"second", b"third"} <= set(targets)


def test_lddw_relocations_point_into_the_image(probe_so: bytes) -> None:
    text = elf_sections(probe_so)[".text"]
    lddws = [
        off
        for off, kind, _ in elf_relocations(probe_so)
        if kind == R_BPF_64_RELATIVE and text.offset <= off < text.offset + text.size
    ]
    assert lddws
    for off in lddws:
        assert probe_so[off] == OP_LDDW
        low = struct.unpack_from("<I", probe_so, off + 4)[0]
        high = struct.unpack_from("<I", probe_so, off + 12)[0]
        assert high == 0 and 0 < low < len(probe_so)


# --------------------------------------------------------------------- execution


def test_hello_reads_rodata(chain: Chain, probe_so: bytes) -> None:
    program_id = deploy(chain, probe_so)
    result = probe(chain, program_id, b"\x00")
    assert result.ok, result.logs
    assert result.program_logs() == ["hello from probe"]


@pytest.mark.parametrize(("index", "name"), [(0, "first"), (1, "second"), (2, "third")])
def test_pointer_table_resolves_at_runtime(
    chain: Chain, probe_so: bytes, index: int, name: str
) -> None:
    program_id = deploy(chain, probe_so)
    result = probe(chain, program_id, bytes([1, index]))
    assert result.ok, result.logs
    assert result.program_logs() == [name]


def test_static_seeds_table_gives_the_right_pda(chain: Chain, probe_so: bytes) -> None:
    """A wrongly linked seeds table still derives *a* PDA, silently the wrong one."""
    program_id = deploy(chain, probe_so)
    result = probe(chain, program_id, b"\x02")
    assert result.ok, result.logs
    expected, bump = Pubkey.find_program_address([b"vault", b"probe"], program_id)
    assert result.program_logs() == [str(expected), f"{bump:#x}, 0x0, 0x0, 0x0, 0x0"]


def test_plain_addresses_in_pointer_slots_silently_derive_another_pda(
    chain: Chain, probe_so: bytes
) -> None:
    """The control for the test above: the mistake the upper-half encoding avoids."""
    broken = bytearray(probe_so)
    rodata = elf_sections(probe_so)[".rodata"]
    for off, kind, _ in elf_relocations(probe_so):
        if kind == R_BPF_64_RELATIVE and rodata.offset <= off < rodata.offset + rodata.size:
            target = struct.unpack_from("<Q", broken, off)[0] >> 32
            struct.pack_into("<Q", broken, off, target)  # the plain address
    program_id = deploy(chain, bytes(broken))
    result = probe(chain, program_id, b"\x02")
    assert result.ok, result.logs  # no error at all...
    expected, _ = Pubkey.find_program_address([b"vault", b"probe"], program_id)
    assert str(expected) not in result.program_logs()  # ...just the wrong address
    # Every seed now points at the start of the image, which the loader maps as zeros
    # (it copies only .text and .rodata into the read-only region).
    wrong, _ = Pubkey.find_program_address([bytes(5), bytes(5)], program_id)
    assert result.program_logs()[0] == str(wrong)


def test_internal_and_cross_object_calls(chain: Chain, probe_so: bytes) -> None:
    program_id = deploy(chain, probe_so)
    result = probe(chain, program_id, bytes([3, 10]))
    assert result.ok, result.logs
    # fib(10) = 55 through a recursive static function; probe_sum from probe_util.c
    assert result.program_logs() == ["0x37, 0x2a, 0x0, 0x0, 0x2"]


def test_cpi_signed_by_a_pda(chain: Chain, probe_so: bytes) -> None:
    """sol_invoke_signed_c with seeds from the static table: what PDA authorities need."""
    program_id = deploy(chain, probe_so)
    pda, bump = Pubkey.find_program_address([b"vault", b"probe"], program_id)
    chain.svm.airdrop(pda, 1_000_000_000)
    recipient = Pubkey.new_unique()
    accounts = [
        AccountMeta(pda, False, True),
        AccountMeta(recipient, False, True),
        AccountMeta(SYSTEM_PROGRAM, False, False),
    ]
    lamports = chain.svm.minimum_balance_for_rent_exemption(0)
    result = probe(chain, program_id, bytes([7, bump]) + lamports.to_bytes(8, "little"), accounts)
    assert result.ok, result.logs
    assert chain.svm.get_balance(recipient) == lamports
    # A wrong bump signs for another address (or none): the transfer is refused.
    wrong = bytes([7, (bump - 1) % 256]) + lamports.to_bytes(8, "little")
    assert not probe(chain, program_id, wrong, accounts).ok
    assert chain.svm.get_balance(recipient) == lamports


def test_instructions_sysvar_helpers(chain: Chain, probe_so: bytes) -> None:
    program_id = deploy(chain, probe_so)
    result = probe(chain, program_id, b"\x04", [AccountMeta(INSTRUCTIONS, False, False)])
    assert result.ok, result.logs
    # 1 instruction, current index 0, it has 1 account and 1 data byte; flags 0
    assert result.program_logs() == [
        "0x1, 0x0, 0x1, 0x1, 0x0",
        str(program_id),
        str(INSTRUCTIONS),
    ]


def test_instructions_sysvar_check_refuses_other_accounts(chain: Chain, probe_so: bytes) -> None:
    program_id = deploy(chain, probe_so)
    result = probe(chain, program_id, b"\x04", [AccountMeta(Pubkey.new_unique(), False, False)])
    assert not result.ok


def test_clock_and_rent_sysvars(chain: Chain, probe_so: bytes) -> None:
    program_id = deploy(chain, probe_so)
    chain.svm.set_clock(Clock(1234, 0, 0, 0, 1_700_000_000))
    result = probe(chain, program_id, b"\x05")
    assert result.ok, result.logs
    minimum = chain.svm.minimum_balance_for_rent_exemption(100)
    assert result.program_logs() == [f"{1234:#x}, {1_700_000_000:#x}, {minimum:#x}, 0x0, 0x0"]


def test_custom_error_code(chain: Chain, probe_so: bytes) -> None:
    program_id = deploy(chain, probe_so)
    result = probe(chain, program_id, bytes([6, 7, 0, 0, 0]))
    assert not result.ok
    assert result.custom_code == 7


def test_minimal_program_without_rodata_or_syscalls(chain: Chain, tmp_path: Path) -> None:
    so = link_source(
        tmp_path, "unsigned long long entrypoint(const unsigned char *in) { return 0; }\n"
    )
    assert ".rodata" not in elf_sections(so) and elf_relocations(so) == []
    program_id = deploy(chain, so)
    assert probe(chain, program_id, b"").ok


# ----------------------------------------------------------------- link failures


def test_writable_global_is_refused(tmp_path: Path) -> None:
    source = """
    #include <solana_sdk.h>
    static uint64_t counter;
    uint64_t entrypoint(const uint8_t *input) { counter += input[0]; return counter; }
    """
    with pytest.raises(LinkError, match="writable"):
        link_source(tmp_path, source)


def test_libc_call_is_refused_with_a_hint(tmp_path: Path) -> None:
    source = """
    #include <solana_sdk.h>
    void *memcpy(void *, const void *, size_t);
    uint64_t entrypoint(const uint8_t *input) {
      uint8_t buf[8];
      memcpy(buf, input, 8);
      return buf[0];
    }
    """
    with pytest.raises(LinkError, match="sol_memcpy_"):
        link_source(tmp_path, source)


def test_entrypoint_is_required(tmp_path: Path) -> None:
    with pytest.raises(LinkError, match="entrypoint"):
        link_source(tmp_path, "unsigned long long main(void) { return 0; }\n")


def test_compile_errors_are_reported(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="clang failed"):
        link_source(tmp_path, "this is not C\n")


def test_missing_clang_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLANG", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BuildError, match=r"apt-get install -y clang"):
        build.clang_path()


def test_clang_from_the_environment_wins_over_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLANG", "/opt/llvm-18/bin/clang")
    assert build.clang_path() == "/opt/llvm-18/bin/clang"
    monkeypatch.setenv("CLANG", "")  # empty counts as unset: clang on PATH
    assert build.clang_path() == shutil.which("clang")


# ----------------------------------------------------------------------- building


def test_build_program_is_cached_by_source_hash() -> None:
    first = build.build_program("demo_vault/v1")
    mtime = first.stat().st_mtime_ns
    again = build.build_program("demo_vault/v1")
    assert again == first and again.stat().st_mtime_ns == mtime
    assert first.name == f"v1-{build.source_hash('demo_vault/v1')[:16]}.so"
    assert first.parent == build.BUILD_DIR / "demo_vault"
    assert build.source_hash("demo_vault/v1") != build.source_hash("demo_vault/v2")


def test_a_build_finishing_second_keeps_the_first_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two processes (xdist workers) building the same missing program: the one that links
    # second must leave the first one's file in place, not swap it under a reader.
    monkeypatch.setattr(build, "BUILD_DIR", tmp_path)
    out = build.output_path("demo_vault/v1")
    real_link = build.link
    first: dict[str, int] = {}

    def link_while_another_finishes(objects: list[Path]) -> bytes:
        elf = real_link(objects)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(elf)  # the other process's rename lands first
        first["inode"] = out.stat().st_ino
        return elf

    monkeypatch.setattr(build, "link", link_while_another_finishes)

    built = build.build_program("demo_vault/v1")
    assert built == out and out.stat().st_ino == first["inode"], "the first file was replaced"
    assert not list(out.parent.glob("*.tmp")), "the partial file is left behind"
    monkeypatch.setattr(build, "link", real_link)
    assert build.build_program("demo_vault/v1", force=True) == out
    assert out.stat().st_ino != first["inode"], "force must replace the cached file"
    assert not list(out.parent.glob("*.tmp"))


def test_program_names_and_unknown_names() -> None:
    assert {"demo_vault/v1", "demo_vault/v2"} <= set(build.program_names())
    with pytest.raises(BuildError, match="unknown program"):
        build.build_program("no_such_program")
    with pytest.raises(BuildError, match="unknown program"):
        build.build_program("../tests")


def test_cli_prints_the_built_paths(capsys: pytest.CaptureFixture[str]) -> None:
    assert build.main(["demo_vault/v1", "demo_vault/v2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["demo_vault/v1", "demo_vault/v2"]
    assert all(line.split("\t")[1].startswith(".build/programs/") for line in lines)
    assert build.main(["no_such_program"]) == 1


def test_sdk_header_addresses_match_their_names() -> None:
    """Each `#define X_ID {{...}}` in solana_sdk.h is preceded by its base58 name."""
    text = SDK_HEADER.read_text()
    pattern = re.compile(r"/\* (\w{32,44}) \*/\s*#define (\w+_ID)\s*\\\s*\{\{([^}]*)\}\}")
    found = pattern.findall(text)
    assert len(found) >= 5
    for name, macro, body in found:
        values = bytes(int(v, 16) for v in re.findall(r"0x[0-9a-f]{2}", body))
        assert values == bytes(Pubkey.from_string(name)), macro
