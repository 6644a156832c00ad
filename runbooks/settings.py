"""Process-wide defaults applied before Prefect is imported.

Prefect reads its settings from the environment at import time, so the CLI calls
``apply_defaults()`` first. Nothing here overrides a variable the operator has set.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def apply_defaults() -> None:
    # Keep Prefect's database and logs inside the checkout, not ~/.prefect.
    os.environ.setdefault("PREFECT_HOME", str(REPO_ROOT / ".prefect"))
    # No phoning home: this machine (and most production hosts) has no internet route.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
