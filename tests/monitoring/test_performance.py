"""Realized performance and the label-free (CBPE) estimate on constructed windows.

The windows come from a known model: x ~ Normal, P(arrest | x) = sigmoid(2x - 2), so the
"champion's" calibrated probability is exact and labels can be drawn from it, from a shifted
input distribution (covariate shift) or from changed odds (concept drift).
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from monitoring.performance import estimate_performance, realized_performance


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function."""
    return 1.0 / (1.0 + np.exp(-z))


def window(rng: np.random.Generator, rows: int, mean: float = 0.0) -> np.ndarray:
    """Calibrated probabilities of a window whose inputs are centred at `mean`."""
    return sigmoid(2.0 * rng.normal(mean, 1.0, rows) - 2.0)


def draw(rng: np.random.Generator, proba: np.ndarray) -> np.ndarray:
    """Labels drawn from the probabilities."""
    return (rng.random(len(proba)) < proba).astype(int)


def test_realized_metrics_equal_sklearn_with_ties() -> None:
    rng = np.random.default_rng(1)
    proba = np.round(window(rng, 3_000), 2)  # many tied scores
    y = draw(rng, proba)
    result = realized_performance(y, proba, resamples=50)
    assert result.roc_auc.value == pytest.approx(roc_auc_score(y, proba), abs=1e-12)
    assert result.pr_auc.value == pytest.approx(average_precision_score(y, proba), abs=1e-12)
    assert result.positive_rate.value == pytest.approx(y.mean())
    assert result.calibration_gap.value == pytest.approx(proba.mean() - y.mean())
    for interval in (result.roc_auc, result.pr_auc, result.positive_rate, result.calibration_gap):
        assert interval.low <= interval.value <= interval.high
        assert interval.std_error > 0


def test_calibration_gap_interval_excludes_zero_for_an_overconfident_model() -> None:
    rng = np.random.default_rng(2)
    truth = window(rng, 5_000)
    y = draw(rng, truth)
    overconfident = np.clip(truth + 0.05, 0, 1)
    gap = realized_performance(y, overconfident, resamples=100).calibration_gap
    assert gap.low > 0.02 and gap.value == pytest.approx(0.05, abs=0.015)


def test_estimate_ci_covers_the_realized_value_when_labels_follow_the_probabilities() -> None:
    rng = np.random.default_rng(3)
    covered = {"roc_auc": 0, "pr_auc": 0, "positive_rate": 0}
    windows = 60
    for seed in range(windows):
        proba = window(rng, 1_500)
        estimate = estimate_performance(proba, simulations=100, seed=seed)
        realized = realized_performance(draw(rng, proba), proba, resamples=2)
        for metric in covered:
            interval = getattr(estimate, metric)
            covered[metric] += interval.low <= getattr(realized, metric).value <= interval.high
    # 95 % intervals: 60 windows give 57 on average; 51 or fewer has probability < 0.5 %.
    for metric, hits in covered.items():
        assert hits >= 52, f"{metric}: {hits}/{windows} covered"


def test_estimate_std_error_matches_the_spread_of_realized_values() -> None:
    rng = np.random.default_rng(4)
    proba = window(rng, 2_000)
    estimate = estimate_performance(proba, simulations=200, seed=0)
    realized = [realized_performance(draw(rng, proba), proba, resamples=2) for _ in range(150)]
    for metric in ("roc_auc", "pr_auc"):
        values = np.array([getattr(r, metric).value for r in realized])
        interval = getattr(estimate, metric)
        assert interval.std_error == pytest.approx(values.std(), rel=0.25)
        # The CBPE point estimate is the expected metric up to a small bias (a ratio of sums).
        assert abs(values.mean() - interval.value) < interval.std_error


