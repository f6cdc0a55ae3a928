"""The training flow: lake window → time split → fit candidates → evaluate → audit per area →
log → register."""

from __future__ import annotations

from prefect import flow

from crimeflow.contract.settings import get_settings
from crimeflow.domain.audit_report import NO_BOUNDARIES
from crimeflow.domain.model import ModelConfig, time_split
from crimeflow.stores.lake import Lake
from tasks.boundary_steps import load_community_areas
from tasks.train_steps import (
    audit_holdout,
    evaluate_holdout,
    fit_model,
    load_stations,
    load_training_window,
    log_and_register,
    log_audit_tables,
    publish_training_summary,
)


@flow(name="train")
def train(
    until: str | None = None,
    holdout_months: int = 1,
    promote_if_none: bool = False,
    classifier: str = "auto",
    balance: bool = False,
) -> dict:
    """Train a challenger on the lake's window up to `until` and register it in MLflow.

    The newest `holdout_months` are held out for the final report; the month before them
    validates (model choice, calibration, threshold); everything older trains.
    """
    settings = get_settings()
    lake = Lake.from_settings(settings)
    config = ModelConfig(classifier=classifier, balance=balance)

    window = load_training_window(lake, until, settings.etl.training_window_months)
    train_rows, valid_rows, holdout_rows = time_split(window.frame, 1, holdout_months)
    splits = {"train": train_rows, "validation": valid_rows, "holdout": holdout_rows}
    trained = fit_model(train_rows, valid_rows, config, load_stations(lake))
    report = evaluate_holdout(trained, holdout_rows)
    audit = audit_holdout(trained, holdout_rows, load_community_areas(lake, NO_BOUNDARIES))
    registered = log_and_register(settings, window, splits, trained, report, promote_if_none)
    log_audit_tables(settings, registered, audit)
    publish_training_summary(trained, report, registered, audit, settings)
    return {
        "version": registered.version,
        "run_id": registered.run_id,
        "promoted": registered.promoted,
        "classifier": trained.classifier,
        "threshold": trained.threshold,
        "splits": {name: len(frame) for name, frame in splits.items()},
        "holdout": report["model"],
        "baseline": report["baseline"],
        "run_url": registered.run_url,
        "version_url": registered.version_url,
    }


if __name__ == "__main__":
    train()
