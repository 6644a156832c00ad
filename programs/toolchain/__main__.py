"""``python -m programs.toolchain [names...] [--force]``: build the C programs to sBPF."""

import sys

from programs.toolchain.build import main

sys.exit(main())
