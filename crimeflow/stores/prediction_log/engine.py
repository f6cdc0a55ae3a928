"""Connections to the prediction log's store: a SQLite file (WAL) or a database server.

SQLite connections are configured for several writer processes on one file: a busy timeout, WAL
and the fsync level (`synchronous`, FULL by default: in WAL mode NORMAL does not fsync at
commit, so a power loss could drop acknowledged rows).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_PG_WRITABLE = "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'"


def is_sqlite(url: sa.URL) -> bool:
    """Whether the store is SQLite."""
    return url.get_backend_name() == "sqlite"


def sqlite_path(url: sa.URL) -> Path | None:
    """The SQLite database file, or None for in-memory/other stores."""
    database = url.database
    if not is_sqlite(url) or not database or database == ":memory:":
        return None
    return Path(database)


def create_engine(url: sa.URL, *, synchronous: str, busy_timeout_s: float) -> sa.Engine:
    """A pooled engine; SQLite connections are configured for several writer processes."""
    if not is_sqlite(url):
        return sa.create_engine(url, pool_pre_ping=True)
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        # The writer thread, feedback threads and readers each take their own connection.
        connect_args={"timeout": busy_timeout_s, "check_same_thread": False},
    )
    busy_ms = int(busy_timeout_s * 1000)

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # busy_timeout first: switching to WAL itself needs a lock another worker may hold.
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.close()

    return engine


def probe_writable(engine: sa.Engine) -> bool:
    """Take the write lock without writing (SQLite) or check the server is not read-only."""
    with engine.connect() as connection:
        if is_sqlite(engine.url):
            raw = connection.connection.driver_connection
            assert raw is not None
            # BEGIN IMMEDIATE takes the write lock, so a read-only or wedged file shows here.
            raw.execute("BEGIN IMMEDIATE")
            raw.rollback()
            return True
        if engine.url.get_backend_name() == "postgresql":
            return bool(connection.exec_driver_sql(_PG_WRITABLE).scalar())
        connection.exec_driver_sql("SELECT 1")
        return True
