"""``python -m benches [name ...]``: run every bench_*.py module (or the named ones)."""

from __future__ import annotations

import importlib
import pkgutil
import sys

from core.settings import apply_defaults
from runbooks.prefect_api import start_prefect_api


def main(argv: list[str]) -> int:
    apply_defaults()
    start_prefect_api()  # not inside a timed section: a first start migrates its database
    import benches

    names = sorted(
        m.name for m in pkgutil.iter_modules(benches.__path__) if m.name.startswith("bench_")
    )
    wanted = [n for n in names if not argv or n.removeprefix("bench_") in argv or n in argv]
    for name in wanted:
        module = importlib.import_module(f"benches.{name}")
        module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
