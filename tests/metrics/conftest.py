"""Metrics fixtures: a migrated records database on SQLite and PostgreSQL (``db_url``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from store.db import create_engine, migrate


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = create_engine(db_url)
    migrate(eng)
    yield eng
    eng.dispose()
