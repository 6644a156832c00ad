"""Alembic environment of the records database; run it with ``store.db.migrate``."""
