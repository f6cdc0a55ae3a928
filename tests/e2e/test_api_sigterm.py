"""SIGTERM under load: the API drains, exits 0, and every prediction it answered 200 is logged.

The real thing, as an orchestrator does it: `crimeflow api` in its own process (1 uvicorn
worker), 16 concurrent clients sending single-row POST /predict, SIGTERM to the server in the
middle of it, clients keep going until the server stops accepting connections. Requests in
flight at that moment either complete with 200 (and must be in the log) or fail without a 200
(and may be absent), so the log must hold exactly as many rows as 200 responses were received.
Run against SQLite (the default log) and PostgreSQL on 127.0.0.1 (skipped when unreachable).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from crimeflow.cli.processes import ServiceProcess, free_port, log_tail, start, stop, wait_http
from crimeflow.contract.settings import Settings, child_environment
from crimeflow.stores.prediction_log import PredictionLog
from tests.conftest import fresh_postgres_database

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CLIENTS = 16
LOAD_BEFORE_SIGTERM_S = 3.0
# Upper bound on the whole drive; a healthy drain ends within a second or two.
DRIVE_LIMIT_S = 60.0
EXIT_LIMIT_S = 60.0


@dataclass
class LoadOutcome:
    """What the clients saw."""

    ok: int = 0
    ok_before_signal: int = 0
    ok_after_signal: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: Counter[str] = field(default_factory=Counter)
    stopped_by_refusal: int = 0


def incident_bodies(count: int = 500) -> list[bytes]:
    """Generated incidents as SODA JSON bodies (strings, missing fields left out)."""
    from crimeflow.standins.generate import generate_incidents, to_soda_strings

    frame = generate_incidents("2024-04", "2024-04", rows_per_month=count, seed=41)
    records = to_soda_strings(frame.drop(columns=["arrest"])).to_dict("records")
    return [json.dumps({k: v for k, v in r.items() if v is not None}).encode() for r in records]


async def load_then_sigterm(
    url: str, process: ServiceProcess, bodies: list[bytes], signal_after_s: float
) -> LoadOutcome:
    """Drive /predict from CLIENTS connections; SIGTERM the server midway; count the answers."""
    outcome = LoadOutcome()
    signalled = asyncio.Event()
    hard_deadline = time.monotonic() + DRIVE_LIMIT_S
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)

    async def client_loop(client: httpx.AsyncClient, index: int) -> None:
        position = index
        while time.monotonic() < hard_deadline:
            body = bodies[position % len(bodies)]
            position += CLIENTS
            try:
                response = await client.post("/predict", content=body, headers=headers)
            except httpx.ConnectError:
                if signalled.is_set():
                    # The server no longer accepts connections: this client is done.
                    outcome.stopped_by_refusal += 1
                    return
                outcome.transport_errors["connect before signal"] += 1
                await asyncio.sleep(0.01)
                continue
            except httpx.TransportError as error:
                # Failed without an answer (e.g. a keep-alive connection closed by the drain).
                outcome.transport_errors[type(error).__name__] += 1
                continue
            if response.status_code == 200:
                outcome.ok += 1
                if signalled.is_set():
                    outcome.ok_after_signal += 1
            else:
                outcome.statuses[response.status_code] += 1

    async with httpx.AsyncClient(
        base_url=url, limits=limits, timeout=30.0, trust_env=False
    ) as client:
        tasks = [asyncio.create_task(client_loop(client, i)) for i in range(CLIENTS)]
        await asyncio.sleep(signal_after_s)
        outcome.ok_before_signal = outcome.ok
        # Only the server process, as an orchestrator signals a container's main process.
        process.send_signal(signal.SIGTERM)
        signalled.set()
        await asyncio.gather(*tasks)
    return outcome


@pytest.fixture
def postgres_log_url() -> Iterator[str]:
    """A fresh PostgreSQL database for the log (127.0.0.1, user postgres), dropped after."""
    with fresh_postgres_database("crimeflow_sigterm") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request: pytest.FixtureRequest, registry_settings: Settings) -> str:
    """The prediction log's URL: SQLite under the home, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return registry_settings.prediction_log.url
    return request.getfixturevalue("postgres_log_url")


def test_sigterm_under_load_exits_cleanly_and_loses_no_answered_prediction(
    registry_settings: Settings, log_url: str, tmp_path: Path
):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = child_environment(
        {
            "CRIMEFLOW_HOME": str(registry_settings.home),
            "CRIMEFLOW_MLFLOW_TRACKING_URI": registry_settings.mlflow.tracking_uri,
            "CRIMEFLOW_MLFLOW_ARTIFACT_ROOT": registry_settings.mlflow.artifact_root,
            "CRIMEFLOW_PREDICTION_LOG_URL": log_url,
            # The clients all come from 127.0.0.1: the limiter must not turn them away.
            "CRIMEFLOW_RATE_LIMIT_PER_MINUTE": "0",
        }
    )
    command = [sys.executable, "-m", "crimeflow", "api", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "1"]
    process = start("crimeflow-api", command, env, tmp_path / "api.log")
    try:
        wait_http(f"{url}/ready", timeout_s=120, process=process)
        outcome = asyncio.run(
            load_then_sigterm(url, process, incident_bodies(), LOAD_BEFORE_SIGTERM_S)
        )
        exit_code = process.wait(timeout=EXIT_LIMIT_S)
    finally:
        stop(process, timeout_s=10)
    log = PredictionLog(log_url)
    try:
        logged = log.count()
    finally:
        log.engine.dispose()
    report = (
        f"{outcome}\nlogged rows: {logged}, exit code: {exit_code}\n"
        f"server log tail:\n{log_tail(process.log_file, lines=8)}"
    )

    # The load really ran, and requests were in flight when the signal came.
    assert outcome.ok_before_signal >= 50, report
    assert outcome.ok_after_signal >= 1, report
    # Every client ended because the server stopped accepting, not because time ran out.
    assert outcome.stopped_by_refusal == CLIENTS, report
    # Refusing during the drain (503) is allowed; a crash of a half-shut server (500) is not.
    assert set(outcome.statuses) <= {503}, report
    # Nothing answered 200 is missing from the log, and nothing unanswered is in it.
    assert logged == outcome.ok, report
    # Graceful: the server drained and exited by itself, with success.
    assert exit_code == 0, report
