"""Backups of the records database and of program binaries, as plain functions.

A backup set is a directory ``<root>/<name>/`` holding

- the records database: PostgreSQL through the real ``pg_dump`` (custom format, which is
  compressed) taken in an exported snapshot, so the row counts read in that snapshot are
  exactly the dump's; SQLite through its online backup API, then gzip;
- ``programs/<program id>.so.gz``: each managed program's bytes as its ProgramData holds
  them (trailing zero padding stripped, as solana-verify hashes them);
- ``manifest.json``: the SHA-256 of every file, the row count of every table, each
  program's verifiable-build hash, and whether the set was verified.

A set counts as good only after its dump was restored into a scratch database (a new
PostgreSQL database on the same server, dropped afterwards; a temporary SQLite file) and
every table held the counted rows. Restores check every file's SHA-256 first and refuse a
corrupted set. Connection secrets reach ``pg_dump``/``pg_restore`` through the
environment (``PGPASSWORD``), never their command line, and never appear in messages.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql
from sqlalchemy import URL, make_url

from core.errors import BackupError, HashMismatch, InputError
from core.hashes import verifiable_hash
from core.secrets import scrub
from store.db import redacted

FORMAT = "solana-runbooks-backup/1"
MANIFEST = "manifest.json"
PROGRAMS_DIR = "programs"
DEFAULT_ROOT = Path("var/backups")
SUBPROCESS_TIMEOUT_S = 3600
# A failed psql/pg_dump/pg_restore's output is quoted up to this length (password scrubbed).
DETAIL_CHARS = 2000
_COPY_CHUNK = 1 << 20

Backend = Literal["sqlite", "postgresql"]


@dataclass(frozen=True)
class DatabaseDump:
    file: str  # relative to the set's directory
    sha256: str
    bytes: int
    backend: Backend
    schema: str | None  # PostgreSQL schema dumped (None for SQLite)
    tables: dict[str, int]  # row count per table, in the dump's snapshot


@dataclass(frozen=True)
class ProgramBinary:
    program_id: str
    name: str
    file: str
    sha256: str  # of the file as stored
    verifiable_sha256: str  # of the program bytes (solana-verify)
    bytes: int
    slot: int
    authority: str | None


@dataclass
class Manifest:
    name: str
    created_at: str
    cluster: str
    records: DatabaseDump | None = None
    programs: list[ProgramBinary] = field(default_factory=list)
    status: Literal["pending", "verified", "failed"] = "pending"
    verified_at: str | None = None
    detail: str | None = None
    format: str = FORMAT

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(self.created_at)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise BackupError(f"manifest format {data.get('format')!r} is not {FORMAT}")
        records = data.pop("records", None)
        programs = data.pop("programs", [])
        return cls(
            **data,
            records=DatabaseDump(**records) if records else None,
            programs=[ProgramBinary(**p) for p in programs],
        )


# ------------------------------------------------------------------------ the set


def new_set_name(now: datetime, suffix: str = "") -> str:
    """A sortable, unique-enough name: UTC timestamp plus a short suffix."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{suffix or secrets.token_hex(3)}"


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    """Write the manifest atomically (a reader never sees half of it)."""
    path = directory / MANIFEST
    tmp = directory / f".{MANIFEST}.tmp"
    tmp.write_text(manifest.to_json())
    os.replace(tmp, path)
    return path


def read_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST
    try:
        return Manifest.from_json(path.read_text())
    except FileNotFoundError:
        raise BackupError(f"{directory} holds no {MANIFEST}: not a backup set") from None
    except (ValueError, TypeError) as exc:
        raise BackupError(f"{path} is not a readable backup manifest ({exc})") from None


def list_sets(root: Path) -> list[Manifest]:
    """Every backup set under ``root`` with a readable manifest, newest first."""
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        if child.is_dir() and (child / MANIFEST).is_file():
            with contextlib.suppress(BackupError):
                found.append(read_manifest(child))
    return sorted(found, key=lambda m: (m.created, m.name), reverse=True)


def find_set(root: Path, name: str) -> Manifest:
    """The set called ``name``, or the newest verified one for ``latest``."""
    if name == "latest":
        good = [m for m in list_sets(root) if m.status == "verified"]
        if not good:
            raise BackupError(f"no verified backup set under {root}; run the backup first")
        return good[0]
    if "/" in name or name.startswith("."):
        raise InputError(f"backup name {name!r} must be a set name under {root}, not a path")
    return read_manifest(root / name)


