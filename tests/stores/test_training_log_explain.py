"""The training run's global importance: logged to MLflow as CSV, PNG and params."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from crimeflow.domain.explain import READABLE
from crimeflow.domain.model import ModelConfig, time_split, train_model
from crimeflow.standins.generate import generate_incidents
from crimeflow.stores.training_log import log_global_importance


@pytest.fixture
def tracking(tmp_path: Path) -> Iterator[str]:
    """A throwaway SQLite tracking store, the previous URI restored afterwards."""
    previous = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        yield uri
    finally:
        mlflow.set_tracking_uri(previous)


def test_global_importance_is_logged_with_the_run(tracking: str, tmp_path: Path) -> None:
    frame = generate_incidents("2024-01", "2024-03", rows_per_month=800, seed=3)
    train, valid, holdout = time_split(frame, 1, 1)
    trained = train_model(train, valid, ModelConfig(classifier="logistic_regression", n_jobs=1))
    experiment = mlflow.create_experiment("explain", artifact_location=(tmp_path / "a").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        log_global_importance(trained, holdout, seed=0)
    client = MlflowClient(tracking)
    paths = {a.path for a in client.list_artifacts(run.info.run_id, "explanations")}
    assert paths == {"explanations/global_importance.csv", "explanations/global_importance.png"}
    csv = client.download_artifacts(run.info.run_id, "explanations/global_importance.csv")
    importance = pd.read_csv(csv)
    assert importance["feature"].isin(READABLE.values()).all()
    assert importance["share"].sum() == pytest.approx(1.0)
    assert importance["mean_abs_contribution"].is_monotonic_decreasing
    params = client.get_run(run.info.run_id).data.params
    assert params["explanation.scale"] == "log-odds before calibration"
    assert params["explanation.method"].startswith("linear")
