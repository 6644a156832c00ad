"""Process-wide defaults applied before Prefect is imported.

Prefect reads its settings from the environment at import time, so the CLI calls
``apply_defaults()`` first. Nothing here overrides a variable the operator has set.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

EPHEMERAL_STARTUP_TIMEOUT = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
# Prefect's own default is 20 s; a first start on a fresh PREFECT_HOME also creates and
# migrates the server's SQLite database: 94 s measured on a 2-core host at load 9. Only a
# server that cannot start at all makes anyone wait this long.
EPHEMERAL_STARTUP_TIMEOUT_DEFAULT = "300"


def apply_defaults() -> None:
    # Keep Prefect's database and logs inside the checkout, not ~/.prefect.
    os.environ.setdefault("PREFECT_HOME", str(REPO_ROOT / ".prefect"))
    # No phoning home: this machine (and most production hosts) has no internet route.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault(EPHEMERAL_STARTUP_TIMEOUT, EPHEMERAL_STARTUP_TIMEOUT_DEFAULT)


def start_prefect_api() -> None:
    """Start Prefect's ephemeral API server now, when no ``PREFECT_API_URL`` is set.

    ``get_client()`` would start the same server later, in the middle of a runbook; its
    first start creates and migrates its database, so it is started (and waited for)
    up front, and a start that times out says which variable to raise.
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_ENABLED,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    )

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    from prefect.server.api.server import SubprocessASGIServer

    from core.errors import RunbookError

    try:
        SubprocessASGIServer().start()  # the instance get_client() reuses
    except RuntimeError as exc:
        if "Timed out" not in str(exc):
            raise
        waited = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
        raise RunbookError(
            f"Prefect's local API server did not answer within {waited} s "
            f"({EPHEMERAL_STARTUP_TIMEOUT}); its first start creates and migrates its "
            f"database under PREFECT_HOME ({os.environ.get('PREFECT_HOME', '~/.prefect')}). "
            f"Set {EPHEMERAL_STARTUP_TIMEOUT} higher (e.g. 600) on a slow or busy machine, "
            "or set PREFECT_API_URL to a running Prefect server."
        ) from None
