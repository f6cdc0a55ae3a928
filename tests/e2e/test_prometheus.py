"""A real Prometheus scrapes a real 2-worker API under traffic, counts exactly, and fires an alert.

`crimeflow api --workers 2` on a registry with a champion, and `prometheus` from the
distribution's package on a temp config: the API scraped every second, the repo's recording
rules, and the repo's alert rules with one change, the p99 budget of CrimeflowApiLatencyP99High
lowered from 50 ms to 0.1 ms and its `for` to 0 s (single predictions take milliseconds, so
ordinary traffic is over that budget). Two waves of /predict; then, through Prometheus' HTTP API:

- every scrape is accounted for: the k-th successful scrape (up == 1) reads exactly k earlier
  /metrics requests (a scrape is counted after its response), and the requests it counts apart
  from those are exactly the predictions sent (nothing else calls the API: no health probes);
- the predictions counter and the served model version are what was sent and registered;
- the alert is firing in /api/v1/alerts, with the recorded p99 over the lowered budget.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from crimeflow.cli.processes import ServiceProcess, free_port, log_tail, start, stop, wait_http
from crimeflow.cli.prometheus import (
    ScrapeJob,
    prometheus_command,
    prometheus_config,
    rule_files,
    write_prometheus_config,
)
from crimeflow.contract.settings import Settings, child_environment
from tests.e2e.test_api_workers import served_by, wait_for_workers
from tests.incidents import SODA

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WAVE = 40
CONCURRENCY = 8
JOB = "crimeflow-api"
ALERT = "CrimeflowApiLatencyP99High"
BUDGET_S = 0.05
TEST_BUDGET_S = 0.0001
TIMEOUT_S = 90.0


def lowered_alert_rules(folder: Path) -> Path:
    """The repo's alerts.yml with the p99 budget at TEST_BUDGET_S and no `for`; its path."""
    (source,) = [path for path in rule_files() if path.name == "alerts.yml"]
    rules = yaml.safe_load(source.read_text(encoding="utf-8"))
    changed = 0
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == ALERT:
                assert rule["expr"].endswith(f"> {BUDGET_S}"), rule["expr"]
                rule["expr"] = rule["expr"].replace(f"> {BUDGET_S}", f"> {TEST_BUDGET_S}")
                rule["for"] = "0s"
                changed += 1
    assert changed == 1
    path = folder / "alerts.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    return path


def start_prometheus(tmp_path: Path, api_target: str) -> tuple[ServiceProcess, str]:
    """`prometheus` scraping `api_target` every second with the (lowered) rules; its URL."""
    binary = shutil.which("prometheus")
    assert binary is not None
    recording = [path for path in rule_files() if path.name == "recording.yml"]
    rules = [*recording, lowered_alert_rules(tmp_path)]
    config = prometheus_config([ScrapeJob(JOB, (api_target,))], rules, interval_s=1)
    path = write_prometheus_config(tmp_path / "prometheus", config)
    port = free_port()
    command = prometheus_command(binary, path, tmp_path / "tsdb", "127.0.0.1", port)
    process = start("prometheus", command, child_environment({}), tmp_path / "prometheus.log")
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/-/ready", timeout_s=60, process=process)
    return process, url


