"""Two uvicorn workers share one rate limit (in Redis) and one set of metrics (multiprocess).

The real thing: `crimeflow api --workers 2` in its own process, a limit of LIMIT requests a
minute counted in the Redis on 127.0.0.1:6379 (a database of its own, its keys deleted first),
SENT requests over fresh connections so that both workers answer some (each access-log line
names the worker's pid). Exactly LIMIT get 200, the rest 429, and `/metrics` from either worker
counts every request that was sent. Then the supervisor is SIGKILLed (the OOM killer, `kill -9`,
a container runtime): its workers must follow it (`api.server.exit_with_parent`) and free the
port, where uvicorn's own workers would go on serving and the next start would fail with
"address in use".
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from redis.exceptions import RedisError

from api.observability import RATE_LIMIT_KEY_PREFIX
from crimeflow.cli.processes import free_port, log_tail, start, stop, wait_http
from crimeflow.contract.settings import Settings, child_environment

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LIMIT = 30
SENT = 48
CONCURRENCY = 12
# A database no other test of the project uses; this test deletes only the limiter's keys.
REDIS_URL = "redis://127.0.0.1:6379/13"
ROUTE = "/model"


GONE_WITHIN_S = 5.0


def children(pid: int) -> set[int]:
    """The live (not zombie) processes whose parent is `pid`."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def accepts(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def workers_outlive(port: int, workers: set[int]) -> tuple[bool, list[int]]:
    """After their supervisor died: (whether the port is still held, workers still alive)."""
    deadline = time.monotonic() + GONE_WITHIN_S
    while time.monotonic() < deadline and (accepts(port) or any(map(alive, workers))):
        time.sleep(0.1)
    return accepts(port), sorted(filter(alive, workers))


def access_lines(log_file: Path) -> list[dict[str, Any]]:
    """The server's JSON log lines."""
    lines = []
    for line in log_file.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def wait_for_workers(log_file: Path, count: int, timeout_s: float = 120.0) -> None:
    """Until `count` workers have logged their startup (each then accepts connections)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        started = [line for line in access_lines(log_file) if line.get("event") == "startup"]
        if len(started) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"{count} workers did not start:\n{log_tail(log_file)}")


async def send_all(url: str) -> Counter[int]:
    """SENT GETs of ROUTE, CONCURRENCY at a time, each on a fresh connection; their statuses."""
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=0)
    statuses: Counter[int] = Counter()
    async with httpx.AsyncClient(
        base_url=url, limits=limits, timeout=30.0, trust_env=False
    ) as client:
        responses = await asyncio.gather(*(client.get(ROUTE) for _ in range(SENT)))
    statuses.update(r.status_code for r in responses)
    return statuses


def route_counts(metrics_text: str) -> Counter[str]:
    """Requests of ROUTE by status, from the latency histogram's counts."""
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "crimeflow_request_seconds_count" and sample.labels["route"] == ROUTE:
                counts[sample.labels["status"]] += int(sample.value)
    return counts


def served_by(log_file: Path, route: str) -> set[int]:
    """The pids of the workers that answered `route`."""
    return {line["pid"] for line in access_lines(log_file) if line.get("route") == route}


def test_two_workers_share_the_rate_limit_and_the_metrics(
    registry_settings: Settings, tmp_path: Path
):
    try:
        redis = Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        stale = list(redis.scan_iter(match=RATE_LIMIT_KEY_PREFIX + "*"))
    except RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    if stale:
        redis.delete(*stale)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    workers: set[int] = set()
    env = child_environment(
        {
            "CRIMEFLOW_HOME": str(registry_settings.home),
            "CRIMEFLOW_MLFLOW_TRACKING_URI": registry_settings.mlflow.tracking_uri,
            "CRIMEFLOW_MLFLOW_ARTIFACT_ROOT": registry_settings.mlflow.artifact_root,
            "CRIMEFLOW_RATE_LIMIT_PER_MINUTE": str(LIMIT),
            "CRIMEFLOW_REDIS_URL": REDIS_URL,
        }
    )
    # A stale metrics file of an earlier run: the server must not count it.
    metrics_dir = registry_settings.home / "api-metrics"
    metrics_dir.mkdir(parents=True)
    (metrics_dir / "counter_1.db").write_bytes(b"\0" * 64)
    command = [sys.executable, "-m", "crimeflow", "api", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "2"]
    log_file = tmp_path / "api.log"
    process = start("crimeflow-api", command, env, log_file)
    try:
        wait_http(f"{url}/health", timeout_s=120, process=process)
        wait_for_workers(log_file, 2)
        statuses = asyncio.run(send_all(url))
        scrapes, ready = [], []
        # Fresh connections until both workers have answered a scrape (each shows all counts).
        for _ in range(40):
            with httpx.Client(base_url=url, trust_env=False) as client:
                text = client.get("/metrics").text
            scrapes.append(route_counts(text))
            ready.append('crimeflow_ready{reason=""} 1.0' in text)
            time.sleep(0.05)
            if len(served_by(log_file, "/metrics")) == 2:
                break
        time.sleep(0.3)  # the access lines are written by a background thread
        model_pids, metrics_pids = served_by(log_file, ROUTE), served_by(log_file, "/metrics")
        workers = children(process.pid)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
        held, left = workers_outlive(port, workers)
    finally:
        stop(process, timeout_s=20)
        for pid in workers:  # never leave a worker behind, whatever the outcome
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        used = list(redis.scan_iter(match=RATE_LIMIT_KEY_PREFIX + "*"))
        if used:
            redis.delete(*used)
        redis.close()
    report = f"statuses {statuses}, scrapes {scrapes}\n{log_tail(log_file, lines=12)}"

    # Both workers served the limited route, and together they let exactly LIMIT through.
    assert len(model_pids) == 2, report
    assert statuses == Counter({200: LIMIT, 429: SENT - LIMIT}), report
    # Every scrape, from either worker, counts every request sent (and nothing stale).
    assert len(metrics_pids) == 2, report
    assert all(s == Counter({"200": LIMIT, "429": SENT - LIMIT}) for s in scrapes), report
    assert not (metrics_dir / "counter_1.db").exists()
    # Both workers ready (the minimum over them is 1); stopped workers took their live gauges.
    assert all(ready), report
    assert not list(metrics_dir.glob("gauge_live*")), sorted(metrics_dir.iterdir())
    # The killed supervisor's workers drained and exited: nothing holds the port.
    assert len(workers) >= 2 and not held and not left, f"port held: {held}, alive: {left}"