def check_hashes(directory: Path, manifest: Manifest) -> None:
    """Refuse the set unless every file hashes to its manifest value (``HashMismatch``)."""
    entries: list[tuple[str, str]] = []
    if manifest.records is not None:
        entries.append((manifest.records.file, manifest.records.sha256))
    entries += [(p.file, p.sha256) for p in manifest.programs]
    for name, expected in entries:
        path = directory / name
        if not path.is_file():
            raise BackupError(f"backup set {manifest.name} is missing {name}")
        actual = sha256_file(path)
        if actual != expected:
            raise HashMismatch(
                f"backup file {manifest.name}/{name} (corrupted or altered: refused)",
                expected,
                actual,
            )


def remove_set(root: Path, name: str) -> None:
    target = root / name
    if target.parent.resolve() != root.resolve():
        raise InputError(f"{name!r} is not a set directly under {root}")
    shutil.rmtree(target, ignore_errors=False)


# --------------------------------------------------------------------- the database


def backend_of(url: str) -> Backend:
    backend = make_url(url).get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise InputError(f"cannot back up a {backend} database; only SQLite and PostgreSQL")
    return backend  # type: ignore[return-value]


def dump_database(url: str, directory: Path) -> DatabaseDump:
    """Dump the records database at ``url`` into ``directory`` and count its rows."""
    directory.mkdir(parents=True, exist_ok=True)
    if backend_of(url) == "sqlite":
        return _dump_sqlite(_sqlite_path(url), directory)
    return _dump_postgres(url, directory)


def restore_database(directory: Path, dump: DatabaseDump, target_url: str) -> dict[str, int]:
    """Restore ``dump`` into the empty database ``target_url``; returns its row counts.

    Refuses a target that already holds tables: restoring never overwrites records.
    """
    if backend_of(target_url) != dump.backend:
        raise InputError(
            f"the backup is a {dump.backend} dump; restore it into a {dump.backend} database, "
            f"not {redacted(target_url)}"
        )
    source = directory / dump.file
    if dump.backend == "sqlite":
        return _restore_sqlite(source, _sqlite_path(target_url))
    params = _pg_params(target_url)
    with _pg_connect(params) as conn:
        present = _pg_tables(conn, dump.schema or "public")
    if present:
        raise BackupError(
            f"{redacted(target_url)} already holds {len(present)} table(s) in schema "
            f"{dump.schema or 'public'}; restore into a new, empty database"
        )
    _pg_restore(source, params, dump.schema or "public")
    with _pg_connect(params) as conn:
        return _pg_counts(conn, dump.schema or "public")


def verify_dump(directory: Path, dump: DatabaseDump, source_url: str) -> dict[str, int]:
    """Restore ``dump`` into a scratch database and check every table's row count.

    PostgreSQL: a new database on the source's server (the role needs CREATEDB), always
    dropped afterwards. SQLite: a temporary file next to the dump.
    """
    if sha256_file(directory / dump.file) != dump.sha256:
        raise HashMismatch(
            f"backup file {dump.file}", dump.sha256, sha256_file(directory / dump.file)
        )
    if dump.backend == "sqlite":
        scratch = directory / f".verify-{secrets.token_hex(4)}.sqlite"
        try:
            counts = _restore_sqlite(directory / dump.file, scratch)
        finally:
            scratch.unlink(missing_ok=True)
    else:
        with _scratch_database(source_url) as params:
            _pg_restore(directory / dump.file, params, dump.schema or "public")
            with _pg_connect(params) as conn:
                counts = _pg_counts(conn, dump.schema or "public")
    if counts != dump.tables:
        differ = sorted(
            t for t in set(counts) | set(dump.tables) if counts.get(t) != dump.tables.get(t)
        )
        raise BackupError(
            "the restored copy does not hold the dumped rows: "
            + ", ".join(f"{t} {dump.tables.get(t)} -> {counts.get(t)}" for t in differ)
        )
    return counts


def table_counts(url: str) -> dict[str, int]:
    """Row count of every table of the database at ``url`` (its schema, for PostgreSQL)."""
    if backend_of(url) == "sqlite":
        with contextlib.closing(sqlite3.connect(_sqlite_path(url))) as conn:
            return _sqlite_counts(conn)
    params = _pg_params(url)
    with _pg_connect(params) as conn:
        return _pg_counts(conn, params["schema"])


# ------------------------------------------------------------------------ programs


