"""The sBPF toolchain: clang for the C programs, then our own linker.

- ``elf``: reading clang's BPF objects, writing the sBPF v0 program the loader accepts;
- ``link``: our linker (symbols, relocations);
- ``build``: clang and the source-hash cache in ``.build/programs/``;
  ``python -m programs.toolchain [names...]`` builds from the command line.
"""
