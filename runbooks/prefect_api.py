"""Starting Prefect's local API server up front, for the commands that run flows in-process.

``get_client()`` would start the same server later, in the middle of a runbook; its first
start creates and migrates its database, so ``runbooks demo``, ``runbooks localnet`` and
the benches start it (and wait for it) before anything else, and a start that times out
says which variable to raise.
"""

from __future__ import annotations

from core.errors import RunbookError
from core.settings import EPHEMERAL_STARTUP_TIMEOUT


def start_prefect_api() -> None:
    """Start Prefect's ephemeral API server now, when no ``PREFECT_API_URL`` is set."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_HOME,
        PREFECT_SERVER_EPHEMERAL_ENABLED,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    )

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    from prefect.server.api.server import SubprocessASGIServer

    try:
        SubprocessASGIServer().start()  # the instance get_client() reuses
    except RuntimeError as exc:
        if "Timed out" not in str(exc):
            raise
        waited = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
        raise RunbookError(
            f"Prefect's local API server did not answer within {waited} s "
            f"({EPHEMERAL_STARTUP_TIMEOUT}); its first start creates and migrates its "
            f"database under PREFECT_HOME ({PREFECT_HOME.value()}). "
            f"Set {EPHEMERAL_STARTUP_TIMEOUT} higher (e.g. 600) on a slow or busy machine, "
            "or set PREFECT_API_URL to a running Prefect server."
        ) from None


__all__ = ["start_prefect_api"]
