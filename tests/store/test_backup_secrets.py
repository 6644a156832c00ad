"""A failing PostgreSQL client tool (psql, pg_dump, pg_restore) never leaks the password
into the backup error, even when its output echoes it."""

from __future__ import annotations

import shutil

import pytest

from store import backup
from store.backup import BackupError


def test_failed_tool_output_is_scrubbed_and_cut() -> None:
    sh = shutil.which("sh")
    assert sh is not None
    params = backup._pg_params("postgresql+psycopg://ops:hunter2@db.example/records")
    # The tool sees the password in its environment (PGPASSWORD) and prints it.
    script = 'echo "login as ops/$PGPASSWORD failed" >&2; yes x | head -c 5000 >&2; exit 2'
    argv = [sh, "-c", script]
    with pytest.raises(BackupError) as caught:
        backup._run(argv, params, "pg_dump")
    message = str(caught.value)
    assert "hunter2" not in message
    assert "login as ops/*** failed" in message
    assert "exit 2" in message
    assert len(message) < backup.DETAIL_CHARS + 200
