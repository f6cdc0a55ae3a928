"""Holdout metrics for the arrest model, next to a prior-rate baseline: overall, excluding the
arrest-defined crime types (`crimeflow.domain.arrest_defined`), and per crime type; with the
classification report at the chosen threshold and a calibration table by predicted decile.

Pure functions of labels and probabilities (plus one `evaluate` that calls `predict_proba`), so
the training flow can log the result to MLflow and the promotion gate can compare two reports.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    classification_report,
    log_loss,
    roc_auc_score,
)

from crimeflow.contract.schema import LABEL
from crimeflow.domain.arrest_defined import ARREST_DEFINED_TYPES, arrest_defined_mask

# Metric names in the report; `None` marks a metric that is undefined on the data (e.g. ROC-AUC
# when a crime type has only arrests), so callers can tell "undefined" from "zero".
METRIC_NAMES: tuple[str, ...] = (
    "n",
    "positive_rate",
    "mean_predicted",
    "calibration_gap",
    "accuracy",
    "roc_auc",
    "pr_auc",
    "mcc",
    "f1",
    "precision",
    "recall",
    "brier",
    "log_loss",
)


def threshold_curve(y_true: np.ndarray, proba: np.ndarray) -> pd.DataFrame:
    """Confusion counts, precision, recall, F1 and MCC for every distinct cut `proba >= t`."""
    y = np.asarray(y_true).astype(bool)
    p = np.asarray(proba, dtype="float64")
    if y.size == 0:
        return pd.DataFrame(
            columns=["threshold", "tp", "fp", "fn", "tn", "precision", "recall", "f1", "mcc"]
        )
    order = np.argsort(-p, kind="stable")
    p, y = p[order], y[order]
    # The last row of each run of equal probabilities: a cut cannot split ties.
    last = np.r_[np.flatnonzero(np.diff(p) != 0), p.size - 1]
    tp = np.cumsum(y)[last].astype("float64")
    fp = (last + 1) - tp
    positives = float(y.sum())
    negatives = float(y.size) - positives
    fn = positives - tp
    tn = negatives - fp
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(positives > 0, tp / positives, 0.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        mcc = np.where(denominator > 0, (tp * tn - fp * fn) / denominator, 0.0)
    return pd.DataFrame(
        {
            "threshold": p[last],
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "tn": tn,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "mcc": mcc,
        }
    )


def _mcc(tp: float, fp: float, fn: float, tn: float) -> float:
    """Matthews correlation from confusion counts; 0 when a margin is empty (sklearn's rule)."""
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / denominator if denominator > 0 else 0.0


def binary_metrics(y_true: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, Any]:
    """Ranking, threshold and probability-quality metrics for one set of predictions."""
    y = np.asarray(y_true).astype("int64")
    p = np.clip(np.asarray(proba, dtype="float64"), 0.0, 1.0)
    if y.size == 0:
        return {name: (0 if name == "n" else None) for name in METRIC_NAMES}
    predicted = p >= threshold
    actual = y == 1
    tp = float(np.sum(predicted & actual))
    fp = float(np.sum(predicted & ~actual))
    fn = float(np.sum(~predicted & actual))
    tn = float(y.size) - tp - fp - fn
    both_classes = 0 < y.sum() < y.size
    rate = float(y.mean())
    return {
        "n": int(y.size),
        "positive_rate": rate,
        "mean_predicted": float(p.mean()),
        "calibration_gap": float(p.mean() - rate),
        "accuracy": (tp + tn) / y.size,
        "roc_auc": float(roc_auc_score(y, p)) if both_classes else None,
        "pr_auc": float(average_precision_score(y, p)) if y.sum() > 0 else None,
        # From the counts: sklearn's MCC warns on one-class slices (NARCOTICS is ~100 % arrests).
        "mcc": _mcc(tp, fp, fn, tn),
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else 0.0,
        "precision": tp / (tp + fp) if tp + fp > 0 else 0.0,
        "recall": tp / (tp + fn) if tp + fn > 0 else 0.0,
        "brier": float(brier_score_loss(y, p, labels=[0, 1])),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
    }


def evaluate(
    estimator: Any,
    frame: pd.DataFrame,
    threshold: float | None = None,
    *,
    baseline_rate: float | None = None,
    top_types: int = 10,
) -> dict[str, Any]:
    """All holdout metrics for `estimator` on labelled incidents, with a prior-rate baseline.

    `threshold` defaults to the one stored on the model (`decision_threshold_`). The baseline
    predicts one constant probability for every row: `baseline_rate`, else the model's training
    arrest rate (`prior_`), else the frame's own rate. Per-type results cover the `top_types`
    most frequent `primary_type` values.
    """
    labelled = frame[frame[LABEL].notna()]
    if threshold is None:
        threshold = float(getattr(estimator, "decision_threshold_", 0.5))
    y = labelled[LABEL].astype("int64").to_numpy()
    proba = estimator.predict_proba(labelled)[:, 1]
    if baseline_rate is None:
        prior = getattr(estimator, "prior_", None)
        baseline_rate = float(prior) if prior is not None else float(y.mean()) if y.size else 0.0
    constant = np.full(y.size, baseline_rate)

    types = labelled["primary_type"].astype("string").fillna("(missing)").to_numpy(dtype=object)
    counts = pd.Series(types).value_counts()
    per_type: dict[str, Any] = {}
    for name in counts.index[:top_types]:
        rows = types == name
        per_type[str(name)] = {
            "model": binary_metrics(y[rows], proba[rows], threshold),
            "baseline": binary_metrics(y[rows], constant[rows], threshold),
        }
    kept = ~arrest_defined_mask(labelled["primary_type"])
    return {
        "threshold": float(threshold),
        "baseline_rate": float(baseline_rate),
        "model": binary_metrics(y, proba, threshold),
        "baseline": binary_metrics(y, constant, threshold),
        "excluding_arrest_defined": {
            "types": list(ARREST_DEFINED_TYPES),
            "excluded_rows": int((~kept).sum()),
            "model": binary_metrics(y[kept], proba[kept], threshold),
            "baseline": binary_metrics(y[kept], constant[kept], threshold),
        },
        "classification_report": threshold_report(y, proba, threshold),
        "calibration_deciles": calibration_deciles(y, proba),
        "per_type": per_type,
    }


CLASS_NAMES = ("no_arrest", "arrest")


def threshold_report(y_true: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, Any]:
    """sklearn's classification report of `proba >= threshold` (per class, macro, weighted)."""
    y = np.asarray(y_true).astype("int64")
    predicted = (np.asarray(proba, dtype="float64") >= threshold).astype("int64")
    return classification_report(
        y,
        predicted,
        labels=[0, 1],
        target_names=list(CLASS_NAMES),
        output_dict=True,
        zero_division=0,
    )


def calibration_deciles(y_true: np.ndarray, proba: np.ndarray, bins: int = 10) -> list[dict]:
    """Rows sorted by predicted probability, cut into `bins` equal-count groups: per group the
    probability range, the mean predicted and the observed arrest rate (a reliability table).

    Equal counts by rank rather than by value: an isotonic calibrator gives many tied scores,
    which would leave quantile cuts by value with empty or merged groups.
    """
    y = np.asarray(y_true).astype("float64")
    p = np.asarray(proba, dtype="float64")
    order = np.argsort(p, kind="stable")
    table = []
    for number, rows in enumerate(np.array_split(order, bins), start=1):
        if rows.size == 0:
            continue
        table.append(
            {
                "decile": number,
                "n": int(rows.size),
                "min_predicted": float(p[rows].min()),
                "max_predicted": float(p[rows].max()),
                "mean_predicted": float(p[rows].mean()),
                "observed_rate": float(y[rows].mean()),
            }
        )
    return table


def metric_key(text: str) -> str:
    """A metric-name-safe key ('CRIM SEXUAL ASSAULT' -> 'crim_sexual_assault')."""
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")


def flatten_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The report as flat `name: float` pairs (for MLflow); undefined metrics are left out."""
    flat: dict[str, float] = {"threshold": report["threshold"]}
    sections = [("model", report["model"]), ("baseline", report["baseline"])]
    excluding = report.get("excluding_arrest_defined")
    if excluding is not None:
        sections += [("excluding_arrest_defined.model", excluding["model"])]
        sections += [("excluding_arrest_defined.baseline", excluding["baseline"])]
    for label, scores in (report.get("classification_report") or {}).items():
        # 'accuracy' is a bare number there; the per-class and average rows are dicts.
        if isinstance(scores, dict):
            sections += [(f"classification_report.{metric_key(label)}", scores)]
    for row in report.get("calibration_deciles") or []:
        key = f"calibration.decile_{row['decile']:02d}"
        sections += [(key, {k: row[k] for k in ("mean_predicted", "observed_rate")})]
    for type_name, result in report["per_type"].items():
        key = metric_key(type_name)
        sections += [(f"type.{key}.model", result["model"])]
        sections += [(f"type.{key}.baseline", result["baseline"])]
    for prefix, metrics in sections:
        for name, value in metrics.items():
            if value is not None and math.isfinite(value):
                flat[f"{prefix}.{name}"] = float(value)
    return flat
