"""E2E fixtures: one real Prefect server (SQLite, its own PREFECT_HOME, a free port) per session."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from crimeflow.cli.prefect_server import prefect_environment, start_prefect_server
from crimeflow.cli.processes import free_port, stop
from crimeflow.contract.settings import Settings


@dataclass(frozen=True)
class PrefectServer:
    """A running local Prefect server and the environment that points a process at it."""

    api_url: str
    home: Path
    env: dict[str, str]


@contextmanager
def _running_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """`prefect server start` on 127.0.0.1 with its own home and port, stopped afterwards."""
    home = tmp_path_factory.mktemp("prefect-server") / "home"
    settings = Settings(home=home, _env_file=None)
    process, api_url = start_prefect_server(settings, free_port(), home / "prefect-server.log")
    try:
        yield PrefectServer(api_url, home, prefect_environment(settings, api_url))
    finally:
        stop(process)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """One real Prefect server shared by the e2e tests that only add to it."""
    with _running_server(tmp_path_factory) as server:
        yield server


@pytest.fixture(scope="session")
def private_prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A second server, for the retrain loop alone: `prefect deploy` on the shared one replaces
    same-named deployments, and a served deployment must stay the serve process's. Session
    scope: it outlives the flow tests' harness, whose teardown drains every events worker."""
    with _running_server(tmp_path_factory) as server:
        yield server


@pytest.fixture(scope="session")
def performance_prefect_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PrefectServer]:
    """A server for the performance loop alone: it serves its own `retrain` deployment and
    trigger, which must not meet the drift loop's (same reasons as `private_prefect_server`)."""
    with _running_server(tmp_path_factory) as server:
        yield server


@pytest.fixture
def prefect_api(prefect_server: PrefectServer) -> Iterator[str]:
    """Point this test process's Prefect client at the session's server; its API URL."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # Prefect reads its settings once per context, so an env change alone would not reach it.
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        yield prefect_server.api_url
