"""Model performance over a window of predictions: realized with labels, estimated without.

`realized_performance` scores labelled rows (ROC-AUC, PR-AUC, positive rate, calibration gap)
with percentile bootstrap intervals. `estimate_performance` needs no labels: confidence-based
performance estimation (CBPE, as NannyML defines it) treats each calibrated probability p as the
expected label, so the expected true- and false-positive counts above every threshold are the
running sums of p and 1 - p down the ranking; ROC-AUC and average precision (PR-AUC) follow from
those expected curves, and the expected arrest rate is the mean of p.

The estimate's uncertainty is the sampling error of the realized metric on a window of this
size: labels are drawn from the same probabilities (seeded) and the spread of the metric over
the draws is its standard error. NannyML derives the same quantity from reference data and
scales it by 1/sqrt(n); drawing from the window itself also follows its own mix of scores.

What the estimate cannot see: it assumes P(arrest | inputs) is what the champion learnt. It
follows covariate shift (a different mix of incidents) but is blind to concept drift (the same
incidents leading to arrests at other rates); only realized performance on matured labels shows
that. `tests/monitoring/test_performance.py` pins both behaviours.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

__all__ = [
    "EstimatedPerformance",
    "Interval",
    "RealizedPerformance",
    "estimate_performance",
    "realized_performance",
]

CONFIDENCE = 0.95
SIMULATIONS = 200
RESAMPLES = 200


@dataclass(frozen=True)
class Interval:
    """A figure with its standard error and a two-sided interval at the report's confidence."""

    value: float
    low: float
    high: float
    std_error: float


@dataclass(frozen=True)
class EstimatedPerformance:
    """The label-free (CBPE) estimate for one window of calibrated probabilities."""

    rows: int
    roc_auc: Interval
    pr_auc: Interval
    positive_rate: Interval
    confidence: float
    method: str = "cbpe"

    def as_dict(self) -> dict[str, object]:
        """Plain dict (JSON-ready) of the estimate."""
        return asdict(self)


@dataclass(frozen=True)
class RealizedPerformance:
    """Performance on labelled rows; `calibration_gap` is mean predicted minus observed."""

    rows: int
    roc_auc: Interval
    pr_auc: Interval
    positive_rate: Interval
    calibration_gap: Interval
    mean_predicted: float
    confidence: float

    def as_dict(self) -> dict[str, object]:
        """Plain dict (JSON-ready) of the realized figures."""
        return asdict(self)


def _check_proba(proba: object) -> np.ndarray:
    """The probabilities as a 1-D float array; a clear error for anything a model cannot give."""
    array = np.asarray(proba, dtype="float64")
    if array.ndim != 1:
        raise ValueError(f"proba: expected one probability per row (1-D), got shape {array.shape}")
    if len(array) < 2:
        raise ValueError(f"proba: need at least 2 rows, got {len(array)}")
    bad = ~np.isfinite(array) | (array < 0.0) | (array > 1.0)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"proba: {int(bad.sum())} value(s) outside [0, 1] or not finite "
            f"(first at row {first}: {array[first]!r})"
        )
    return array


def _check_labels(y_true: object, rows: int) -> np.ndarray:
    """The labels as a 0/1 float array of `rows` entries, with both classes present."""
    array = np.asarray(y_true)
    if array.shape != (rows,):
        raise ValueError(f"y_true: expected {rows} labels to match proba, got shape {array.shape}")
    if array.dtype == object or not np.isin(array.astype("float64"), (0.0, 1.0)).all():
        raise ValueError("y_true: labels must be 0/1 or booleans without missing values")
    labels = array.astype("float64")
    if labels.min() == labels.max():
        raise ValueError(f"y_true: all {rows} labels are {int(labels[0])}; need both classes")
    return labels


