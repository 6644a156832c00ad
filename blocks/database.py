"""Where the audit records live."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class RecordsDatabase(Block):
    """The records database URL (SQLite or PostgreSQL), kept secret: it may hold a password."""

    _block_type_name = "Runbook Records Database"
    _block_type_slug = "runbook-records-database"
    _description = "SQLAlchemy URL of the audit records database."

    url: SecretStr = Field(
        title="Database URL",
        description="sqlite:///path/runbooks.db or postgresql+psycopg://user:pass@host/db",
    )
