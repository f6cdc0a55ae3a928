"""The Evidently side of a drift check: run the reports, merge snapshots, read the verdicts."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from monitoring.columns import (
    CATEGORICAL_COLUMNS,
    NUMERICAL_COLUMNS,
    PROBABILITY,
    model_probability,
)

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

    from monitoring.drift import DriftConfig
    from monitoring.methods import Plan

TARGET = "target"
_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
_DRIFTED_COUNT = "evidently:metric_v2:DriftedColumnsCount"
_PERFORMANCE_METRICS = {
    "evidently:metric_v2:Accuracy": "accuracy",
    "evidently:metric_v2:Precision": "precision",
    "evidently:metric_v2:Recall": "recall",
    "evidently:metric_v2:F1Score": "f1",
    "evidently:metric_v2:RocAuc": "roc_auc",
    "evidently:metric_v2:LogLoss": "log_loss",
}


def _data_definition(numerical: list[str], categorical: list[str], labelled: bool = False) -> Any:
    """An explicit Evidently DataDefinition (nothing left to type inference)."""
    from evidently import BinaryClassification, DataDefinition

    classification = (
        [BinaryClassification(target=TARGET, prediction_probas=PROBABILITY, pos_label=1)]
        if labelled
        else None
    )
    return DataDefinition(
        numerical_columns=numerical,
        categorical_columns=categorical,
        text_columns=[],
        datetime_columns=[],
        unknown_columns=[],
        list_columns=[],
        classification=classification,
    )


def snapshot_metadata(
    window_start: datetime | None, window_end: datetime | None, model_version: str | None
) -> dict[str, str]:
    """Snapshot metadata the Evidently UI shows next to each run."""
    return {
        "window_start": "" if window_start is None else window_start.isoformat(),
        "window_end": "" if window_end is None else window_end.isoformat(),
        "model_version": model_version or "",
    }


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    plan: Plan,
    config: DriftConfig,
    timestamp: datetime,
    metadata: dict[str, str],
) -> Snapshot:
    """Run DataDriftPreset over the monitored columns and ValueDrift on the probability."""
    from evidently import Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    has_probability = PROBABILITY in plan.methods
    categorical = [c for c in plan.columns if c in CATEGORICAL_COLUMNS]
    numerical = [c for c in plan.columns if c in NUMERICAL_COLUMNS]
    numerical_all = [*numerical, PROBABILITY] if has_probability else numerical
    keep = [*categorical, *numerical_all]
    definition = _data_definition(numerical_all, categorical)
    column_methods = {c: plan.methods[c] for c in plan.columns}
    column_thresholds = {c: plan.thresholds[c] for c in plan.columns}
    items: list[Any] = [
        DataDriftPreset(
            columns=list(plan.columns),
            drift_share=config.drift_share,
            per_column_method=column_methods,
            per_column_threshold=column_thresholds,
        )
    ]
    if has_probability:
        items.append(
            ValueDrift(
                column=PROBABILITY,
                method=plan.methods[PROBABILITY],
                threshold=plan.thresholds[PROBABILITY],
            )
        )
    report = Report(items, include_tests=True, tags=["crimeflow", "drift"])
    return report.run(
        Dataset.from_pandas(current[keep].reset_index(drop=True), data_definition=definition),
        Dataset.from_pandas(reference[keep].reset_index(drop=True), data_definition=definition),
        timestamp=timestamp,
        metadata=metadata,
    )


def labelled_scores(frame: pd.DataFrame, label_column: str) -> pd.DataFrame:
    """Rows with both a true outcome and a score, as Evidently's target/probability columns."""
    probability = model_probability(frame)
    if label_column not in frame.columns or probability is None:
        return pd.DataFrame({TARGET: pd.Series(dtype="int64"), PROBABILITY: pd.Series(dtype=float)})
    label = frame[label_column].astype("boolean")
    mask = label.notna() & probability.notna()
    return pd.DataFrame(
        {
            TARGET: label[mask].astype(bool).astype("int64").to_numpy(),
            PROBABILITY: probability[mask].to_numpy(),
        }
    )