def query(prometheus: str, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    """An instant query's result (vector or matrix) from Prometheus' HTTP API."""
    params: dict[str, Any] = {"query": expr}
    if at is not None:
        params["time"] = at
    response = httpx.get(f"{prometheus}/api/v1/query", params=params, trust_env=False)
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def scalar(prometheus: str, expr: str) -> float | None:
    """The one value of a single-series query, or None when it selects nothing."""
    result = query(prometheus, expr)
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


def wait_for(check: Callable[[], bool], what: str, report: Callable[[], str]) -> None:
    """Poll `check` every 0.5 s until it holds (bounded by TIMEOUT_S)."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}:\n{report()}")


async def predict(url: str, count: int) -> list[int]:
    """`count` POST /predict of one incident, CONCURRENCY at a time; their statuses."""
    body = json.dumps(SODA).encode()
    headers = {"content-type": "application/json"}
    # Fresh connections, so that the kernel hands them to both workers (keep-alive ones could
    # all stay with one).
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=url, limits=limits, timeout=30.0, trust_env=False
    ) as client:
        responses = await asyncio.gather(
            *(client.post("/predict", content=body, headers=headers) for _ in range(count))
        )
    return [response.status_code for response in responses]


def scrapes(prometheus: str, at: float) -> list[tuple[float, dict[str, float]]]:
    """Every successful scrape of the API up to `at`, oldest first: (time, count by route)."""
    up = query(prometheus, f'up{{job="{JOB}"}}[10m]', at)
    assert len(up) == 1, up
    times = [float(t) for t, value in up[0]["values"] if value == "1"]
    counts: dict[float, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for series in query(prometheus, "crimeflow_request_seconds_count[10m]", at):
        for t, value in series["values"]:
            counts[float(t)][series["metric"]["route"]] += float(value)
    return [(t, dict(counts[t])) for t in times]


def test_prometheus_counts_every_request_and_fires_the_p99_alert(
    registry_settings: Settings, tmp_path: Path
):
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    env = child_environment(
        {
            "CRIMEFLOW_HOME": str(registry_settings.home),
            "CRIMEFLOW_MLFLOW_TRACKING_URI": registry_settings.mlflow.tracking_uri,
            "CRIMEFLOW_MLFLOW_ARTIFACT_ROOT": registry_settings.mlflow.artifact_root,
        }
    )
    command = [sys.executable, "-m", "crimeflow", "api", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "2"]
    api_log = tmp_path / "api.log"
    api_process = start("crimeflow-api", command, env, api_log)
    prometheus_process, prometheus = start_prometheus(tmp_path, f"127.0.0.1:{port}")

    def report() -> str:
        return (
            f"scrapes {scrapes(prometheus, time.time())}\nalerts {alerts()}\n"
            f"api log:\n{log_tail(api_log, lines=10)}\n"
            f"prometheus log:\n{log_tail(prometheus_process.log_file, lines=10)}"
        )

    def predicted() -> float | None:
        return scalar(prometheus, 'sum(crimeflow_request_seconds_count{route="/predict"})')

    def alerts() -> list[dict[str, Any]]:
        response = httpx.get(f"{prometheus}/api/v1/alerts", trust_env=False)
        return response.json()["data"]["alerts"]

    try:
        # No HTTP probe of our own: the workers' startup lines, then Prometheus' first scrape.
        wait_for_workers(api_log, 2)
        wait_for(lambda: scalar(prometheus, f'up{{job="{JOB}"}}') == 1, "a scrape", report)
        statuses = asyncio.run(predict(api, WAVE))
        wait_for(lambda: predicted() == WAVE, f"{WAVE} predictions scraped", report)
        # A second wave after Prometheus saw the first: the [5m] rates see an increase.
        statuses += asyncio.run(predict(api, WAVE))
        wait_for(lambda: predicted() == 2 * WAVE, f"{2 * WAVE} predictions scraped", report)
        history = scrapes(prometheus, time.time())
        wait_for(
            lambda: any(
                a["labels"]["alertname"] == ALERT for a in alerts() if a["state"] == "firing"
            ),
            f"{ALERT} firing",
            report,
        )
        firing = [a for a in alerts() if a["labels"]["alertname"] == ALERT]
        p99 = scalar(prometheus, 'crimeflow:request_seconds:p99_5m{route="/predict"}')
        labelled = {
            label: scalar(prometheus, f'sum(crimeflow_predictions_total{{label="{label}"}})') or 0
            for label in ("true", "false")
        }
        version = scalar(prometheus, 'crimeflow_model_version{model="chicago-arrest"}')
        time.sleep(0.3)  # the access lines are written by a background thread
        predict_pids = served_by(api_log, "/predict")
    finally:
        stop(prometheus_process, timeout_s=20)
        stop(api_process, timeout_s=20)
    context = (
        f"history {history}\napi log:\n{log_tail(api_log, lines=10)}\n"
        f"prometheus log:\n{log_tail(prometheus_process.log_file, lines=10)}"
    )

    assert statuses == [200] * (2 * WAVE), context
    assert len(predict_pids) == 2, context  # both workers served, one set of metrics
    # Exact accounting of what was sent: every /predict, from both workers, and besides them only
    # the scrapes. Prometheus keeps only the scrapes that finished in time, while the API counted
    # every /metrics request, so the k-th kept scrape saw at least k before it.
    assert history, context
    seen = [counts.get("/metrics", 0.0) for _, counts in history]
    assert seen == sorted(seen) and all(n >= k for k, n in enumerate(seen)), context
    for _, counts in history:
        assert set(counts) <= {"/metrics", "/predict"}, context
    assert history[-1][1]["/predict"] == 2 * WAVE, context
    assert labelled["true"] + labelled["false"] == 2 * WAVE, labelled
    assert version == 1.0
    # The alert fires on the recorded p99 of /predict, which is over the lowered budget.
    assert p99 is not None and p99 > TEST_BUDGET_S, p99
    (alert,) = firing
    assert alert["state"] == "firing", firing
    assert alert["labels"]["route"] == "/predict"
    assert alert["labels"]["severity"] == "warning"
    assert "CrimeflowApiLatencyP99High" in alert["annotations"]["description"]
