"""The records database: what every runbook did, queryable and auditable.

Plain Python (no Prefect import):

- ``store.models``     SQLAlchemy models (SQLite and PostgreSQL), one module per runbook
- ``store.migrations`` the Alembic environment; apply it with ``store.db.migrate``
- ``store.db``         URL, engine, transactions, migrations, redacted URLs
- ``store.records``    the repository functions the flows call, one module per runbook
- ``store.testing``    scratch PostgreSQL databases for the test suites
"""
