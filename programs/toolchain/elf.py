"""ELF64 for sBPF v0: reading clang's BPF relocatable objects, writing the loadable program.

What the Solana loader (``solana-sbpf``'s ``elf.rs``, "lenient" sBPF v0 path) needs of a
program, and what ``write_program`` lays out:

- an ``ET_DYN`` ELF64, e_machine ``EM_BPF`` (247), e_flags 0 (sBPF v0);
- exactly one ``.text``; read-only data in ``.rodata``; no writable ``.data``/``.bss``;
- section addresses equal to file offsets, sections in ascending file order, names
  shorter than 16 bytes; the loader maps file offset ``X`` at VM address ``2**32 + X``;
- ``.dynamic`` (DT_REL/DT_RELSZ/DT_RELENT, DT_SYMTAB, DT_STRTAB) pointing at
  ``.rel.dyn``, ``.dynsym`` and ``.dynstr``.

``read_object`` parses a relocatable object (sections and symbols) for the linker
(``programs.toolchain.link``); ``elf_sections`` and ``elf_relocations`` read a linked
program back, for tests and diagnostics.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from core.errors import LinkError

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
EHDR_SIZE, PHDR_SIZE, SHDR_SIZE, SYM_SIZE, REL_SIZE, DYN_SIZE = 64, 56, 64, 24, 16, 16
MAX_SECTION_NAME = 15  # the loader reads names through a 16-byte window, NUL included
MAX_SYMBOL_NAME = 63  # likewise for .dynstr entries (64 bytes)


def align_up(value: int, alignment: int) -> int:
    """``value`` rounded up to a multiple of ``alignment`` (0 counts as 1)."""
    alignment = max(alignment, 1)
    return (value + alignment - 1) // alignment * alignment


@dataclass
class Section:
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
class Symbol:
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
class ObjectFile:
    path: str
    sections: list[Section]
    symbols: list[Symbol]


def cstr(table: bytes, offset: int) -> str:
    end = table.index(b"\0", offset)
    return table[offset:end].decode()


def read_object(data: bytes, path: str) -> ObjectFile:
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
    sections: list[Section] = []
    for i, (name, typ, flags, _addr, off, size, link, info, align, entsize) in enumerate(raw):
        body = b"" if typ == SHT_NOBITS else data[off : off + size]
        name_str = cstr(shstrtab, name)
        sections.append(
            Section(i, name_str, typ, flags, off, size, link, info, align, entsize, body)
        )
    symbols: list[Symbol] = []
    for sec in sections:
        if sec.type != SHT_SYMTAB:
            continue
        strtab = sections[sec.link].data
        for j in range(sec.size // SYM_SIZE):
            st_name, st_info, _other, st_shndx, st_value, _size = struct.unpack_from(
                "<IBBHQQ", sec.data, j * SYM_SIZE
            )
            symbols.append(Symbol(cstr(strtab, st_name), st_info, st_shndx, st_value))
    return ObjectFile(path, sections, symbols)


def write_program(
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
    """The program's ELF bytes: the linked ``.text``/``.rodata`` at their file offsets, the
    dynamic sections (one ``.dynsym`` entry per syscall), program and section headers.
    ``relative`` are the file offsets to emit as ``R_BPF_64_RELATIVE``, ``syscall_relocs``
    the calls to emit as ``R_BPF_64_32`` against their syscall's symbol."""
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

    dynamic_off = align_up(loaded_end, 8)
    n_dyn = 5 + (3 if rel_dyn else 0)
    dynsym_off = dynamic_off + n_dyn * DYN_SIZE
    dynstr_off = dynsym_off + len(dynsym)
    rel_off = align_up(dynstr_off + len(dynstr), 8)
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
    shoff = align_up(shstrtab_off + len(shstrtab), 8)

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
        out[cstr(strtab, name)] = ElfSection(cstr(strtab, name), typ, flags, addr, off, size)
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
        out.append((r_offset, r_info & 0xFFFFFFFF, cstr(strtab, st_name) if r_sym else ""))
    return out
