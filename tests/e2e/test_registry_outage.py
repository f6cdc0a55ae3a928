"""A registry outage, as an orchestrator meets it: `crimeflow api` in its own process.

MLflow at a closed port: the API listens within seconds, `/health` is 200, `/ready` and
`/admin/reload` answer 503 with the (masked) reason at once, SIGTERM exits in a second or two.
MLflow that accepts connections and never answers: startup stops waiting for the model, and
SIGTERM ends the process within the drain budget while a reload still hangs.
(Before: ~4 minutes before the first connection was accepted, ~16 minutes to exit.)
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from crimeflow.cli.processes import ServiceProcess, free_port, log_tail, start, stop
from crimeflow.contract.settings import child_environment

pytestmark = [pytest.mark.e2e]

API_KEY = "outage-key"
PASSWORD = "mlpa55word"


def api(tmp_path: Path, tracking_uri: str, **env: str) -> tuple[ServiceProcess, str]:
    """`crimeflow api` (one worker) against `tracking_uri`; the process and its URL."""
    port = free_port()
    overrides = {
        "CRIMEFLOW_HOME": str(tmp_path / "home"),
        "CRIMEFLOW_MLFLOW_TRACKING_URI": tracking_uri,
        "CRIMEFLOW_API_KEY": API_KEY,
        **env,
    }
    command = [sys.executable, "-m", "crimeflow", "api", "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    process = start("crimeflow-api", command, child_environment(overrides), tmp_path / "api.log")
    return process, f"http://127.0.0.1:{port}"


def first_answer(url: str, process: ServiceProcess, limit_s: float) -> httpx.Response:
    """The first answer from `url` (polling while the server starts), within `limit_s`."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the API exited ({process.returncode}):\n{log_tail(process.log_file)}")
        try:
            return httpx.get(url, timeout=2, trust_env=False)
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail(f"no answer from {url} within {limit_s} s:\n{log_tail(process.log_file)}")


def sigterm_exit_seconds(process: ServiceProcess, limit_s: float) -> float:
    """SIGTERM the process and measure how long it takes to exit (fail past `limit_s`)."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=limit_s)
    return time.monotonic() - started


@pytest.fixture
def silent_registry() -> Iterator[str]:
    """A port that accepts connections (kernel backlog) and never answers a request."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_a_closed_registry_port_leaves_the_api_live_and_unready(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    process, url = api(tmp_path, f"http://ops:{PASSWORD}@127.0.0.1:{closed}")
    started = time.monotonic()
    try:
        health = first_answer(f"{url}/health", process, limit_s=20)
        health_s = time.monotonic() - started
        ready = httpx.get(f"{url}/ready", timeout=10, trust_env=False)
        ready_s = time.monotonic() - started
        model = httpx.get(f"{url}/model", timeout=10, trust_env=False)
        before = time.monotonic()
        reload = httpx.post(
            f"{url}/admin/reload", headers={"X-API-Key": API_KEY}, timeout=30, trust_env=False
        )
        reload_s = time.monotonic() - before
        exit_s = sigterm_exit_seconds(process, limit_s=30)
    finally:
        stop(process, timeout_s=10)
    timings = f"health {health_s:.1f} s, ready {ready_s:.1f} s, reload {reload_s:.1f} s"
    print(f"{timings}, exit {exit_s:.1f} s")
    # Python imports alone take a few seconds on a busy CI machine; the load adds nothing.
    assert health.status_code == 200 and health_s < 15, timings
    assert ready.status_code == 503 and ready_s < 16, timings
    assert "unreachable" in ready.json()["detail"]
    assert "CRIMEFLOW_MLFLOW_TRACKING_URI" in ready.json()["detail"]
    assert model.status_code == 503
    assert reload.status_code == 503 and reload_s < 10, timings
    assert process.returncode == 0 and exit_s < 5, timings
    for text in (ready.text, model.text, reload.text, log_tail(process.log_file, lines=400)):
        assert PASSWORD not in text


def test_sigterm_exits_within_the_drain_budget_while_a_reload_hangs(
    tmp_path: Path, silent_registry: str
) -> None:
    process, url = api(
        tmp_path,
        silent_registry,
        CRIMEFLOW_MLFLOW_REQUEST_TIMEOUT_S="120",  # the registry call would hang for minutes
        CRIMEFLOW_API_MODEL_LOAD_WAIT_S="1",
        CRIMEFLOW_API_DRAIN_TIMEOUT_S="2",
    )
    try:
        assert first_answer(f"{url}/health", process, limit_s=20).status_code == 200
        ready = httpx.get(f"{url}/ready", timeout=10, trust_env=False)
        hanging = threading.Thread(
            target=lambda: httpx.post(
                f"{url}/admin/reload", headers={"X-API-Key": API_KEY}, timeout=60, trust_env=False
            ),
            daemon=True,
        )
        hanging.start()
        time.sleep(0.5)  # the reload is in flight, waiting on the silent registry
        exit_s = sigterm_exit_seconds(process, limit_s=30)
    finally:
        stop(process, timeout_s=10)
    print(f"exit {exit_s:.1f} s with a hanging reload")
    assert ready.status_code == 503
    assert ready.json()["detail"] == "loading the model (champion of 'chicago-arrest')"
    # Drain budget 2 s: the reload is cancelled, the stuck registry thread abandoned.
    assert exit_s < 8, log_tail(process.log_file)
