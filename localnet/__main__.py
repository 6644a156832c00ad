"""``python -m localnet``: see ``localnet.cli``."""

import sys

from localnet.cli import main

sys.exit(main())
