"""The process's settings: one typed object over the environment, and Prefect's defaults.

``settings()`` reads the environment each time it is called (the CLI, tests and
``runbooks up`` change variables while the process runs), so read it where the value is
used, never once at import. A value that does not parse is an ``InputError`` naming the
variable.

Prefect reads its own settings from the environment at import time, so the CLI calls
``apply_defaults()`` first. Nothing here overrides a variable the operator has set.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import InputError

REPO_ROOT = Path(__file__).resolve().parents[1]

EPHEMERAL_STARTUP_TIMEOUT = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
# Prefect's own default is 20 s; a first start on a fresh PREFECT_HOME also creates and
# migrates the server's SQLite database: 94 s measured on a 2-core host at load 9. Only a
# server that cannot start at all makes anyone wait this long.
EPHEMERAL_STARTUP_TIMEOUT_DEFAULT = "300"


class Settings(BaseSettings):
    """Every environment variable the runbooks read (an empty variable counts as unset)."""

    model_config = SettingsConfigDict(
        env_ignore_empty=True, str_strip_whitespace=True, extra="ignore", frozen=True
    )

    # The records database; empty: the SQLite file var/runbooks.db (store.db.database_url).
    database_url: str = Field("", validation_alias="DATABASE_URL")
    # An explicitly set DATABASE_URL must name an existing records database (a typo must
    # not start an empty one); 1 lets this process create and migrate a new one.
    create_database: bool = Field(False, validation_alias="RUNBOOKS_CREATE_DATABASE")
    # How often a paused run checks for a resume (Prefect's default is 10 s).
    pause_poll_seconds: int = Field(10, validation_alias="RUNBOOKS_PAUSE_POLL_SECONDS")
    # Timelock waits longer than this suspend the run (deployments only).
    inline_timelock_seconds: float = Field(
        15 * 60, validation_alias="RUNBOOKS_INLINE_TIMELOCK_SECONDS"
    )
    # The /metrics endpoint; empty: 127.0.0.1:9464 (runbooks.metrics.configured_address
    # checks the port and says how to fix it).
    metrics_host: str = Field("", validation_alias="RUNBOOKS_METRICS_HOST")
    metrics_port: str = Field("", validation_alias="RUNBOOKS_METRICS_PORT")
    # How long a starting Prefect server is waited for (Prefect's own variable).
    prefect_startup_timeout_seconds: float = Field(
        float(EPHEMERAL_STARTUP_TIMEOUT_DEFAULT), validation_alias=EPHEMERAL_STARTUP_TIMEOUT
    )
    # Modules (or their packages) a migration may load a migrator class from by
    # "package.module:ClassName", comma-separated; the built-in plugins always may.
    migrator_modules: str = Field("", validation_alias="RUNBOOKS_MIGRATOR_MODULES")
    # A Squads v4 program binary every localnet loads at the Squads program id.
    squads_so: str = Field("", validation_alias="RUNBOOKS_SQUADS_SO")
    # The clang that builds the on-chain programs; empty: clang on PATH.
    clang: str = Field("", validation_alias="CLANG")
    # The PostgreSQL server the tests create scratch databases on (store.testing).
    test_postgres_url: str = Field("", validation_alias="TEST_POSTGRES_URL")


def settings() -> Settings:
    """The settings as the environment holds them now."""
    try:
        return Settings()
    except ValidationError as exc:
        wrong = ", ".join(
            f"{'.'.join(str(p) for p in e['loc'])}={e.get('input')!r} ({e['msg']})"
            for e in exc.errors()
        )
        raise InputError(f"environment variable not understood: {wrong}; fix or unset it") from None


def apply_defaults() -> None:
    # Keep Prefect's database and logs inside the checkout, not ~/.prefect.
    os.environ.setdefault("PREFECT_HOME", str(REPO_ROOT / ".prefect"))
    # No phoning home: this machine (and most production hosts) has no internet route.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault(EPHEMERAL_STARTUP_TIMEOUT, EPHEMERAL_STARTUP_TIMEOUT_DEFAULT)


__all__ = [
    "EPHEMERAL_STARTUP_TIMEOUT",
    "EPHEMERAL_STARTUP_TIMEOUT_DEFAULT",
    "REPO_ROOT",
    "Settings",
    "apply_defaults",
    "settings",
]