def _ranking(proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row order by descending probability, and the last sorted position of each distinct one.

    Tied scores form one threshold (as in sklearn's curves), so a tie never counts as ranked.
    """
    order = np.argsort(-proba, kind="mergesort")
    ranked = proba[order]
    ends = np.r_[np.flatnonzero(np.diff(ranked) != 0.0), len(ranked) - 1]
    return order, ends


def _roc_pr(positives: np.ndarray, negatives: np.ndarray, ends: np.ndarray) -> tuple[float, float]:
    """ROC-AUC and average precision from per-row positive/negative weights in ranked order.

    Weights may be 0/1 labels, bootstrap counts, or expected labels (CBPE's p and 1 - p).
    """
    tps = np.cumsum(positives)[ends]
    fps = np.cumsum(negatives)[ends]
    total_pos, total_neg = tps[-1], fps[-1]
    if total_pos <= 0 or total_neg <= 0:
        return float("nan"), float("nan")
    tpr = np.r_[0.0, tps / total_pos]
    fpr = np.r_[0.0, fps / total_neg]
    roc_auc = float(np.trapezoid(tpr, fpr))
    predicted = tps + fps
    precision = np.divide(tps, predicted, out=np.zeros_like(tps), where=predicted > 0)
    # Average precision as sklearn defines it: sum of precision times the step in recall.
    pr_auc = float(np.sum(np.diff(tpr) * precision))
    return roc_auc, pr_auc


def _normal_interval(value: float, std_error: float, confidence: float) -> Interval:
    """value +- z * std_error, kept within [0, 1] (every figure here is a share or an area)."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    low, high = max(0.0, value - z * std_error), min(1.0, value + z * std_error)
    return Interval(value=value, low=low, high=high, std_error=std_error)


def _percentile_interval(value: float, draws: np.ndarray, confidence: float) -> Interval:
    """The bootstrap's percentile interval around `value` (NaN draws, e.g. one class, dropped)."""
    tail = (1 - confidence) / 2 * 100
    low, high = np.nanpercentile(draws, [tail, 100 - tail])
    return Interval(value, float(low), float(high), float(np.nanstd(draws)))


def _check_options(confidence: float, draws: int, name: str) -> None:
    """Refuse a confidence level or a number of draws that gives no interval."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: must lie in (0, 1), got {confidence}")
    if draws < 2:
        raise ValueError(f"{name}: need at least 2 draws for a spread, got {draws}")


def estimate_performance(
    proba: object,
    *,
    confidence: float = CONFIDENCE,
    simulations: int = SIMULATIONS,
    seed: int = 0,
) -> EstimatedPerformance:
    """CBPE estimate of ROC-AUC, PR-AUC and arrest rate from calibrated probabilities alone."""
    _check_options(confidence, simulations, "simulations")
    p = _check_proba(proba)
    order, ends = _ranking(p)
    ranked = p[order]
    roc_auc, pr_auc = _roc_pr(ranked, 1.0 - ranked, ends)
    if np.isnan(roc_auc):
        raise ValueError("proba: all probabilities are 0 or all are 1; nothing to estimate")

    # Sampling error: the realized metric's spread when labels follow these probabilities.
    rng = np.random.default_rng(seed)
    draws = np.empty((simulations, 2))
    for i in range(simulations):
        labels = (rng.random(len(ranked)) < ranked).astype("float64")
        draws[i] = _roc_pr(labels, 1.0 - labels, ends)
    roc_se, pr_se = np.nanstd(draws, axis=0)
    # A Poisson-binomial count: its variance is the sum of p(1 - p), exactly.
    rate_se = float(np.sqrt(np.sum(p * (1.0 - p))) / len(p))
    return EstimatedPerformance(
        rows=len(p),
        roc_auc=_normal_interval(roc_auc, float(roc_se), confidence),
        pr_auc=_normal_interval(pr_auc, float(pr_se), confidence),
        positive_rate=_normal_interval(float(p.mean()), rate_se, confidence),
        confidence=confidence,
    )


def realized_performance(
    y_true: object,
    proba: object,
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> RealizedPerformance:
    """ROC-AUC, PR-AUC, arrest rate and calibration gap on labelled rows, with bootstrap CIs."""
    _check_options(confidence, resamples, "resamples")
    p = _check_proba(proba)
    y = _check_labels(y_true, len(p))
    order, ends = _ranking(p)
    ranked_p, ranked_y = p[order], y[order]
    roc_auc, pr_auc = _roc_pr(ranked_y, 1.0 - ranked_y, ends)
    rate, mean_predicted = float(y.mean()), float(p.mean())

    # Row-resampling bootstrap as integer weights on the fixed ranking (no re-sorting).
    rng = np.random.default_rng(seed)
    draws = np.empty((resamples, 4))
    rows = len(p)
    for i in range(resamples):
        weights = np.bincount(rng.integers(0, rows, rows), minlength=rows).astype("float64")
        positives = weights * ranked_y
        draws[i, :2] = _roc_pr(positives, weights - positives, ends)
        draws[i, 2] = positives.sum() / rows
        draws[i, 3] = (weights * ranked_p).sum() / rows - draws[i, 2]
    return RealizedPerformance(
        rows=rows,
        roc_auc=_percentile_interval(roc_auc, draws[:, 0], confidence),
        pr_auc=_percentile_interval(pr_auc, draws[:, 1], confidence),
        positive_rate=_percentile_interval(rate, draws[:, 2], confidence),
        calibration_gap=_percentile_interval(mean_predicted - rate, draws[:, 3], confidence),
        mean_predicted=mean_predicted,
        confidence=confidence,
    )
