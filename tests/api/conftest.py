"""API-test fixtures: a throwaway PostgreSQL database on 127.0.0.1 for the whole session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

# Trust auth, user postgres, database `test` (how PostgreSQL runs on these machines and in CI).
POSTGRES_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of a fresh PostgreSQL database, dropped after the session."""
    psycopg = pytest.importorskip("psycopg")
    from psycopg import sql

    name = f"crimeflow_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.OperationalError as error:
        pytest.skip(f"PostgreSQL is not reachable ({POSTGRES_ADMIN_DSN}): {error}")
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as admin:
        # FORCE: a pool a failed test left open must not keep the database alive.
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
