"""Our sBPF linker: BPF relocatable objects from clang into one sBPF v0 program.

Why a linker of our own: ``ld.lld`` cannot produce what the Solana loader wants from
clang's ``bpfel`` objects (its default layout lands out of bounds, it does not know
relocation 10, lld-19 rejects e_machine 247), and the Solana toolchain is not
installable here. ``link`` places every ``.text`` and read-only section, resolves the
symbols, applies the relocations below and hands the result to ``elf.write_program``.

Relocations (the loader rewrites these when it loads the program):

- ``lddw`` of a data address (clang's R_BPF_64_64): we write the file address into the two
  immediates and emit ``R_BPF_64_RELATIVE``; the loader adds ``2**32``.
- a call to a function inside the program: resolved here into a pc-relative ``call``
  (imm = target_pc - pc - 1). The loader registers every ``call`` whose imm is not -1
  as such a call.
- a call to an undefined symbol (a syscall: ``sol_log_``, ``sol_invoke_signed_c``, ...):
  the imm stays -1 and we emit ``R_BPF_64_32`` against a ``.dynsym`` entry; the loader
  replaces the imm with the murmur3 hash of the name.
- a pointer stored in read-only data (R_BPF_64_ABS64, e.g. a static seeds array): the v0
  loader reads the target from the *upper* u32 of the 8-byte slot and writes back
  ``2**32 + target``. We therefore store ``target << 32`` and emit ``R_BPF_64_RELATIVE``.
  Storing the plain address loads without complaint and silently points at the start of
  the image, which the loader maps as zeros (a wrong PDA, no error); see
  ``tests/programs/test_linker.py``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import LinkError
from programs.toolchain.elf import (
    EHDR_SIZE,
    MAX_SYMBOL_NAME,
    PHDR_SIZE,
    R_BPF_64_32,
    R_BPF_64_64,
    R_BPF_64_ABS32,
    R_BPF_64_ABS64,
    REL_SIZE,
    SHF_ALLOC,
    SHF_EXECINSTR,
    SHF_WRITE,
    SHN_ABS,
    SHN_COMMON,
    SHN_UNDEF,
    SHT_PROGBITS,
    SHT_REL,
    STB_LOCAL,
    ObjectFile,
    Section,
    Symbol,
    align_up,
    read_object,
    write_program,
)

ENTRYPOINT = "entrypoint"
OP_LDDW = 0x18
OP_CALL = 0x85
INSN = 8
VM_ADDRESS_LIMIT = 1 << 32  # every address the loader relocates must fit in 32 bits


def _is_text(sec: Section) -> bool:
    return bool(sec.flags & SHF_ALLOC) and bool(sec.flags & SHF_EXECINSTR)


def _is_rodata(sec: Section) -> bool:
    return (
        bool(sec.flags & SHF_ALLOC)
        and not sec.flags & (SHF_WRITE | SHF_EXECINSTR)
        and sec.type == SHT_PROGBITS
    ) or sec.name.startswith(".data.rel.ro")


@dataclass
class _Layout:
    """Where each kept input section lands: (object index, section index) -> output offset."""

    text: bytearray = field(default_factory=bytearray)
    rodata: bytearray = field(default_factory=bytearray)
    rodata_align: int = 8
    text_at: dict[tuple[int, int], int] = field(default_factory=dict)
    rodata_at: dict[tuple[int, int], int] = field(default_factory=dict)


def _place_sections(objects: list[ObjectFile]) -> _Layout:
    layout = _Layout()
    for oi, obj in enumerate(objects):
        for sec in obj.sections:
            if not sec.flags & SHF_ALLOC or sec.size == 0:
                continue
            if _is_text(sec):
                pad = align_up(len(layout.text), max(sec.align, INSN)) - len(layout.text)
                layout.text += b"\0" * pad
                layout.text_at[(oi, sec.index)] = len(layout.text)
                layout.text += sec.data
            elif _is_rodata(sec):
                layout.rodata_align = max(layout.rodata_align, sec.align)
                pad = align_up(len(layout.rodata), sec.align) - len(layout.rodata)
                layout.rodata += b"\0" * pad
                layout.rodata_at[(oi, sec.index)] = len(layout.rodata)
                layout.rodata += sec.data
            elif sec.flags & SHF_WRITE:
                raise LinkError(
                    f"{obj.path}: writable section {sec.name} ({sec.size} bytes): sBPF programs "
                    "have no writable globals; make the data `const`, or keep state in account "
                    "data or the heap (0x300000000)"
                )
            else:
                raise LinkError(f"{obj.path}: unsupported allocated section {sec.name}")
    if not layout.text:
        raise LinkError("no code: the objects have no .text")
    return layout


_SYSCALL_HINTS = {
    "memcpy": "sol_memcpy_ (or the sol_memcpy loop in solana_sdk.h)",
    "memmove": "sol_memmove_",
    "memset": "sol_memset_ (or the sol_memset loop in solana_sdk.h)",
    "memcmp": "sol_memcmp_ (or the sol_memcmp loop in solana_sdk.h)",
}


def _check_syscall_name(name: str, where: str) -> None:
    if name in _SYSCALL_HINTS:
        raise LinkError(
            f"{where}: clang emitted a call to `{name}`, which does not exist on chain; "
            f"copy smaller structs or use {_SYSCALL_HINTS[name]}"
        )
    if not (name.startswith("sol_") or name == "abort"):
        raise LinkError(
            f"{where}: undefined symbol `{name}` is not a Solana syscall; define it in the "
            "program's C sources"
        )
    if len(name) > MAX_SYMBOL_NAME:
        raise LinkError(f"{where}: syscall name `{name}` is longer than {MAX_SYMBOL_NAME} bytes")


def link(objects: Iterable[Path | bytes]) -> bytes:
    """Link BPF relocatable objects into an sBPF v0 ``ET_DYN`` program (the ``.so`` bytes)."""
    objs: list[ObjectFile] = []
    for i, item in enumerate(objects):
        if isinstance(item, bytes | bytearray):
            objs.append(read_object(bytes(item), f"<object {i}>"))
        else:
            objs.append(read_object(Path(item).read_bytes(), str(item)))
    if not objs:
        raise LinkError("nothing to link")
    layout = _place_sections(objs)

    # The output layout is fixed before relocating because addresses are file offsets.
    # Header and program headers first, then .text and .rodata (loaded), then the
    # dynamic-linking sections; their sizes depend on the syscalls found below, which do
    # not move .text/.rodata.
    has_rodata = bool(layout.rodata)
    phnum = 5 if has_rodata else 4
    text_off = align_up(EHDR_SIZE + phnum * PHDR_SIZE, INSN)
    rodata_off = align_up(text_off + len(layout.text), max(layout.rodata_align, 8))
    loaded_end = rodata_off + len(layout.rodata) if has_rodata else text_off + len(layout.text)

    def output_address(oi: int, sym: Symbol, where: str) -> int | None:
        """File address of a defined symbol, None if undefined."""
        if sym.shndx == SHN_UNDEF:
            return None
        if sym.shndx in (SHN_ABS, SHN_COMMON) or sym.shndx >= 0xFF00:
            raise LinkError(f"{where}: symbol `{sym.name}` has unsupported section {sym.shndx:#x}")
        key = (oi, sym.shndx)
        if key in layout.text_at:
            return text_off + layout.text_at[key] + sym.value
        if key in layout.rodata_at:
            return rodata_off + layout.rodata_at[key] + sym.value
        section = objs[oi].sections[sym.shndx]
        raise LinkError(f"{where}: symbol `{sym.name}` lives in unsupported section {section.name}")

    # Global definitions across all objects.
    globals_: dict[str, int] = {}
    for oi, obj in enumerate(objs):
        for sym in obj.symbols:
            if sym.bind == STB_LOCAL or sym.shndx == SHN_UNDEF or not sym.name:
                continue
            addr = output_address(oi, sym, obj.path)
            if addr is None:
                continue
            if sym.name in globals_:
                raise LinkError(f"{obj.path}: duplicate definition of `{sym.name}`")
            globals_[sym.name] = addr

    def resolve(oi: int, sym: Symbol, where: str) -> int | None:
        addr = output_address(oi, sym, where)
        if addr is None and sym.bind != STB_LOCAL:
            addr = globals_.get(sym.name)
        return addr

    text = layout.text
    rodata = layout.rodata
    relative: list[int] = []  # file offsets the loader relocates (R_BPF_64_RELATIVE)
    syscall_relocs: list[tuple[int, str]] = []  # (file offset of call, syscall name)

    for oi, obj in enumerate(objs):
        for rel in obj.sections:
            if rel.type != SHT_REL:
                continue
            target = (oi, rel.info)
            in_text = target in layout.text_at
            if not in_text and target not in layout.rodata_at:
                continue  # relocations of debug/BTF/address-significance sections
            base = layout.text_at[target] if in_text else layout.rodata_at[target]
            symtab = obj.symbols
            for j in range(rel.size // REL_SIZE):
                r_offset, r_info = struct.unpack_from("<QQ", rel.data, j * REL_SIZE)
                r_type, r_sym = r_info & 0xFFFFFFFF, r_info >> 32
                sym = symtab[r_sym]
                where = f"{obj.path}: {objs[oi].sections[rel.info].name}+{r_offset:#x}"
                at = base + r_offset
                if in_text:
                    _relocate_text(
                        text,
                        at,
                        text_off,
                        r_type,
                        sym,
                        resolve(oi, sym, where),
                        where,
                        relative,
                        syscall_relocs,
                    )
                else:
                    _relocate_data(
                        rodata,
                        at,
                        rodata_off,
                        r_type,
                        sym,
                        resolve(oi, sym, where),
                        where,
                        relative,
                    )

    entry = globals_.get(ENTRYPOINT)
    if entry is None or not text_off <= entry < text_off + len(text):
        raise LinkError(f"no `{ENTRYPOINT}` function: the program must define `{ENTRYPOINT}`")

    return write_program(
        text=bytes(text),
        rodata=bytes(rodata),
        text_off=text_off,
        rodata_off=rodata_off,
        loaded_end=loaded_end,
        phnum=phnum,
        entry=entry,
        relative=relative,
        syscall_relocs=syscall_relocs,
    )


def _relocate_text(
    text: bytearray,
    at: int,
    text_off: int,
    r_type: int,
    sym: Symbol,
    addr: int | None,
    where: str,
    relative: list[int],
    syscall_relocs: list[tuple[int, str]],
) -> None:
    opcode = text[at]
    if r_type == R_BPF_64_64:
        if opcode != OP_LDDW:
            raise LinkError(f"{where}: R_BPF_64_64 on opcode {opcode:#x}, expected lddw")
        if addr is None:
            raise LinkError(f"{where}: undefined data symbol `{sym.name}`")
        addend = struct.unpack_from("<I", text, at + 4)[0]
        value = addr + addend
        if value >= VM_ADDRESS_LIMIT:
            raise LinkError(f"{where}: address {value:#x} does not fit the loader's 32 bits")
        struct.pack_into("<I", text, at + 4, value)
        struct.pack_into("<I", text, at + INSN + 4, 0)
        relative.append(text_off + at)
    elif r_type == R_BPF_64_32:
        if opcode != OP_CALL:
            raise LinkError(f"{where}: R_BPF_64_32 on opcode {opcode:#x}, expected call")
        imm = struct.unpack_from("<i", text, at + 4)[0]
        if addr is None:
            _check_syscall_name(sym.name, where)
            struct.pack_into("<i", text, at + 4, -1)  # the loader hashes the name in here
            syscall_relocs.append((text_off + at, sym.name))
        else:
            # clang's implicit addend for calls: imm = addend / 8 - 1 (-1 for a symbol).
            target = addr + (imm + 1) * INSN
            pc = (text_off + at) // INSN
            if not text_off <= target < text_off + len(text) or target % INSN:
                raise LinkError(f"{where}: call to `{sym.name}` outside .text")
            struct.pack_into("<i", text, at + 4, target // INSN - pc - 1)
    else:
        raise LinkError(f"{where}: unsupported relocation type {r_type} in .text")


def _relocate_data(
    rodata: bytearray,
    at: int,
    rodata_off: int,
    r_type: int,
    sym: Symbol,
    addr: int | None,
    where: str,
    relative: list[int],
) -> None:
    if r_type != R_BPF_64_ABS64:
        hint = " (32-bit pointers cannot be relocated)" if r_type == R_BPF_64_ABS32 else ""
        raise LinkError(f"{where}: unsupported relocation type {r_type} in read-only data{hint}")
    if addr is None:
        raise LinkError(f"{where}: pointer to undefined symbol `{sym.name}`")
    if at % 8:
        raise LinkError(f"{where}: unaligned pointer slot")
    value = addr + struct.unpack_from("<Q", rodata, at)[0]
    if value >= VM_ADDRESS_LIMIT:
        raise LinkError(f"{where}: address {value:#x} does not fit the loader's 32 bits")
    # The v0 loader reads the target from the upper half of the slot (see module docstring).
    struct.pack_into("<Q", rodata, at, value << 32)
    relative.append(rodata_off + at)