def _performance_values(snapshot: Snapshot) -> dict[str, float | None]:
    """Accuracy, precision, recall, F1, ROC AUC and log loss read from a snapshot."""
    values: dict[str, float | None] = {}
    for metric in snapshot.dict()["metrics"]:
        name = _PERFORMANCE_METRICS.get(metric.get("config", {}).get("type", ""))
        if name is not None:
            values[name] = _finite(metric.get("value"))
    return values


def performance_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    decision_threshold: float,
    timestamp: datetime,
    metadata: dict[str, str],
) -> tuple[Snapshot, dict[str, Any]]:
    """ClassificationPreset on the labelled current rows (against the labelled reference)."""
    from evidently import Dataset, Report
    from evidently.presets import ClassificationPreset, ClassificationQuality

    definition = _data_definition([PROBABILITY], [TARGET], labelled=True)
    with_reference = reference[TARGET].nunique() == 2
    current_data = Dataset.from_pandas(current, data_definition=definition)
    reference_data = (
        Dataset.from_pandas(reference, data_definition=definition) if with_reference else None
    )
    snapshot = Report(
        [ClassificationPreset(probas_threshold=decision_threshold)],
        tags=["crimeflow", "performance"],
    ).run(current_data, reference_data, timestamp=timestamp, metadata=metadata)
    performance: dict[str, Any] = {
        "labelled_rows": len(current),
        "decision_threshold": decision_threshold,
        "current": {
            **_performance_values(snapshot),
            "arrest_rate": float(current[TARGET].mean()),
            "mean_probability": float(current[PROBABILITY].mean()),
        },
        "reference": None,
    }
    if reference_data is not None:
        # Evidently keeps reference-side values out of its public results; one more (small)
        # run with the reference as the only dataset gives them the same way.
        reference_snapshot = Report([ClassificationQuality(probas_threshold=decision_threshold)])
        performance["reference"] = {
            **_performance_values(reference_snapshot.run(reference_data, None)),
            "arrest_rate": float(reference[TARGET].mean()),
            "mean_probability": float(reference[PROBABILITY].mean()),
            "rows": len(reference),
        }
    return snapshot, performance


def merge_snapshots(first: Snapshot, *others: Snapshot) -> Snapshot:
    """One snapshot holding the metrics and widgets of several (one HTML page, one UI run)."""
    from evidently.core.report import Snapshot

    model = first.to_snapshot_model()
    metric_results = dict(model.metric_results)
    top_level = list(model.top_level_metrics)
    widgets = list(model.widgets)
    tests_widgets = list(model.tests_widgets)
    for other in others:
        extra = other.to_snapshot_model()
        metric_results.update(extra.metric_results)
        top_level.extend(m for m in extra.top_level_metrics if m not in top_level)
        widgets.extend(extra.widgets)
        tests_widgets.extend(extra.tests_widgets)
    merged = model.copy(
        update={
            "metric_results": metric_results,
            "top_level_metrics": top_level,
            "widgets": widgets,
            "tests_widgets": tests_widgets,
        }
    )
    return Snapshot.load_model(merged)


def _finite(value: Any) -> float | None:
    """A finite float, or None (NaN/inf/missing)."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def read_column_verdicts(snapshot: Snapshot) -> dict[str, tuple[float | None, float, str, bool]]:
    """Per column: (score, threshold, method, drifted) from a snapshot's ValueDrift results.

    `drifted` is Evidently's own test status (FAIL = drift), the authority for both p-value
    and distance methods.
    """
    exported = snapshot.dict()
    status = {t["metric_config"]["metric_id"]: t["status"] for t in exported["tests"]}
    verdicts: dict[str, tuple[float | None, float, str, bool]] = {}
    for metric in exported["metrics"]:
        config = metric.get("config", {})
        if config.get("type") != _VALUE_DRIFT:
            continue
        verdicts[config["column"]] = (
            _finite(metric.get("value")),
            float(config["threshold"]),
            str(config["method"]),
            status.get(metric["id"]) == "FAIL",
        )
    return verdicts


def drifted_share(snapshot: Snapshot) -> float | None:
    """Evidently's share of drifted columns (DriftedColumnsCount)."""
    for metric in snapshot.dict()["metrics"]:
        if metric.get("config", {}).get("type") == _DRIFTED_COUNT:
            return _finite(metric["value"]["share"])
    return None


def naive_utc(value: datetime | None) -> datetime | None:
    """A timestamp as naive UTC (Evidently's snapshot timestamps are naive)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)
