"""Prefect tasks of the training flow: read the window, fit, evaluate, log and register."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import get_run_logger, runtime
from prefect.artifacts import create_markdown_artifact

from crimeflow.contract.links import Links
from crimeflow.contract.settings import Settings
from crimeflow.domain.audit_report import MAP_ARTIFACT, HoldoutAudit, audit_markdown, holdout_audit
from crimeflow.domain.evaluate import evaluate
from crimeflow.domain.model import ModelConfig, TrainedModel, train_model
from crimeflow.domain.training_run import (
    RegisteredModel,
    TrainingWindow,
    newest_months,
    summary_markdown,
)
from crimeflow.stores.files import read_stations_file
from crimeflow.stores.lake import CLEAN_CRIMES, RAW_STATIONS, STATE_KEY, Lake
from crimeflow.stores.training_log import log_audit, log_training_run
from tasks import step


@step
def load_training_window(lake: Lake, until: str | None, window_months: int) -> TrainingWindow:
    """Read the newest `window_months` clean months up to `until` from the lake, with lineage."""
    months = newest_months(lake.months(CLEAN_CRIMES), until, window_months)
    if not months:
        raise ValueError(f"no clean months in {lake.url} up to {until}: run the ETL first")
    frame = lake.read_months(CLEAN_CRIMES, months)
    state = lake.read_json(STATE_KEY) or {}
    lineage = {
        "lake_url": lake.url,
        "zone": CLEAN_CRIMES,
        "months": months,
        "clean_sha256": {m: lake.content_hash(CLEAN_CRIMES, m) for m in months},
        "etl_run_id": state.get("last_run_id"),
        "rows": len(frame),
    }
    get_run_logger().info("training window %s..%s: %s rows", months[0], months[-1], len(frame))
    return TrainingWindow(frame, months, lineage)


@step
def load_stations(lake: Lake) -> pd.DataFrame:
    """The stations snapshot the ETL used (the packaged copy when the lake has none)."""
    stations = lake.read(RAW_STATIONS)
    return stations if stations is not None else read_stations_file()


@step
def fit_model(
    train: pd.DataFrame, valid: pd.DataFrame, config: ModelConfig, stations: pd.DataFrame
) -> TrainedModel:
    """Fit every candidate, pick and calibrate the best on the validation month."""
    trained = train_model(train, valid, config, stations)
    get_run_logger().info(
        "chose %s (validation PR-AUC %.3f); threshold %.3f",
        trained.classifier,
        trained.validation["pr_auc"],
        trained.threshold,
    )
    return trained


@step
def evaluate_holdout(trained: TrainedModel, holdout: pd.DataFrame) -> dict[str, Any]:
    """All holdout metrics of the calibrated model next to the prior-rate baseline."""
    return evaluate(trained.estimator, holdout)


@step
def audit_holdout(trained: TrainedModel, holdout: pd.DataFrame, areas: Any) -> HoldoutAudit:
    """Per-district and per-community-area metrics of the holdout, and the PR-AUC map."""
    return holdout_audit(trained.estimator, holdout, trained.threshold, areas)


@step
def log_audit_tables(settings: Settings, registered: RegisteredModel, audit: HoldoutAudit) -> None:
    """Log the audit tables and map into the training run (`audit/...`)."""
    log_audit(settings, registered.run_id, audit)


@step
def log_and_register(
    settings: Settings,
    window: TrainingWindow,
    splits: dict[str, pd.DataFrame],
    trained: TrainedModel,
    report: dict[str, Any],
    promote_if_none: bool,
) -> RegisteredModel:
    """Log the run to MLflow and register its model as the challenger."""
    registered = log_training_run(
        settings, window, splits, trained, report, promote_if_none, runtime.flow_run.id
    )
    get_run_logger().info("registered version %s (%s)", registered.version, registered.run_url)
    return registered


@step
def publish_training_summary(
    trained: TrainedModel,
    report: dict[str, Any],
    registered: RegisteredModel,
    audit: HoldoutAudit | None = None,
    settings: Settings | None = None,
) -> None:
    """Publish the metrics table, the MLflow link and the audit as a Prefect markdown artifact."""
    markdown = summary_markdown(trained, report, registered)
    if audit is not None:
        links = None if settings is None else Links.from_settings(settings)
        url = None if links is None else links.mlflow_artifact(registered.run_id, MAP_ARTIFACT)
        markdown += "\n\n" + audit_markdown(audit, url)
    create_markdown_artifact(
        key="training-summary",
        markdown=markdown,
        description="Holdout metrics and registry outcome",
    )
