"""Fixtures of the prediction log's tests: every behaviour runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa


@pytest.fixture
def anyio_backend() -> str:
    """Run the async tests on asyncio (what uvicorn uses)."""
    return "asyncio"


@pytest.fixture
def pg_log_url(postgres_url: str) -> Iterator[str]:
    """A URL whose unqualified tables live in a private schema of the session's database."""
    import psycopg

    base = sa.make_url(postgres_url)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    dsn = f"host=127.0.0.1 port=5432 user=postgres dbname={base.database}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    # search_path puts the log's table into the schema; application_name tags its sessions.
    url = base.update_query_dict(
        {"options": f"-csearch_path={schema}", "application_name": f"crimeflow-{schema}"}
    )
    yield url.render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store: a SQLite file, or a private schema in the PostgreSQL test database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'home' / 'predictions.db'}"
    return request.getfixturevalue("pg_log_url")
