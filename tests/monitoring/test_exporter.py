"""The loop exporter: samples read from a lake, report store and registry built here; failures
counted per source; `crimeflow exporter` answering /metrics over HTTP."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from crimeflow.cli.processes import free_port
from crimeflow.contract.settings import Settings
from crimeflow.domain.etl_run import manifest_key
from crimeflow.domain.retrain_run import GATE_DECIDED_AT_TAG, GATE_TAG, RETRAIN_SECONDS_TAG
from crimeflow.stores.lake import STATE_KEY, Lake
from crimeflow.stores.registry import CHAMPION, mlflow_client, set_alias
from monitoring.drift import DriftResult
from monitoring.exporter import EtlReader, default_readers, loop_registry
from monitoring.report_store import ReportStore
from tests.conftest import register_model
from tests.metrics_text import Samples, samples, value

REPO = Path(__file__).resolve().parents[2]


def month(name: str, raw: int, clean: int, quarantined: int) -> dict[str, Any]:
    """One month's counts as a run manifest holds them."""
    return {"month": name, "raw": raw, "clean": clean, "quarantined": quarantined}


def write_etl_runs(lake: Lake) -> None:
    """Two ETL runs: the second re-wrote 2024-05 (late arrests) and added 2024-06."""
    lake.write_json(
        manifest_key("run-1"),
        {"finished_at": "2024-06-02T03:00:00+00:00", "months": [month("2024-05", 100, 97, 3)]},
    )
    lake.write_json(
        manifest_key("run-2"),
        {
            "finished_at": "2024-07-02T03:00:00+00:00",
            "months": [month("2024-05", 104, 100, 4), month("2024-06", 90, 90, 0)],
        },
    )
    lake.write_json(STATE_KEY, {"last_success_at": "2024-07-02T03:00:00+00:00", "months": []})


def drift_result(detected: bool, share: float, columns: list[str]) -> DriftResult:
    """A drift check's result as the monitor stores it."""
    return DriftResult(
        status="drift" if detected else "no_drift",
        drift_detected=detected,
        drift_share=share,
        drift_share_threshold=0.25,
        drifted_columns=columns,
        columns=[],
        prediction_drift=None,
        performance=None,
        reasons=[],
        current_rows=500,
        reference_rows=900,
        sampled_current_rows=500,
        sampled_reference_rows=900,
        labelled_rows=0,
        window_start=None,
        window_end=None,
        model_version="1",
        checked_at=datetime(2024, 7, 3, 4, 0, tzinfo=UTC),
    )


def gate_tags(client: Any, name: str, version: str, verdict: str, seconds: str) -> None:
    """The tags a retrain leaves on the version it judged."""
    client.set_model_version_tag(name, version, GATE_TAG, verdict)
    client.set_model_version_tag(name, version, GATE_DECIDED_AT_TAG, datetime.now(UTC).isoformat())
    client.set_model_version_tag(name, version, RETRAIN_SECONDS_TAG, seconds)


@pytest.fixture
def loop_settings(registry_settings: Settings) -> Settings:
    """A lake with two ETL runs and a drift check; a registry with v1 and a promoted v2.

    v2 passed the gate (took 42.5 s) and is champion; v3 failed it later (took 61 s).
    """
    settings = registry_settings
    lake = Lake.from_settings(settings)
    write_etl_runs(lake)
    ReportStore(lake, settings.evidently.workspace).save(
        drift_result(True, 0.4, ["primary_type", "district"]), None
    )
    client = mlflow_client(settings)
    name = settings.model_name
    two, three = register_model(settings, seed=7), register_model(settings, seed=8)
    gate_tags(client, name, two, "passed", "42.5")
    set_alias(client, name, CHAMPION, two)
    client.set_model_version_tag(name, two, "promoted_at", "2024-07-04T05:00:00+00:00")
    gate_tags(client, name, three, "failed", "61.0")
    return settings


def scrape(readers: dict[str, Any]) -> Samples:
    """One scrape of a loop registry over `readers`."""
    registry, collector = loop_registry(readers, timeout_s=30)
    try:
        return samples(generate_latest(registry).decode())
    finally:
        collector.close()


def test_the_collector_reads_etl_drift_and_registry_state(loop_settings: Settings) -> None:
    readers = default_readers(loop_settings)
    readers.pop("prefect")  # its own test below
    found = scrape(readers)
    ts = datetime(2024, 7, 2, 3, tzinfo=UTC).timestamp()
    assert value(found, "crimeflow_etl_last_success_timestamp_seconds") == ts
    # 2024-05 as the newer run left it, not the older one.
    assert value(found, "crimeflow_etl_rows", month="2024-05", zone="raw") == 104
    assert value(found, "crimeflow_etl_rows", month="2024-05", zone="clean") == 100
    assert value(found, "crimeflow_etl_rows", month="2024-05", zone="quarantine") == 4
    assert value(found, "crimeflow_etl_rows", month="2024-06", zone="quarantine") == 0
    checked = datetime(2024, 7, 3, 4, tzinfo=UTC).timestamp()
    assert value(found, "crimeflow_drift_check_timestamp_seconds") == checked
    assert value(found, "crimeflow_drift_share") == 0.4
    assert value(found, "crimeflow_drift_detected") == 1
    assert value(found, "crimeflow_drifted_columns") == 2
    assert value(found, "crimeflow_gate_decisions", outcome="promoted") == 1
    assert value(found, "crimeflow_gate_decisions", outcome="rejected") == 1
    assert value(found, "crimeflow_champion_version", model="chicago-arrest") == 2
    promoted = datetime(2024, 7, 4, 5, tzinfo=UTC).timestamp()
    assert value(found, "crimeflow_champion_changed_timestamp_seconds", model="chicago-arrest") == (
        promoted
    )
    assert value(found, "crimeflow_retrain_duration_seconds") == 61.0  # the newest decision
    for source in ("etl", "drift", "registry"):
        assert value(found, "crimeflow_exporter_scrape_errors_total", source=source) == 0