def write_program(
    directory: Path,
    *,
    program_id: str,
    name: str,
    code: bytes,
    slot: int,
    authority: str | None,
) -> ProgramBinary:
    """Store a program's bytes (its ProgramData without the header; zero padding is cut)
    gzipped, with their hashes."""
    code = code.rstrip(b"\x00")
    folder = directory / PROGRAMS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    relative = f"{PROGRAMS_DIR}/{program_id}.so.gz"
    with gzip.open(directory / relative, "wb") as out:
        out.write(code)
    return ProgramBinary(
        program_id=program_id,
        name=name,
        file=relative,
        sha256=sha256_file(directory / relative),
        verifiable_sha256=verifiable_hash(code),
        bytes=len(code),
        slot=slot,
        authority=authority,
    )


def read_program(directory: Path, entry: ProgramBinary) -> bytes:
    """A stored program's bytes, after checking the file and the verifiable-build hash."""
    path = directory / entry.file
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise HashMismatch(f"backup file {entry.file}", entry.sha256, actual)
    with gzip.open(path, "rb") as src:
        code = src.read()
    if verifiable_hash(code) != entry.verifiable_sha256:
        raise HashMismatch(
            f"program {entry.program_id} in {entry.file}",
            entry.verifiable_sha256,
            verifiable_hash(code),
        )
    return code


# ------------------------------------------------------------------------- helpers


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while chunk := src.read(_COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        raise InputError(f"{redacted(url)} is not a SQLite file that can be backed up")
    return Path(database).expanduser()


def _sqlite_counts(conn: sqlite3.Connection) -> dict[str, int]:
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
    ]
    return {n: conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}


def _dump_sqlite(path: Path, directory: Path) -> DatabaseDump:
    if not path.is_file():
        raise BackupError(f"the SQLite records file {path} does not exist")
    copy = directory / ".records.sqlite.tmp"
    target = directory / "records.sqlite.gz"
    try:
        # The online backup API copies a consistent snapshot while writers go on.
        with (
            contextlib.closing(sqlite3.connect(path)) as src,
            contextlib.closing(sqlite3.connect(copy)) as dst,
        ):
            src.backup(dst)
            counts = _sqlite_counts(dst)
        with copy.open("rb") as raw, gzip.open(target, "wb") as out:
            shutil.copyfileobj(raw, out, _COPY_CHUNK)
    finally:
        copy.unlink(missing_ok=True)
    return DatabaseDump(
        file=target.name,
        sha256=sha256_file(target),
        bytes=target.stat().st_size,
        backend="sqlite",
        schema=None,
        tables=counts,
    )


def _restore_sqlite(source: Path, target: Path) -> dict[str, int]:
    if target.exists() and target.stat().st_size > 0:
        raise BackupError(f"{target} exists; restore into a new file")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    try:
        with gzip.open(source, "rb") as src, partial.open("wb") as out:
            shutil.copyfileobj(src, out, _COPY_CHUNK)
        with contextlib.closing(sqlite3.connect(partial)) as conn:
            check = conn.execute("PRAGMA integrity_check").fetchone()[0]
            if check != "ok":
                raise BackupError(f"the restored SQLite file fails its integrity check: {check}")
            counts = _sqlite_counts(conn)
        os.replace(partial, target)
    except (OSError, EOFError, gzip.BadGzipFile, sqlite3.DatabaseError) as exc:
        raise BackupError(f"{source.name} does not restore: {type(exc).__name__}: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return counts


def _pg_params(url: str | URL) -> dict[str, Any]:
    """libpq connection parameters of a SQLAlchemy URL, and the schema it works in."""
    parsed = make_url(url)
    query = dict(parsed.query)
    options = str(query.get("options", ""))
    schema = "public"
    for part in options.split():
        if part.startswith("-csearch_path="):
            schema = part.split("=", 1)[1].split(",")[0]
    return {
        "host": parsed.host or query.get("host"),
        "port": parsed.port,
        "user": parsed.username,
        "password": parsed.password,
        "dbname": parsed.database,
        "sslmode": query.get("sslmode"),
        "schema": schema,
        "redacted": redacted(url),
    }


def _pg_connect(params: dict[str, Any], *, autocommit: bool = False) -> psycopg.Connection:
    keys = ("host", "port", "user", "password", "dbname", "sslmode")
    kwargs = {k: params[k] for k in keys if params.get(k) is not None}
    try:
        return psycopg.connect(autocommit=autocommit, connect_timeout=10, **kwargs)
    except psycopg.Error as exc:
        detail = scrub(str(exc), params.get("password"), max_chars=DETAIL_CHARS)
        raise BackupError(f"cannot connect to {params['redacted']}: {detail}") from None


def _pg_env(params: dict[str, Any]) -> dict[str, str]:
    env = dict(os.environ)
    mapping = {
        "PGHOST": params.get("host"),
        "PGPORT": params.get("port"),
        "PGUSER": params.get("user"),
        "PGPASSWORD": params.get("password"),
        "PGDATABASE": params.get("dbname"),
        "PGSSLMODE": params.get("sslmode"),
    }
    for key, value in mapping.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    env["PGCONNECT_TIMEOUT"] = "10"
    return env


def _pg_tables(conn: psycopg.Connection, schema: str) -> list[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = %s AND table_type = 'BASE TABLE' ORDER BY table_name",
        (schema,),
    ).fetchall()
    return [r[0] for r in rows]


def _pg_counts(conn: psycopg.Connection, schema: str) -> dict[str, int]:
    counts = {}
    for name in _pg_tables(conn, schema):
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))
        counts[name] = conn.execute(query).fetchone()[0]  # type: ignore[index]
    return counts


