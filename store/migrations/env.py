"""Alembic environment for the records database.

Run through ``store.db.migrate`` (or ``store.db.alembic_config`` for ``alembic`` commands
such as ``revision --autogenerate``); there is no alembic.ini. ``migrate`` hands over an
open connection in ``config.attributes["connection"]`` so that the upgrade runs inside the
transaction (and, on PostgreSQL, under the advisory lock) that ``migrate`` holds.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from store.models import Base  # the package registers every table on Base

config = context.config
target_metadata = Base.metadata


def _configure(dialect_name: str) -> dict[str, object]:
    return {
        "target_metadata": target_metadata,
        # SQLite cannot ALTER most things in place: batch mode rebuilds the table instead.
        "render_as_batch": dialect_name == "sqlite",
        # Autogenerate writes store.models.UTCDateTime() rather than an unimportable name.
        "user_module_prefix": "store.models.",
        "compare_type": True,
    }


def run_migrations_offline() -> None:
    """Write the SQL to stdout (``alembic upgrade --sql``) instead of running it."""
    url = config.get_main_option("sqlalchemy.url")
    dialect_name = (url or "").split(":", 1)[0].split("+", 1)[0]
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **_configure(dialect_name),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection: Connection | None = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, **_configure(connection.dialect.name))
        with context.begin_transaction():
            context.run_migrations()
        return

    # Started without a connection (the alembic CLI): build the engine the same way the
    # runbooks do, so SQLite gets its pragmas and errors get the redacted URL.
    from store.db import create_engine

    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as conn:
            context.configure(connection=conn, **_configure(conn.dialect.name))
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