def test_estimate_follows_covariate_shift() -> None:
    rng = np.random.default_rng(5)
    reference, shifted = window(rng, 20_000), window(rng, 20_000, mean=0.8)
    before, after = estimate_performance(reference), estimate_performance(shifted)
    realized = realized_performance(draw(rng, shifted), shifted, resamples=50)
    # More incidents the model scores high: more arrests and a higher PR-AUC, and it says so.
    assert after.positive_rate.value > before.positive_rate.value + 0.1
    assert after.pr_auc.value > before.pr_auc.high
    assert after.pr_auc.low <= realized.pr_auc.value <= after.pr_auc.high
    assert after.roc_auc.low <= realized.roc_auc.value <= after.roc_auc.high


def test_estimate_is_blind_to_a_change_of_arrest_odds_with_unchanged_inputs() -> None:
    """Concept drift: same incidents, arrest odds halved. Only realized performance sees it."""
    rng = np.random.default_rng(6)
    proba = window(rng, 20_000)  # what the champion says; the inputs did not move
    # The estimate takes no labels: one estimate stands for both worlds below.
    estimate = estimate_performance(proba)
    unchanged = realized_performance(draw(rng, proba), proba, resamples=50)
    drifted_truth = sigmoid(np.log(proba / (1 - proba)) - np.log(2.0))
    drifted = realized_performance(draw(rng, drifted_truth), proba, resamples=50)
    for metric in ("pr_auc", "positive_rate"):
        interval = getattr(estimate, metric)
        assert interval.low <= getattr(unchanged, metric).value <= interval.high, metric
        assert getattr(drifted, metric).high < interval.low, metric
    assert drifted.calibration_gap.low > 0.03


@pytest.mark.parametrize(
    ("proba", "message"),
    [
        ([0.2, np.nan, 0.4], "proba: 1 value"),
        ([0.2, 1.4], "outside \\[0, 1\\]"),
        ([[0.2, 0.3]], "1-D"),
        ([0.3], "at least 2 rows"),
        ([0.0, 0.0, 0.0], "all probabilities are 0"),
    ],
)
def test_estimate_refuses_bad_probabilities(proba: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        estimate_performance(proba)


@pytest.mark.parametrize(
    ("y", "message"),
    [
        ([1, 0], "expected 3 labels"),
        ([1, 1, 1], "need both classes"),
        ([1, 0, 2], "0/1"),
        ([1.0, np.nan, 0.0], "0/1"),
    ],
)
def test_realized_refuses_bad_labels(y: list, message: str) -> None:
    with pytest.raises(ValueError, match=f"y_true: .*{message}"):
        realized_performance(y, [0.2, 0.5, 0.7])


def test_confidence_and_draws_must_give_an_interval() -> None:
    with pytest.raises(ValueError, match="confidence"):
        estimate_performance([0.2, 0.7], confidence=1.0)
    with pytest.raises(ValueError, match="simulations: need at least 2"):
        estimate_performance([0.2, 0.7], simulations=1)
    with pytest.raises(ValueError, match="resamples: need at least 2"):
        realized_performance([0, 1], [0.2, 0.7], resamples=0)


def test_estimate_is_the_expected_pair_ordering_and_expected_precision() -> None:
    """Against NannyML's definition, computed another way: expected labels are the probabilities.

    CBPE's ROC-AUC is the Mann-Whitney count of (positive above negative) pairs with expected
    labels, sum_{i above j} p_i (1 - p_j) plus half of each row paired with itself, over
    sum p * sum (1 - p); its AP weighs the expected precision at each row by its recall step.
    """
    rng = np.random.default_rng(7)
    proba = np.sort(window(rng, 400))[::-1]  # distinct scores, ranked
    above = np.triu(np.ones((400, 400)), k=1)  # i ranked above j
    expected_pairs = proba @ above @ (1 - proba)
    self_pairs = np.sum(proba * (1 - proba)) / 2
    roc = (expected_pairs + self_pairs) / (proba.sum() * (1 - proba).sum())
    precision = np.cumsum(proba) / np.arange(1, 401)
    ap = np.sum(proba / proba.sum() * precision)
    estimate = estimate_performance(proba, simulations=2)
    assert estimate.roc_auc.value == pytest.approx(roc, abs=1e-12)
    assert estimate.pr_auc.value == pytest.approx(ap, abs=1e-12)