def test_an_empty_lake_exports_no_etl_or_drift_samples(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", _env_file=None)
    readers = default_readers(settings)
    found = scrape({k: readers[k] for k in ("etl", "drift")})
    assert not [k for k in found if k[0].startswith(("crimeflow_etl", "crimeflow_drift"))]
    assert value(found, "crimeflow_exporter_scrape_errors_total", source="etl") == 0


def test_a_failing_or_hanging_source_is_counted_and_the_others_still_export() -> None:
    def broken() -> list[Any]:
        raise ConnectionError("registry down")

    def hung() -> list[Any]:
        time.sleep(3)
        return []

    from monitoring.exporter import _gauge

    registry, collector = loop_registry(
        {
            "etl": lambda: [_gauge("crimeflow_etl_rows", "x", 1.0)],
            "registry": broken,
            "prefect": hung,
        },
        timeout_s=0.5,
    )
    try:
        first = samples(generate_latest(registry).decode())
        second = samples(generate_latest(registry).decode())  # prefect still busy: not re-asked
    finally:
        collector.close()
    assert value(first, "crimeflow_etl_rows") == 1
    assert value(first, "crimeflow_exporter_scrape_errors_total", source="registry") == 1
    assert value(first, "crimeflow_exporter_scrape_errors_total", source="prefect") == 1
    assert value(first, "crimeflow_exporter_scrape_errors_total", source="etl") == 0
    assert value(second, "crimeflow_exporter_scrape_errors_total", source="prefect") == 2
    assert value(second, "crimeflow_etl_rows") == 1


def test_manifests_are_read_once_each(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    write_etl_runs(lake)
    reader = EtlReader(lake)
    reader()
    reads: list[str] = []
    original = lake.read_json
    lake.read_json = lambda key: reads.append(key) or original(key)  # type: ignore[method-assign]
    reader()
    assert reads == [STATE_KEY]  # the state every time, the immutable manifests from the cache


def test_retrain_last_failed_follows_the_newest_finished_retrain_run(tmp_path: Path) -> None:
    from prefect import flow
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from monitoring.exporter import prefect_metrics

    @flow(name="retrain")
    def retrain(fail: bool) -> None:
        if fail:
            raise RuntimeError("gate crashed")

    def last_failed(url: str) -> list[tuple[str, float]]:
        settings = Settings(home=tmp_path, prefect_api_url=url, _env_file=None)
        return [(s.name, s.value) for m in prefect_metrics(settings) for s in m.samples]

    with prefect_test_harness(server_startup_timeout=120):
        url = PREFECT_API_URL.value()
        assert last_failed(url) == [("crimeflow_retrain_last_failed", 0)]  # no retrain yet
        retrain(fail=True, return_state=True)
        assert last_failed(url) == [("crimeflow_retrain_last_failed", 1)]
        retrain(fail=False)
        assert last_failed(url) == [("crimeflow_retrain_last_failed", 0)]


# --- the command --------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.slow
def test_crimeflow_exporter_serves_parseable_metrics(loop_settings: Settings) -> None:
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "CRIMEFLOW_HOME": str(loop_settings.home),
        "CRIMEFLOW_MLFLOW_ARTIFACT_ROOT": loop_settings.mlflow.artifact_root,
        "CRIMEFLOW_EXPORTER_PORT": str(port),
        "PREFECT_HOME": str(loop_settings.home / "prefect"),
        # Nothing listens here: the prefect source fails and is counted; the rest exports.
        "CRIMEFLOW_PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "crimeflow", "exporter"],
        env=env,
        cwd=loop_settings.home,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        text = _get_metrics(port, process)
        found = samples(text)
        assert value(found, "crimeflow_champion_version", model="chicago-arrest") == 2
        assert value(found, "crimeflow_etl_rows", month="2024-06", zone="raw") == 90
        assert value(found, "crimeflow_drift_detected") == 1
        assert value(found, "crimeflow_exporter_scrape_errors_total", source="prefect") == 1
        assert value(found, "crimeflow_exporter_scrape_errors_total", source="registry") == 0
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert f"http://127.0.0.1:{port}/metrics" in output


def _get_metrics(port: int, process: subprocess.Popen[str], timeout_s: float = 60) -> str:
    """GET /metrics once the exporter answers."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
                return answer.read().decode()
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
