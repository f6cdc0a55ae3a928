"""`crimeflow up` as a user runs it: every service answers, SIGTERM stops them all, exit 0.

A subprocess on free ports (settings through CRIMEFLOW_* variables, state in a temp home):
wait until the Prefect API, the serve process's deployments, the MLflow UI and the prediction
API answer (and Prometheus, scraping that API, when a `prometheus` binary is installed), send
SIGTERM, and check it exits 0 in time and no process it started is left.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crimeflow.cli.processes import (
    free_port,
    log_tail,
    read_stat,
    scan_processes,
    start,
    stop,
    wait_http,
)
from crimeflow.contract.settings import child_environment

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STARTUP_TIMEOUT_S = 240.0
EXIT_TIMEOUT_S = 90.0
# Settings of the developer's shell that would point the stack elsewhere.
REDIS_URL = "redis://127.0.0.1:6379/0"
UNSET = ("CRIMEFLOW_PREFECT_API_URL", "CRIMEFLOW_ALERT_WEBHOOK_URL", "PREFECT_API_URL")


def descendants(pid: int) -> set[int]:
    """Every live (non-zombie) process below `pid`, from /proc."""
    parents = {p.pid: p.ppid for p in scan_processes() if not p.zombie}
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        children = {child for child, parent in parents.items() if parent in frontier}
        frontier = children - found
        found |= children
    return found


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not count)."""
    stat = read_stat(pid)
    return stat is not None and not stat.zombie


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find child processes")
def test_up_starts_everything_and_sigterm_stops_it(tmp_path):
    ports = {"prefect": free_port(), "mlflow": free_port(), "api": free_port()}
    # With a `prometheus` binary installed, `up` starts it too (after the API it scrapes).
    with_prometheus = shutil.which("prometheus") is not None
    ports["prometheus"] = free_port()
    env = {k: v for k, v in child_environment({}).items() if k not in UNSET}
    env.update(
        CRIMEFLOW_HOME=str(tmp_path / "home"),
        CRIMEFLOW_PREFECT_PORT=str(ports["prefect"]),
        CRIMEFLOW_MLFLOW_PORT=str(ports["mlflow"]),
        CRIMEFLOW_API_PORT=str(ports["api"]),
        CRIMEFLOW_PROMETHEUS_PORT=str(ports["prometheus"]),
    )
    crimeflow = str(Path(sys.executable).with_name("crimeflow"))
    # From an empty folder: no .env of the checkout, nothing written outside the temp home.
    up = start("crimeflow-up", [crimeflow, "up"], env, tmp_path / "up.log", cwd=tmp_path)
    try:
        prefect = f"http://127.0.0.1:{ports['prefect']}"
        api = f"http://127.0.0.1:{ports['api']}"
        mlflow = f"http://127.0.0.1:{ports['mlflow']}"
        for url in (
            f"{prefect}/api/health",
            f"{mlflow}/health",
            # The serve process has registered its deployments (the drift-triggered one last).
            f"{prefect}/api/deployments/name/retrain/retrain",
            f"{api}/health",
        ):
            wait_http(url, timeout_s=STARTUP_TIMEOUT_S, process=up)
        wait_http(f"{api}/schema", timeout_s=30, process=up)
        prometheus = f"http://127.0.0.1:{ports['prometheus']}"
        if with_prometheus:
            wait_http(f"{prometheus}/-/ready", timeout_s=STARTUP_TIMEOUT_S, process=up)
            # Ready comes before the scrape manager has its targets: poll (bounded).
            expected = {("crimeflow-api", f"{api}/metrics")}
            deadline = time.monotonic() + 30
            while prometheus_targets(prometheus) != expected and time.monotonic() < deadline:
                time.sleep(0.5)
            assert prometheus_targets(prometheus) == expected
        # The banner comes after the last service answered; wait for it the same bounded way.
        wait_until_logged(up, "crimeflow is up", timeout_s=60)
        out = (tmp_path / "up.log").read_text()
        for url in (prefect, f"{prefect}/api", mlflow, api, f"{api}/schema"):
            assert url in out
        assert (f"Prometheus   {prometheus}" in out) is with_prometheus
        run_doctor_beside(env, tmp_path, mlflow)
        children = descendants(up.pid)
        # Prefect server, MLflow, serve, API and whatever they forked.
        assert len(children) >= 4, children

        os.kill(up.pid, signal.SIGTERM)
        try:
            code = up.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"crimeflow up did not exit within {EXIT_TIMEOUT_S} s:\n{log_tail(up.log_file)}"
            )
        assert code == 0, log_tail(up.log_file)
        left = {pid for pid in children if alive(pid)}
        assert not left, f"still running after crimeflow up exited: {left}"
        out = (tmp_path / "up.log").read_text()
        assert "stopped:" in out
        # Stopped newest first: the API before the serve process before MLflow before Prefect.
        order = out.rsplit("stopped:", 1)[1].splitlines()[0]
        assert [part.split()[0] for part in order.split(",")] == [
            *(["prometheus"] if with_prometheus else []),
            "api",
            "serve",
            "mlflow-ui",
            "prefect-server",
        ]
    finally:
        stop(up)


def run_doctor_beside(env: dict[str, str], tmp_path: Path, mlflow: str) -> None:
    """`crimeflow doctor` in a second terminal: every service of the running stack passes.

    Its MLflow check goes through the stack's MLflow server (the tracking server the
    production form's clients use), the SODA stand-in serves one generated month, and the
    local Redis (when it runs) counts the rate limit.
    """
    import redis

    from crimeflow.standins.generate import generate_incidents
    from crimeflow.standins.soda import StandinServer

    services = {**env, "CRIMEFLOW_MLFLOW_TRACKING_URI": mlflow}
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        services["CRIMEFLOW_REDIS_URL"] = REDIS_URL
    except redis.RedisError:
        pass  # the Redis line says SKIP, which passes too
    crimes = generate_incidents("2024-01", "2024-01", rows_per_month=50, seed=1)
    with StandinServer(crimes) as soda:
        services["CRIMEFLOW_SOCRATA_URL"] = soda.url
        crimeflow = str(Path(sys.executable).with_name("crimeflow"))
        began = time.monotonic()
        done = subprocess.run(
            [crimeflow, "doctor"],
            env=services,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == [
        "OK",
        "OK",
        "OK",
        "OK",
        "OK" if "CRIMEFLOW_REDIS_URL" in services else "SKIP",
        "OK",
    ], done.stdout
    assert "server and registry answer" in lines[1], lines[1]
    print(f"doctor beside crimeflow up: {time.monotonic() - began:.1f} s\n{done.stdout}")


def prometheus_targets(url: str) -> set[tuple[str, str]]:
    """(job, scrape URL) of every active target of the Prometheus at `url`."""
    import httpx

    response = httpx.get(f"{url}/api/v1/targets?state=active", timeout=10, trust_env=False)
    targets = response.json()["data"]["activeTargets"]
    return {(t["labels"]["job"], t["scrapeUrl"]) for t in targets}


def wait_until_logged(process, text: str, timeout_s: float) -> None:
    """Poll the process's log for `text` (bounded); fail with the log if it never shows."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in process.log_file.read_text():
            return
        if process.poll() is not None:
            break
        time.sleep(0.2)
    pytest.fail(f"{text!r} not in the log of {process.name}:\n{log_tail(process.log_file)}")
