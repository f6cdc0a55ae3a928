"""Holdout metrics: threshold curve, binary metrics, the evaluate report and its flat form."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    matthews_corrcoef,
    precision_score,
    recall_score,
    roc_auc_score,
)

from crimeflow.domain.evaluate import (
    binary_metrics,
    evaluate,
    flatten_metrics,
    metric_key,
    threshold_curve,
)


class _ColumnModel:
    """A stand-in estimator: the probability is the frame's `score` column."""

    def __init__(self, threshold: float | None = None, prior: float | None = None) -> None:
        if threshold is not None:
            self.decision_threshold_ = threshold
        self.prior_ = prior
        self.seen_rows = 0

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        self.seen_rows = len(frame)
        p = frame["score"].to_numpy(dtype="float64")
        return np.column_stack([1 - p, p])


@pytest.fixture
def scored() -> tuple[np.ndarray, np.ndarray]:
    """Noisy but informative scores for 2000 labels (about 20 % positive), with ties."""
    rng = np.random.default_rng(4)
    y = (rng.random(2000) < 0.2).astype(int)
    p = np.clip(0.2 + 0.35 * (y - 0.2) + rng.normal(0, 0.2, 2000), 0, 1).round(2)
    return y, p


@pytest.fixture
def holdout() -> pd.DataFrame:
    """Labelled incidents of three types, one of them all arrests, plus an unlabelled row."""
    return pd.DataFrame(
        {
            "primary_type": pd.array(
                ["THEFT"] * 6 + ["NARCOTICS"] * 3 + ["BATTERY"] * 2 + ["THEFT"], dtype="string"
            ),
            "arrest": pd.array(
                [False, False, False, True, False, True, True, True, True, False, True, None],
                dtype="boolean",
            ),
            "score": [0.1, 0.2, 0.3, 0.8, 0.4, 0.6, 0.9, 0.95, 0.7, 0.2, 0.9, 0.5],
        }
    )


def test_threshold_curve_matches_sklearn_at_every_cut(
    scored: tuple[np.ndarray, np.ndarray],
) -> None:
    y, p = scored
    curve = threshold_curve(y, p)
    assert len(curve) == len(np.unique(p))  # one row per distinct cut, ties never split
    for row in curve.sample(15, random_state=0).itertuples():
        label = (p >= row.threshold).astype(int)
        assert row.f1 == pytest.approx(f1_score(y, label, zero_division=0))
        assert row.mcc == pytest.approx(matthews_corrcoef(y, label))
        assert row.precision == pytest.approx(precision_score(y, label, zero_division=0))
        assert row.recall == pytest.approx(recall_score(y, label))
        assert row.tp + row.fp == label.sum()


def test_threshold_curve_of_nothing_is_empty() -> None:
    assert threshold_curve(np.array([]), np.array([])).empty


