"""The drift monitor flow: a trained champion, logged traffic, the verdict, report and events."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from prefect.testing.fixtures import asserting_events_worker, reset_worker_events  # noqa: F401

from crimeflow.contract.incident import incidents_from_frame
from crimeflow.standins.generate import Drift, generate_incidents
from crimeflow.stores.lake import CLEAN_CRIMES, Lake
from crimeflow.stores.prediction_log import (
    PredictionLog,
    PredictionRecord,
    new_prediction_id,
)
from crimeflow.stores.registry import CHAMPION, load_model
from flows.monitor import drift_monitor
from flows.train import train
from monitoring.report_store import ReportStore


@pytest.fixture
def champion(configure):
    """A lake of four generated months and a champion trained on it (with its reference)."""
    settings = configure()
    frame = generate_incidents("2024-01", "2024-04", rows_per_month=1500, seed=21)
    lake = Lake.from_settings(settings)
    for month, rows in frame.groupby(frame["date"].dt.strftime("%Y-%m")):
        lake.write(CLEAN_CRIMES, rows.reset_index(drop=True), month)
    train(holdout_months=1, promote_if_none=True, classifier="logistic_regression")
    return settings


def log_traffic(settings, incidents: pd.DataFrame, served_at: datetime) -> None:
    """Score incidents with the champion and log them as the API would."""
    loaded = load_model(settings, CHAMPION)
    proba = loaded.model.predict_proba(incidents)[:, 1]
    records = [
        PredictionRecord(
            prediction_id=new_prediction_id(),
            served_at=served_at,
            model_name=loaded.name,
            model_version=loaded.version,
            request_id=None,
            probability=float(p),
            label=bool(p >= loaded.model.decision_threshold_),
            incident=features,
        )
        for p, features in zip(proba, incidents_from_frame(incidents), strict=True)
    ]

    async def write() -> None:
        log = PredictionLog.from_settings(settings)
        await log.start()
        try:
            await log.append(records)
        finally:
            await log.stop()

    asyncio.run(write())


def sent_events(worker) -> list:
    worker.drain()
    return [e for e in worker._client.events if e.event.startswith("crimeflow.")]


def test_fresh_traffic_from_the_reference_distribution_is_no_drift(
    champion,
    asserting_events_worker,  # noqa: F811
):
    incidents = generate_incidents("2024-05", "2024-05", rows_per_month=1200, seed=99)
    log_traffic(champion, incidents, datetime.now(UTC) - timedelta(hours=2))
    result = drift_monitor(window_days=1)
    assert result["drift_detected"] is False
    assert result["status"] == "no_drift"
    [checked] = sent_events(asserting_events_worker)
    assert checked.event == "crimeflow.drift.checked"
    assert checked.payload["drift_detected"] is False


PUBLIC_API = "https://crimeflow.example.org"
PUBLIC_PREFECT = "https://prefect.example.org"


def test_a_type_mix_shift_is_drift_with_report_and_events(
    champion,
    configure,
    asserting_events_worker,  # noqa: F811
):
    configure(api_public_url=f"{PUBLIC_API}/", prefect_public_url=PUBLIC_PREFECT)
    drift = Drift.parse("type_mix=NARCOTICS:6,THEFT:0.3;location_vocabulary=modern")
    incidents = generate_incidents("2024-05", "2024-05", rows_per_month=1200, seed=7, drift=drift)
    log_traffic(champion, incidents, datetime.now(UTC) - timedelta(hours=2))
    result = drift_monitor(window_days=1)

    assert result["drift_detected"] is True
    assert "primary_type" in result["drifted_columns"]
    events = {e.event: e for e in sent_events(asserting_events_worker)}
    assert set(events) == {"crimeflow.drift.checked", "crimeflow.drift.detected"}
    detected = events["crimeflow.drift.detected"]
    assert detected.resource.id == "crimeflow.model.chicago-arrest"
    assert detected.related[0].id == "crimeflow.model-version.chicago-arrest.1"
    payload = detected.payload
    assert payload["report_id"] == result["report_id"]
    # The links a person opens, at the public URLs (never the API's bind address).
    assert payload["report_url"] == result["report_url"]
    assert payload["report_url"] == f"{PUBLIC_API}/reports/{result['report_id']}"
    assert payload["flow_run_url"].startswith(f"{PUBLIC_PREFECT}/runs/flow-run/")
    assert payload["mlflow_url"] == "http://127.0.0.1:5000/#/models/chicago-arrest/versions/1"
    assert "primary_type" in payload["drifted_columns"].split(",")
    assert all(isinstance(v, str | int | float | bool) for v in payload.values() if v is not None)

    store = ReportStore(Lake.from_settings(champion), champion.evidently.workspace)
    assert store.latest()["id"] == result["report_id"]
    assert b"<html" in store.html(result["report_id"]).lower()


def test_a_tiny_window_is_insufficient_data_not_no_drift(
    champion,
    asserting_events_worker,  # noqa: F811
):
    incidents = generate_incidents("2024-05", "2024-05", rows_per_month=30, seed=3)
    log_traffic(champion, incidents, datetime.now(UTC) - timedelta(hours=2))
    result = drift_monitor(window_days=1)
    assert result["drift_detected"] is None
    assert result["status"] == "insufficient_data"
    assert [e.event for e in sent_events(asserting_events_worker)] == ["crimeflow.drift.checked"]


def test_an_explicit_window_excludes_older_traffic(champion):
    incidents = generate_incidents("2024-05", "2024-05", rows_per_month=300, seed=4)
    log_traffic(champion, incidents, datetime(2025, 1, 10, tzinfo=UTC))
    inside = drift_monitor(since="2025-01-10T00:00:00", until="2025-01-11T00:00:00")
    outside = drift_monitor(since="2025-01-11T00:00:00", until="2025-01-12T00:00:00")
    assert inside["current_rows"] == 300
    assert outside["current_rows"] == 0


def test_cli_monitor_json_and_the_verdict_artifact(champion, configure):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from typer.testing import CliRunner

    from crimeflow.cli.main import app

    incidents = generate_incidents("2024-05", "2024-05", rows_per_month=400, seed=8)
    log_traffic(champion, incidents, datetime.now(UTC) - timedelta(hours=1))
    configure(api_host="0.0.0.0", api_public_url=PUBLIC_API)
    done = CliRunner().invoke(app, ["monitor", "--window-days", "1", "--json"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.output[done.output.index("{") :])
    assert {"drift_detected", "drift_share", "drifted_columns", "report_id", "current_rows"} <= set(
        result
    )
    assert result["current_rows"] == 400
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["drift-check"]))
        )
    [verdict] = [a for a in artifacts if result["report_id"] in a.data]
    assert f"[open the report]({PUBLIC_API}/reports/{result['report_id']})" in verdict.data
    assert "0.0.0.0" not in verdict.data


CONCEPT_DRIFT = Drift(type_arrest_odds={"THEFT": 8.0, "NARCOTICS": 0.001})


def test_a_concept_change_is_invisible_until_the_lake_has_the_outcomes(
    champion,
    asserting_events_worker,  # noqa: F811
):
    # Same incidents as before, arrests at other rates; ids apart from the training months'.
    incidents = generate_incidents(
        "2024-05", "2024-05", rows_per_month=1200, seed=41, drift=CONCEPT_DRIFT
    )
    incidents["id"] = range(900_001, 900_001 + len(incidents))
    log_traffic(champion, incidents, datetime.now(UTC) - timedelta(hours=2))

    # No outcomes yet: only the estimate, which trusts the champion and sees nothing wrong.
    before = drift_monitor(window_days=1)
    (window,) = before["outcome_performance"]["windows"]
    assert (window["window"], window["basis"], window["mature"]) == ("2024-05", "estimated", 0)
    assert before["drift_detected"] is False and before["performance_degraded"] == []

    # The ETL brings the month's arrest flags: realized performance shows the drop.
    Lake.from_settings(champion).write(CLEAN_CRIMES, incidents, "2024-05")
    after = drift_monitor(window_days=1)
    (window,) = after["outcome_performance"]["windows"]
    assert (window["basis"], window["mature"]) == ("realized", 1200)
    assert window["degraded"] is True
    assert after["drift_detected"] is False  # the inputs never moved
    # Both runs' events (the test worker is drained once): two checks, one degradation.
    events = sent_events(asserting_events_worker)
    assert sorted(e.event for e in events) == [
        "crimeflow.drift.checked",
        "crimeflow.drift.checked",
        "crimeflow.performance.degraded",
    ]
    (degraded,) = [e for e in events if e.event == "crimeflow.performance.degraded"]
    assert degraded.resource.id == "crimeflow.model.chicago-arrest"
    payload = degraded.payload
    baseline = after["outcome_performance"]["baseline_pr_auc"]
    assert (payload["metric"], payload["basis"]) == ("pr_auc", "realized")
    assert payload["window"] == "2024-05"
    assert payload["champion_baseline"] == baseline
    assert payload["value"] < baseline - 0.05
    assert payload["report_id"] == after["report_id"]
    store = ReportStore(Lake.from_settings(champion), champion.evidently.workspace)
    assert b"crimeflow-performance" in store.html(after["report_id"])
    assert store.result(after["report_id"]).outcome_performance["windows"][0]["degraded"]
