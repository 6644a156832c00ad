"""Build the C on-chain programs to sBPF shared objects with Debian clang and our own linker.

``compile_c`` runs clang (``--target=bpfel -mcpu=v2``: the newest CPU the sBPF v0 loader
accepts) on one C file; ``programs.toolchain.link`` links the objects (see there why the
linker is our own, and ``programs.toolchain.elf`` for what the loader needs of the file).

``build_program(name)`` compiles ``programs/<name>/*.c`` and links them into
``.build/programs/<name>-<hash>.so`` at the repository root, keyed by a hash of the
sources, the shared headers and the toolchain's own modules, so a test session builds
each program once. ``python -m programs.toolchain [names...]`` builds programs from the
command line.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from core.errors import BuildError
from core.settings import settings
from programs.toolchain.link import link

TOOLCHAIN_DIR = Path(__file__).resolve().parent
PROGRAMS_DIR = TOOLCHAIN_DIR.parent
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


def clang_path() -> str:
    """The clang to use: ``$CLANG`` if set, else ``clang`` on PATH."""
    clang = settings().clang or shutil.which("clang")
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
    files += sorted(TOOLCHAIN_DIR.glob("*.py"))
    return files


def source_hash(name: str) -> str:
    """SHA-256 over the program's sources, the shared headers and the toolchain itself."""
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
        # Write then link so a concurrent build never sees half a file; the first build
        # to finish wins, so a cached file never changes under a reader (parallel tests).
        partial = out.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(elf)
        try:
            if force:
                partial.replace(out)
            else:
                os.link(partial, out)
        except FileExistsError:
            pass  # same sources, same bytes: another process built it meanwhile
        finally:
            partial.unlink(missing_ok=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m programs.toolchain",
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