def _dump_postgres(url: str, directory: Path) -> DatabaseDump:
    params = _pg_params(url)
    schema = params["schema"]
    target = directory / "records.pgdump"
    with _pg_connect(params) as conn:
        # Count in the very snapshot pg_dump dumps: the counts are the dump's, exactly.
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
        counts = _pg_counts(conn, schema)
        _run(
            [
                _tool("pg_dump"),
                "--format=custom",
                f"--snapshot={snapshot}",
                f"--schema={schema}",
                f"--file={target}",
            ],
            params,
            "pg_dump",
        )
        conn.rollback()
    return DatabaseDump(
        file=target.name,
        sha256=sha256_file(target),
        bytes=target.stat().st_size,
        backend="postgresql",
        schema=schema,
        tables=counts,
    )


def _pg_restore(source: Path, params: dict[str, Any], schema: str) -> None:
    argv = [
        _tool("pg_restore"),
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
        "--single-transaction",
        f"--dbname={params['dbname']}",
    ]
    with _pg_connect(params) as conn:
        exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    with contextlib.ExitStack() as stack:
        if exists:
            # A new database has "public" already: restore everything but its CREATE SCHEMA
            # (and that schema's comment), from the dump's own table of contents.
            listing = _run([_tool("pg_restore"), "--list", str(source)], params, "pg_restore")
            keep = [
                line
                for line in listing.splitlines()
                if not re.search(
                    rf"\b(SCHEMA - {re.escape(schema)}|COMMENT - SCHEMA {re.escape(schema)})\b",
                    line,
                )
            ]
            toc = source.with_name(f".{source.name}.{secrets.token_hex(4)}.toc")
            toc.write_text("\n".join(keep) + "\n")
            stack.callback(toc.unlink, missing_ok=True)
            argv.append(f"--use-list={toc}")
        _run([*argv, str(source)], params, "pg_restore")


@contextlib.contextmanager
def _scratch_database(source_url: str) -> Iterator[dict[str, Any]]:
    """A new, empty database on the source's server; dropped on the way out."""
    params = _pg_params(source_url)
    name = f"runbooks_verify_{secrets.token_hex(6)}"
    with _pg_connect(params, autocommit=True) as admin:
        try:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            detail = scrub(str(exc), params.get("password"), max_chars=DETAIL_CHARS)
            raise BackupError(
                f"cannot create a scratch database to verify the backup on {params['redacted']} "
                f"({detail}); the records role needs CREATEDB"
            ) from None
    try:
        yield {**params, "dbname": name, "redacted": f"scratch database {name}"}
    finally:
        with _pg_connect(params, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(
            f"{name} is not installed; install the PostgreSQL client "
            "(apt-get install postgresql-client) matching the server's major version"
        )
    return path


def _run(argv: list[str], params: dict[str, Any], what: str) -> str:
    try:
        done = subprocess.run(
            argv,
            env=_pg_env(params),
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BackupError(f"{what} did not finish within {SUBPROCESS_TIMEOUT_S} s") from None
    if done.returncode != 0:
        output = done.stderr.strip() or done.stdout.strip()
        detail = scrub(output, params.get("password"), max_chars=DETAIL_CHARS)
        raise BackupError(
            f"{what} failed (exit {done.returncode}) on {params['redacted']}: {detail}"
        )
    return done.stdout
