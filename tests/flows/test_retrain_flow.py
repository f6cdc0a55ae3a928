"""The retraining flow in-process: gate, promotion, rejection, debounce, rollback (real MLflow)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from prefect.testing.fixtures import asserting_events_worker, reset_worker_events  # noqa: F401

from crimeflow.standins.generate import Drift, generate_incidents
from crimeflow.stores.lake import CLEAN_CRIMES, Lake
from crimeflow.stores.registry import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION
from flows.retrain import retrain, rollback
from flows.train import train

pytestmark = [
    pytest.mark.slow,
    pytest.mark.minutes,
    pytest.mark.usefixtures("hgb_candidate_only"),
]

PUBLIC = {
    "api_public_url": "https://crimeflow.example.org",
    "mlflow_public_url": "https://mlflow.example.org",
    "prefect_public_url": "https://prefect.example.org",
}


def write_months(settings, first: str, last: str, seed: int, drift: Drift | None = None) -> None:
    """Generated clean months in the lake, as the ETL leaves them."""
    frame = generate_incidents(first, last, rows_per_month=2000, seed=seed, drift=drift)
    lake = Lake.from_settings(settings)
    for month, rows in frame.groupby(frame["date"].dt.strftime("%Y-%m")):
        lake.write(CLEAN_CRIMES, rows.reset_index(drop=True), month)


@pytest.fixture
def champion(configure):
    """A champion trained on 2024-01..02 (holdout 03), and a newer drifted month 2024-04."""

    def make(**overrides):
        settings = configure(retrain_debounce_s=600, **overrides)
        write_months(settings, "2024-01", "2024-03", seed=3)
        train(until="2024-03", promote_if_none=True, classifier="logistic_regression")
        write_months(
            settings, "2024-04", "2024-05", seed=4, drift=Drift(location_vocabulary="modern")
        )
        return settings

    return make


def aliases(settings) -> dict[str, str]:
    client = MlflowClient(settings.mlflow.tracking_uri)
    model = client.get_registered_model(settings.model_name)
    return {alias: str(version) for alias, version in model.aliases.items()}


def test_a_better_candidate_is_promoted_and_tagged(champion):
    settings = champion(gate_min_improvement=-1.0)
    result = retrain(reason="manual", refresh=False, until="2024-05")
    assert result["promoted"], result["gate"]["reasons"]
    assert aliases(settings) == {CHAMPION: "2", CHALLENGER: "2", PREVIOUS_CHAMPION: "1"}
    tags = (
        MlflowClient(settings.mlflow.tracking_uri).get_model_version(settings.model_name, "2").tags
    )
    assert tags["gate"] == "passed"
    assert "2024-05" in tags["gate.staging"]
    assert 0 < float(tags["retrain.seconds"]) < 600  # how long this retrain took
    assert float(tags["gate.candidate.excluding_arrest_defined.roc_auc"]) > 0.5
    # The gate wrote its verdict into the candidate's model card, replacing "not staged".
    client = MlflowClient(settings.mlflow.tracking_uri)
    run_id = client.get_model_version(settings.model_name, "2").run_id
    card = Path(client.download_artifacts(run_id, "model_card.md")).read_text()
    gate = card.split("## Gate decision", 1)[1]
    assert gate.lstrip().startswith("**Promoted** to champion by the staging gate")
    assert "Not staged yet" not in card
    assert "Excluding the arrest-defined crime types" in gate
    assert card.count("## Known limitations") == 1


def test_a_candidate_below_the_floor_is_rejected_and_the_champion_stays(
    champion,
    asserting_events_worker,  # noqa: F811
):
    settings = champion(gate_min_roc_auc=0.999, **PUBLIC)
    result = retrain(reason="manual", refresh=False, until="2024-05")
    assert not result["promoted"]
    assert any(r.startswith("floor.roc_auc") for r in result["gate"]["reasons"])
    assert aliases(settings)[CHAMPION] == "1"
    asserting_events_worker.drain()
    [rejected] = [
        e for e in asserting_events_worker._client.events if e.event == "crimeflow.model.rejected"
    ]
    # What the rejected-model alert links: the candidate in MLflow and the retrain's run.
    payload = rejected.payload
    assert payload["mlflow_url"] == "https://mlflow.example.org/#/models/chicago-arrest/versions/2"
    assert payload["mlflow_run_url"].startswith("https://mlflow.example.org/#/experiments/")
    assert payload["flow_run_url"].startswith("https://prefect.example.org/runs/flow-run/")
    assert payload["report_url"] is None  # a manual retrain has no drift report


def test_a_drift_burst_retrains_once_and_rollback_restores(champion, configure):
    started = time.monotonic()
    champion()

    def drift_retrain(report_id: str, reason: str = "drift"):
        # The harness is shared by the session: debounce over this test's own runs only.
        configure(
            gate_min_improvement=-1.0, retrain_debounce_s=time.monotonic() - started, **PUBLIC
        )
        return retrain(
            reason=reason,
            drift_report_id=report_id,
            refresh=False,
            until="2024-05",
            return_state=True,
        )

    # A performance event right after a drift event is debounced with it: one retrain.
    first, second = drift_retrain("r1"), drift_retrain("r2", reason="performance")
    settings = configure(gate_min_improvement=-1.0)
    assert first.name == "Completed"
    assert first.result()["promoted"], first.result()["gate"]["reasons"]
    assert second.name == "Skipped" and "debounced" in second.message
    assert len(MlflowClient(settings.mlflow.tracking_uri).search_model_versions()) == 2

    assert rollback(reason="test") == {"champion": "1", "rolled_back": "2"}
    assert aliases(settings) == {CHAMPION: "1", CHALLENGER: "2", PREVIOUS_CHAMPION: "2"}
    tags = (
        MlflowClient(settings.mlflow.tracking_uri).get_model_version(settings.model_name, "2").tags
    )
    assert tags["rolled_back_reason"] == "test"
    # The gate's tags link back to the drift report and the retrain's Prefect run.
    assert tags["gate.report_url"] == "https://crimeflow.example.org/reports/r1"
    assert tags["gate.flow_run_url"].startswith("https://prefect.example.org/runs/flow-run/")


def test_a_scheduled_retrain_learns_the_new_month_and_rejects_a_candidate_no_better(champion):
    # The gate made strict: no candidate beats the champion by half a PR-AUC point, so the
    # candidate is "no better" and only the comparison with the champion may fail it.
    settings = champion(gate_min_improvement=0.5)
    # What the retrain-after-etl trigger runs once the ETL has written 2024-05 (the months are
    # in the lake already, written as the ETL leaves them: nothing to refresh).
    result = retrain(reason="schedule", refresh=False, until="2024-05")
    assert result["reason"] == "schedule"
    assert not result["promoted"]
    reasons = result["gate"]["reasons"]
    assert reasons and all(r.startswith("improvement.pr_auc") for r in reasons), reasons
    assert aliases(settings)[CHAMPION] == "1"
    version = result["trained_version"]
    tags = (
        MlflowClient(settings.mlflow.tracking_uri).get_model_version(settings.model_name, version)
    ).tags
    assert tags["gate"] == "failed" and tags["gate.trigger"] == "schedule"
    # The new month was not ignored: the candidate's window ends with it (its holdout).
    assert tags["training_months"] == "2024-01..2024-05"
    assert tags["holdout_months"] == "2024-05"
    assert "2024-05" in tags["gate.staging"]
