"""API-test fixtures: a throwaway PostgreSQL database on 127.0.0.1 for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import fresh_postgres_database


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of a fresh PostgreSQL database, dropped after the session."""
    with fresh_postgres_database("crimeflow_test") as url:
        yield url
