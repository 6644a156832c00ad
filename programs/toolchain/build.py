"""Build the C on-chain programs to sBPF shared objects with Debian clang and our own linker.

Why a linker of our own: ``ld.lld`` cannot produce what the Solana loader wants from
clang's ``bpfel`` objects (its default layout lands out of bounds, it does not know
relocation 10, lld-19 rejects e_machine 247), and the Solana toolchain is not
installable here. The loader (``solana-sbpf``'s ``elf.rs``, "lenient" sBPF v0 path) needs
little:

- an ``ET_DYN`` ELF64, e_machine ``EM_BPF`` (247), e_flags 0 (sBPF v0);
- exactly one ``.text``; read-only data in ``.rodata``; no writable ``.data``/``.bss``;
- section addresses equal to file offsets, sections in ascending file order, names
  shorter than 16 bytes; the loader maps file offset ``X`` at VM address ``2**32 + X``;
- ``.dynamic`` (DT_REL/DT_RELSZ/DT_RELENT, DT_SYMTAB, DT_STRTAB) pointing at
  ``.rel.dyn``, ``.dynsym`` and ``.dynstr``.

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

``build_program(name)`` compiles ``programs/<name>/*.c`` and links them into
``.build/programs/<name>-<hash>.so`` at the repository root, keyed by a hash of the
sources, the shared headers and this file, so a test session builds each program once.
``python -m programs.toolchain.build [names...]`` builds programs from the command line.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import RunbookError

PROGRAMS_DIR = Path(__file__).resolve().parent
REPO_ROOT = PROGRAMS_DIR.parent
INCLUDE_DIR = PROGRAMS_DIR / "include"
BUILD_DIR = REPO_ROOT / ".build" / "programs"

# v2 is the newest CPU the sBPF v0 loader accepts (v3 emits JMP32 opcodes). Builtins and
# jump tables are off because the program has no libc and no writable data to jump through.
CLANG_FLAGS: tuple[str, ...] = (
    "--target=bpfel",
    "-mcpu=v2",
    "-O2",
    "-fno-builtin",
    "-fno-jump-tables",
    "-ffreestanding",
    "-Wall",
    "-Werror=implicit-function-declaration",
)
ENTRYPOINT = "entrypoint"

# ELF constants (only those this linker reads or writes).
ET_REL, ET_DYN = 1, 3
EM_BPF = 247
SHT_NULL, SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB = 0, 1, 2, 3
SHT_DYNAMIC, SHT_NOBITS, SHT_REL, SHT_DYNSYM = 6, 8, 9, 11
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4
SHN_UNDEF, SHN_ABS, SHN_COMMON = 0, 0xFFF1, 0xFFF2
STB_LOCAL, STB_GLOBAL = 0, 1
STT_NOTYPE, STT_SECTION = 0, 3
PT_LOAD, PT_DYNAMIC = 1, 2
PF_X, PF_W, PF_R = 1, 2, 4
DT_NULL, DT_STRTAB, DT_SYMTAB, DT_STRSZ, DT_SYMENT = 0, 5, 6, 10, 11
DT_REL, DT_RELSZ, DT_RELENT = 17, 18, 19

R_BPF_64_64 = 1  # lddw immediate (in objects)
R_BPF_64_ABS64 = 2  # 64-bit data pointer (in objects)
R_BPF_64_ABS32 = 3  # 32-bit data pointer (in objects)
R_BPF_64_RELATIVE = 8  # what the loader relocates by adding 2**32 (in the .so)
R_BPF_64_32 = 10  # call (in objects: local or undefined; in the .so: syscalls)

OP_LDDW = 0x18
OP_CALL = 0x85
INSN = 8
EHDR_SIZE, PHDR_SIZE, SHDR_SIZE, SYM_SIZE, REL_SIZE, DYN_SIZE = 64, 56, 64, 24, 16, 16
MAX_SECTION_NAME = 15  # the loader reads names through a 16-byte window, NUL included
MAX_SYMBOL_NAME = 63  # likewise for .dynstr entries (64 bytes)
VM_ADDRESS_LIMIT = 1 << 32  # every address the loader relocates must fit in 32 bits


class BuildError(RunbookError):
    """A program could not be compiled or linked; the message says what to fix."""


class LinkError(BuildError):
    """The objects cannot be linked into a loadable sBPF v0 program."""


# --------------------------------------------------------------------------- compile


def clang_path() -> str:
    """The clang to use: ``$CLANG`` if set, else ``clang`` on PATH."""
    clang = os.environ.get("CLANG") or shutil.which("clang")
    if not clang:
        raise BuildError(
            "clang was not found: install it with `apt-get install -y clang` "
            "(or point $CLANG at a clang 14+ binary) and build again"
        )
    return clang


def compile_c(source: Path, out_obj: Path, include_dirs: Sequence[Path] = ()) -> Path:
    """Compile one C file to a BPF relocatable object with our fixed flags."""
    out_obj.parent.mkdir(parents=True, exist_ok=True)
    cmd = [clang_path(), *CLANG_FLAGS, "-I", str(INCLUDE_DIR)]
    for extra in include_dirs:
        cmd += ["-I", str(extra)]
    cmd += ["-c", str(source), "-o", str(out_obj)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"clang failed on {source}:\n{proc.stderr.strip()}")
    return out_obj


# ------------------------------------------------------------------ object reading


@dataclass
class _Section:
    index: int
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    align: int
    entsize: int
    data: bytes


@dataclass
class _Symbol:
    name: str
    info: int
    shndx: int
    value: int

    @property
    def bind(self) -> int:
        return self.info >> 4

    @property
    def type(self) -> int:
        return self.info & 0xF


@dataclass
class _Object:
    path: str
    sections: list[_Section]
    symbols: list[_Symbol]


def _cstr(table: bytes, offset: int) -> str:
    end = table.index(b"\0", offset)
    return table[offset:end].decode()


def _read_object(data: bytes, path: str) -> _Object:
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise LinkError(f"{path}: not a little-endian ELF64 object")
    (e_type, e_machine) = struct.unpack_from("<HH", data, 16)
    if e_type != ET_REL or e_machine != EM_BPF:
        raise LinkError(
            f"{path}: not a BPF relocatable object (type {e_type}, machine {e_machine})"
        )
    e_shoff = struct.unpack_from("<Q", data, 40)[0]
    e_shnum, e_shstrndx = struct.unpack_from("<HH", data, 60)
    raw = []
    for i in range(e_shnum):
        fields = struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + i * SHDR_SIZE)
        raw.append(fields)
    shstr = raw[e_shstrndx]
    shstrtab = data[shstr[4] : shstr[4] + shstr[5]]
    sections: list[_Section] = []
    for i, (name, typ, flags, _addr, off, size, link, info, align, entsize) in enumerate(raw):
        body = b"" if typ == SHT_NOBITS else data[off : off + size]
        name_str = _cstr(shstrtab, name)
        sections.append(
            _Section(i, name_str, typ, flags, off, size, link, info, align, entsize, body)
        )
    symbols: list[_Symbol] = []
    for sec in sections:
        if sec.type != SHT_SYMTAB:
            continue
        strtab = sections[sec.link].data
        for j in range(sec.size // SYM_SIZE):
            st_name, st_info, _other, st_shndx, st_value, _size = struct.unpack_from(
                "<IBBHQQ", sec.data, j * SYM_SIZE
            )
            symbols.append(_Symbol(_cstr(strtab, st_name), st_info, st_shndx, st_value))
    return _Object(path, sections, symbols)


# ------------------------------------------------------------------------- linking


def _align(value: int, alignment: int) -> int:
    alignment = max(alignment, 1)
    return (value + alignment - 1) // alignment * alignment


def _is_text(sec: _Section) -> bool:
    return bool(sec.flags & SHF_ALLOC) and bool(sec.flags & SHF_EXECINSTR)


def _is_rodata(sec: _Section) -> bool:
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


def _place_sections(objects: list[_Object]) -> _Layout:
    layout = _Layout()
    for oi, obj in enumerate(objects):
        for sec in obj.sections:
            if not sec.flags & SHF_ALLOC or sec.size == 0:
                continue
            if _is_text(sec):
                pad = _align(len(layout.text), max(sec.align, INSN)) - len(layout.text)
                layout.text += b"\0" * pad
                layout.text_at[(oi, sec.index)] = len(layout.text)
                layout.text += sec.data
            elif _is_rodata(sec):
                layout.rodata_align = max(layout.rodata_align, sec.align)
                pad = _align(len(layout.rodata), sec.align) - len(layout.rodata)
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
    objs: list[_Object] = []
    for i, item in enumerate(objects):
        if isinstance(item, bytes | bytearray):
            objs.append(_read_object(bytes(item), f"<object {i}>"))
        else:
            objs.append(_read_object(Path(item).read_bytes(), str(item)))
    if not objs:
        raise LinkError("nothing to link")
    layout = _place_sections(objs)

    # The output layout is fixed before relocating because addresses are file offsets.
    # Header and program headers first, then .text and .rodata (loaded), then the
    # dynamic-linking sections; their sizes depend on the syscalls found below, which do
    # not move .text/.rodata.
    has_rodata = bool(layout.rodata)
    phnum = 5 if has_rodata else 4
    text_off = _align(EHDR_SIZE + phnum * PHDR_SIZE, INSN)
    rodata_off = _align(text_off + len(layout.text), max(layout.rodata_align, 8))
    loaded_end = rodata_off + len(layout.rodata) if has_rodata else text_off + len(layout.text)

    def output_address(oi: int, sym: _Symbol, where: str) -> int | None:
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

    def resolve(oi: int, sym: _Symbol, where: str) -> int | None:
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

    return _write_elf(
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
    sym: _Symbol,
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
    sym: _Symbol,
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


def _write_elf(
    *,
    text: bytes,
    rodata: bytes,
    text_off: int,
    rodata_off: int,
    loaded_end: int,
    phnum: int,
    entry: int,
    relative: list[int],
    syscall_relocs: list[tuple[int, str]],
) -> bytes:
    # .dynsym / .dynstr: one undefined global per distinct syscall, in first-use order.
    dynstr = bytearray(b"\0")
    dynsym = bytearray(SYM_SIZE)  # index 0 is the null symbol
    sym_index: dict[str, int] = {}
    for _, name in syscall_relocs:
        if name in sym_index:
            continue
        sym_index[name] = len(dynsym) // SYM_SIZE
        dynsym += struct.pack("<IBBHQQ", len(dynstr), (STB_GLOBAL << 4) | STT_NOTYPE, 0, 0, 0, 0)
        dynstr += name.encode() + b"\0"

    rel_dyn = bytearray()
    for off in relative:
        rel_dyn += struct.pack("<QQ", off, R_BPF_64_RELATIVE)
    for off, name in syscall_relocs:
        rel_dyn += struct.pack("<QQ", off, (sym_index[name] << 32) | R_BPF_64_32)

    dynamic_off = _align(loaded_end, 8)
    n_dyn = 5 + (3 if rel_dyn else 0)
    dynsym_off = dynamic_off + n_dyn * DYN_SIZE
    dynstr_off = dynsym_off + len(dynsym)
    rel_off = _align(dynstr_off + len(dynstr), 8)
    dyn_end = rel_off + len(rel_dyn)

    entries = [
        (DT_SYMTAB, dynsym_off),
        (DT_SYMENT, SYM_SIZE),
        (DT_STRTAB, dynstr_off),
        (DT_STRSZ, len(dynstr)),
    ]
    if rel_dyn:
        entries += [(DT_REL, rel_off), (DT_RELSZ, len(rel_dyn)), (DT_RELENT, REL_SIZE)]
    entries.append((DT_NULL, 0))
    dynamic = b"".join(struct.pack("<QQ", tag, val) for tag, val in entries)

    # Section headers: (name, type, flags, offset, size, link, info, align, entsize).
    # Indices: 0 null, 1 .text, [2 .rodata], then .dynamic, .dynsym, .dynstr, [.rel.dyn], .shstrtab
    names = [".text"] + ([".rodata"] if rodata else []) + [".dynamic", ".dynsym", ".dynstr"]
    names += [".rel.dyn"] if rel_dyn else []
    names.append(".shstrtab")
    idx = {n: i + 1 for i, n in enumerate(names)}
    shstrtab = bytearray(b"\0")
    name_off: dict[str, int] = {}
    for n in names:
        assert len(n) <= MAX_SECTION_NAME
        name_off[n] = len(shstrtab)
        shstrtab += n.encode() + b"\0"
    shstrtab_off = dyn_end
    shoff = _align(shstrtab_off + len(shstrtab), 8)

    headers: list[tuple[str, int, int, int, int, int, int, int, int]] = [
        (".text", SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, text_off, len(text), 0, 0, 8, 0)
    ]
    if rodata:
        headers.append((".rodata", SHT_PROGBITS, SHF_ALLOC, rodata_off, len(rodata), 0, 0, 8, 0))
    dynstr_idx = idx[".dynstr"]
    headers += [
        (".dynamic", SHT_DYNAMIC, SHF_ALLOC | SHF_WRITE, dynamic_off, len(dynamic),
         dynstr_idx, 0, 8, DYN_SIZE),
        (".dynsym", SHT_DYNSYM, SHF_ALLOC, dynsym_off, len(dynsym), dynstr_idx, 1, 8, SYM_SIZE),
        (".dynstr", SHT_STRTAB, SHF_ALLOC, dynstr_off, len(dynstr), 0, 0, 1, 0),
    ]  # fmt: skip
    if rel_dyn:
        headers.append(
            (".rel.dyn", SHT_REL, SHF_ALLOC, rel_off, len(rel_dyn), idx[".dynsym"], 0, 8, REL_SIZE)
        )
    headers.append((".shstrtab", SHT_STRTAB, 0, shstrtab_off, len(shstrtab), 0, 0, 1, 0))
    shnum = len(headers) + 1

    # Program headers: loaded segments in ascending address order, then PT_DYNAMIC.
    phdrs = [(PT_LOAD, PF_R | PF_X, text_off, len(text))]
    if rodata:
        phdrs.append((PT_LOAD, PF_R, rodata_off, len(rodata)))
    phdrs.append((PT_LOAD, PF_R | PF_W, dynamic_off, len(dynamic)))
    phdrs.append((PT_LOAD, PF_R, dynsym_off, dyn_end - dynsym_off))
    phdrs.append((PT_DYNAMIC, PF_R | PF_W, dynamic_off, len(dynamic)))
    assert len(phdrs) == phnum

    out = bytearray(shoff + shnum * SHDR_SIZE)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0, 0]) + b"\0" * 7
    struct.pack_into(
        "<16sHHIQQQIHHHHHH", out, 0, ident, ET_DYN, EM_BPF, 1, entry, EHDR_SIZE, shoff, 0,
        EHDR_SIZE, PHDR_SIZE, phnum, SHDR_SIZE, shnum, shnum - 1,
    )  # fmt: skip
    for i, (p_type, p_flags, off, size) in enumerate(phdrs):
        struct.pack_into(
            "<IIQQQQQQ", out, EHDR_SIZE + i * PHDR_SIZE, p_type, p_flags, off, off, off, size,
            size, 8,
        )  # fmt: skip
    out[text_off : text_off + len(text)] = text
    if rodata:
        out[rodata_off : rodata_off + len(rodata)] = rodata
    out[dynamic_off : dynamic_off + len(dynamic)] = dynamic
    out[dynsym_off : dynsym_off + len(dynsym)] = dynsym
    out[dynstr_off : dynstr_off + len(dynstr)] = dynstr
    out[rel_off : rel_off + len(rel_dyn)] = rel_dyn
    out[shstrtab_off : shstrtab_off + len(shstrtab)] = shstrtab
    for i, (name, typ, flags, off, size, lnk, info, align, entsize) in enumerate(headers, 1):
        addr = off if flags & SHF_ALLOC else 0  # section addresses equal file offsets
        struct.pack_into(
            "<IIQQQQIIQQ", out, shoff + i * SHDR_SIZE, name_off[name], typ, flags, addr, off,
            size, lnk, info, align, entsize,
        )  # fmt: skip
    return bytes(out)


# ------------------------------------------------------------------ inspecting output


@dataclass(frozen=True)
class ElfSection:
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int


def elf_sections(elf: bytes) -> dict[str, ElfSection]:
    """The section headers of a linked program by name (for tests and diagnostics)."""
    shoff = struct.unpack_from("<Q", elf, 40)[0]
    shnum, shstrndx = struct.unpack_from("<HH", elf, 60)
    raw = [struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * SHDR_SIZE) for i in range(shnum)]
    strtab = elf[raw[shstrndx][4] : raw[shstrndx][4] + raw[shstrndx][5]]
    out: dict[str, ElfSection] = {}
    for name, typ, flags, addr, off, size, *_ in raw[1:]:
        out[_cstr(strtab, name)] = ElfSection(_cstr(strtab, name), typ, flags, addr, off, size)
    return out


def elf_relocations(elf: bytes) -> list[tuple[int, int, str]]:
    """``(offset, type, symbol name)`` for every entry of ``.rel.dyn`` ("" for no symbol)."""
    secs = elf_sections(elf)
    rel = secs.get(".rel.dyn")
    if rel is None:
        return []
    dynsym, dynstr = secs[".dynsym"], secs[".dynstr"]
    strtab = elf[dynstr.offset : dynstr.offset + dynstr.size]
    out = []
    for j in range(rel.size // REL_SIZE):
        r_offset, r_info = struct.unpack_from("<QQ", elf, rel.offset + j * REL_SIZE)
        r_sym = r_info >> 32
        st_name = struct.unpack_from("<I", elf, dynsym.offset + r_sym * SYM_SIZE)[0]
        out.append((r_offset, r_info & 0xFFFFFFFF, _cstr(strtab, st_name) if r_sym else ""))
    return out


# -------------------------------------------------------------------------- building


def program_dir(name: str) -> Path:
    """``programs/<name>``; a name may have a slash (``demo_vault/v1``)."""
    path = (PROGRAMS_DIR / name).resolve()
    if PROGRAMS_DIR not in path.parents or not sorted(path.glob("*.c")):
        raise BuildError(
            f"unknown program `{name}`: expected C sources in programs/{name}/ "
            f"(known: {', '.join(program_names()) or 'none'})"
        )
    return path


def program_names() -> list[str]:
    """Every directory under programs/ holding C sources, as build names."""
    names = {
        str(c.parent.relative_to(PROGRAMS_DIR))
        for c in PROGRAMS_DIR.rglob("*.c")
        if INCLUDE_DIR not in c.parents
    }
    return sorted(names)


def _hash_inputs(directory: Path) -> list[Path]:
    files = sorted(directory.glob("*.c")) + sorted(directory.glob("*.h"))
    files += sorted(INCLUDE_DIR.rglob("*.h"))
    files.append(Path(__file__).resolve())
    return files


def source_hash(name: str) -> str:
    """SHA-256 over the program's sources, the shared headers and this builder."""
    digest = hashlib.sha256()
    for path in _hash_inputs(program_dir(name)):
        digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def output_path(name: str) -> Path:
    """Where ``build_program(name)`` writes (and caches) the program."""
    return BUILD_DIR / f"{name}-{source_hash(name)[:16]}.so"


def build_program(name: str, *, force: bool = False) -> Path:
    """Build ``programs/<name>`` to ``.build/programs/<name>-<hash>.so``; cached by hash."""
    directory = program_dir(name)
    out = output_path(name)
    if out.exists() and not force:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sbpf-") as tmp:
        objects = [
            compile_c(src, Path(tmp) / f"{src.stem}.o", include_dirs=[directory])
            for src in sorted(directory.glob("*.c"))
        ]
        elf = link(objects)
        # Write then rename so a concurrent build never sees half a file.
        partial = out.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(elf)
        partial.replace(out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m programs.toolchain.build",
        description="Build the C on-chain programs to sBPF.",
    )
    parser.add_argument("names", nargs="*", help="programs to build (default: all)")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args(argv)
    try:
        for name in args.names or program_names():
            path = build_program(name, force=args.force)
            print(f"{name}\t{path.relative_to(REPO_ROOT)}\t{path.stat().st_size} bytes")
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
