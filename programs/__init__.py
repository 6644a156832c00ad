"""On-chain programs in C, their sBPF build and a Python client per program.

- ``programs.toolchain``: compile with clang and link to an sBPF v0 ``.so`` with our own
  linker (cached in ``.build/programs/``); ``python -m programs.toolchain`` builds them all.
- ``programs/include/solana_sdk.h``: the C SDK the programs are written against.
- ``programs.anchor``: the Anchor-style codec (discriminators, little-endian fields).
- ``programs.demo_vault``: the sample upgrade target, v1 and v2, and its client.
"""