def test_binary_metrics_agree_with_sklearn(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    metrics = binary_metrics(y, p, threshold=0.3)
    label = (p >= 0.3).astype(int)
    assert metrics["n"] == 2000
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert metrics["pr_auc"] == pytest.approx(average_precision_score(y, p))
    assert metrics["mcc"] == pytest.approx(matthews_corrcoef(y, label))
    assert metrics["f1"] == pytest.approx(f1_score(y, label))
    assert metrics["brier"] == pytest.approx(brier_score_loss(y, p))
    assert metrics["log_loss"] == pytest.approx(log_loss(y, p))
    assert metrics["calibration_gap"] == pytest.approx(p.mean() - y.mean())


def test_binary_metrics_mark_undefined_metrics_as_none() -> None:
    all_arrests = binary_metrics(np.ones(5, dtype=int), np.full(5, 0.9), threshold=0.5)
    assert all_arrests["roc_auc"] is None  # one class: no ranking to judge
    assert all_arrests["pr_auc"] == pytest.approx(1.0)
    assert all_arrests["recall"] == 1.0 and all_arrests["mcc"] == 0.0
    no_arrests = binary_metrics(np.zeros(4, dtype=int), np.full(4, 0.1), threshold=0.5)
    assert no_arrests["pr_auc"] is None and no_arrests["f1"] == 0.0
    assert binary_metrics(np.array([]), np.array([]), 0.5)["n"] == 0


def test_evaluate_reports_model_baseline_and_types(holdout: pd.DataFrame) -> None:
    model = _ColumnModel(threshold=0.5, prior=0.25)
    report = evaluate(model, holdout, top_types=2)
    assert model.seen_rows == 11  # the unlabelled row is not scored
    assert report["threshold"] == 0.5
    assert report["baseline_rate"] == 0.25  # the training prior stored on the model
    assert report["model"]["n"] == 11
    assert report["model"]["roc_auc"] > report["baseline"]["roc_auc"] == 0.5
    assert report["baseline"]["mean_predicted"] == pytest.approx(0.25)
    assert list(report["per_type"]) == ["THEFT", "NARCOTICS"]  # the two most frequent
    narcotics = report["per_type"]["NARCOTICS"]["model"]
    assert narcotics["n"] == 3 and narcotics["roc_auc"] is None and narcotics["recall"] == 1.0
    theft = report["per_type"]["THEFT"]["model"]
    assert theft["roc_auc"] == pytest.approx(1.0) and theft["precision"] == pytest.approx(1.0)


def test_evaluate_threshold_and_baseline_fallbacks(holdout: pd.DataFrame) -> None:
    report = evaluate(_ColumnModel(), holdout, threshold=0.85)
    assert report["threshold"] == 0.85
    assert report["model"]["recall"] == pytest.approx(3 / 6)
    assert report["baseline_rate"] == pytest.approx(6 / 11)  # no prior: the frame's own rate
    assert evaluate(_ColumnModel(), holdout)["threshold"] == 0.5


def test_flatten_metrics_is_mlflow_ready(holdout: pd.DataFrame) -> None:
    flat = flatten_metrics(evaluate(_ColumnModel(threshold=0.5), holdout))
    assert flat["model.roc_auc"] > 0.5
    assert "type.narcotics.model.recall" in flat
    assert "type.narcotics.model.roc_auc" not in flat  # undefined metrics are left out
    assert all(isinstance(v, float) for v in flat.values())
    assert metric_key("NON-CRIMINAL (SUBJECT SPECIFIED)") == "non_criminal_subject_specified"


def test_evaluate_reports_the_metrics_without_the_arrest_defined_types(
    holdout: pd.DataFrame,
) -> None:
    report = evaluate(_ColumnModel(threshold=0.5, prior=0.25), holdout)
    excluding = report["excluding_arrest_defined"]
    assert excluding["excluded_rows"] == 3  # the three NARCOTICS rows
    assert "NARCOTICS" in excluding["types"]
    assert excluding["model"]["n"] == 8
    # THEFT and BATTERY only: 3 arrests of 8, against 6 of 11 overall.
    assert excluding["model"]["positive_rate"] == pytest.approx(3 / 8)
    assert report["model"]["positive_rate"] == pytest.approx(6 / 11)
    assert excluding["baseline"]["mean_predicted"] == pytest.approx(0.25)


def test_evaluate_adds_accuracy_classification_report_and_deciles(
    scored: tuple[np.ndarray, np.ndarray],
) -> None:
    y, p = scored
    frame = pd.DataFrame({"primary_type": ["THEFT"] * len(y), "arrest": y.astype(bool), "score": p})
    report = evaluate(_ColumnModel(threshold=0.3), frame)
    label = (p >= 0.3).astype(int)
    assert report["model"]["accuracy"] == pytest.approx(accuracy_score(y, label))
    table = report["classification_report"]
    assert table["arrest"]["recall"] == pytest.approx(recall_score(y, label))
    assert table["no_arrest"]["precision"] == pytest.approx(precision_score(1 - y, 1 - label))
    assert table["arrest"]["support"] == y.sum()
    deciles = report["calibration_deciles"]
    assert [row["decile"] for row in deciles] == list(range(1, 11))
    assert sum(row["n"] for row in deciles) == len(y)
    # Sorted by predicted probability: each group's scores sit at or above the previous one's.
    assert all(a["max_predicted"] <= b["min_predicted"] for a, b in pairwise(deciles))
    assert deciles[-1]["observed_rate"] > deciles[0]["observed_rate"]
    top = p[np.argsort(p, kind="stable")[-200:]]
    assert deciles[-1]["mean_predicted"] == pytest.approx(top.mean())


def test_flatten_metrics_carries_the_new_sections(holdout: pd.DataFrame) -> None:
    flat = flatten_metrics(evaluate(_ColumnModel(threshold=0.85), holdout))
    assert flat["excluding_arrest_defined.model.n"] == 8.0
    assert "excluding_arrest_defined.model.roc_auc" in flat
    assert 0 <= flat["classification_report.arrest.f1-score"] <= 1
    assert "classification_report.macro_avg.precision" in flat
    assert "calibration.decile_01.observed_rate" in flat
    # At 0.85: 3 of the 6 arrests caught, no false alarm, so 8 of 11 right.
    assert flat["model.accuracy"] == pytest.approx(8 / 11)
