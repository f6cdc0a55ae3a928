"""Per-area audit of a model's predictions: how well it ranks, how well it is calibrated and how
often it errs in each police district and community area, with 95 % confidence intervals.

Pure functions of a labelled frame, labels and probabilities. Areas with fewer than
`MIN_AREA_ROWS` rows (and rows without an area) are pooled into one row flagged `pooled`: their
own figures would be mostly noise, and the table says how many areas went into the pool.

Intervals: ROC-AUC by Hanley & McNeil (1982); PR-AUC (average precision) on the logit scale
(Boyd, Eng & Page 2013); rates (positive rate, false-positive rate, false-negative rate) by
Wilson's score interval; the calibration gap (mean predicted − observed) by the normal
approximation of the mean of `proba − y`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

# Below this many rows an area's PR-AUC interval is wider than the spread between areas.
MIN_AREA_ROWS = 200
POOLED = "pooled"
Z95 = 1.959963984540054
AREA_COLUMNS = {"per_district": "district", "per_community_area": "community_area"}
# Metric, and whether a high value is the bad end (the "worst" area of `largest_gaps`).
GAP_METRICS: tuple[tuple[str, bool], ...] = (
    ("roc_auc", False),
    ("pr_auc", False),
    ("calibration_gap", True),
    ("fpr", True),
    ("fnr", True),
)
TABLE_COLUMNS = (
    "area",
    "rows",
    "positives",
    "pooled",
    "areas_pooled",
    "mean_predicted",
    *(
        f"{m}{suffix}"
        for m in ("roc_auc", "pr_auc", "calibration_gap", "positive_rate", "fpr", "fnr")
        for suffix in ("", "_low", "_high")
    ),
)


def wilson_interval(successes: float, trials: float) -> tuple[float | None, float | None]:
    """Wilson's 95 % score interval for a proportion (None, None with no trials)."""
    if trials <= 0:
        return None, None
    share = successes / trials
    denominator = 1 + Z95**2 / trials
    centre = (share + Z95**2 / (2 * trials)) / denominator
    half = Z95 * math.sqrt(share * (1 - share) / trials + Z95**2 / (4 * trials**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def hanley_mcneil_interval(
    auc: float, positives: int, negatives: int
) -> tuple[float | None, float | None]:
    """95 % interval of a ROC-AUC from its Hanley-McNeil standard error."""
    if positives < 1 or negatives < 1:
        return None, None
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = (
        auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)
    ) / (positives * negatives)
    half = Z95 * math.sqrt(max(variance, 0.0))
    return max(0.0, auc - half), min(1.0, auc + half)


def logit_interval(value: float, positives: int) -> tuple[float | None, float | None]:
    """95 % interval of an average precision on the logit scale (Boyd et al. 2013)."""
    if positives < 1:
        return None, None
    if value <= 0 or value >= 1:
        # The logit is infinite at the ends: the interval collapses to the point.
        return value, value
    centre = math.log(value / (1 - value))
    half = Z95 / math.sqrt(positives * value * (1 - value))
    return 1 / (1 + math.exp(-(centre - half))), 1 / (1 + math.exp(-(centre + half)))


def _with_interval(name: str, value: float | None, interval: tuple) -> dict[str, Any]:
    """`name`, `name_low`, `name_high` as one dict."""
    return {name: value, f"{name}_low": interval[0], f"{name}_high": interval[1]}


def area_metrics(y: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, Any]:
    """Every audited metric with its 95 % interval for one group of predictions."""
    y = np.asarray(y).astype("int64")
    p = np.clip(np.asarray(proba, dtype="float64"), 0.0, 1.0)
    n, positives = int(y.size), int(y.sum())
    negatives = n - positives
    predicted = p >= threshold
    fp = float(np.sum(predicted & (y == 0)))
    fn = float(np.sum(~predicted & (y == 1)))
    roc = float(roc_auc_score(y, p)) if 0 < positives < n else None
    pr = float(average_precision_score(y, p)) if positives > 0 else None
    gap = float(p.mean() - y.mean()) if n else None
    gap_half = Z95 * float(np.std(p - y, ddof=1)) / math.sqrt(n) if n > 1 else None
    gap_interval = (
        (None, None) if gap is None or gap_half is None else (gap - gap_half, gap + gap_half)
    )
    row: dict[str, Any] = {
        "rows": n,
        "positives": positives,
        "mean_predicted": float(p.mean()) if n else None,
    }
    row |= _with_interval(
        "roc_auc",
        roc,
        (None, None) if roc is None else hanley_mcneil_interval(roc, positives, negatives),
    )
    row |= _with_interval(
        "pr_auc", pr, (None, None) if pr is None else logit_interval(pr, positives)
    )
    row |= _with_interval("calibration_gap", gap, gap_interval)
    row |= _with_interval(
        "positive_rate", positives / n if n else None, wilson_interval(positives, n)
    )
    row |= _with_interval(
        "fpr", fp / negatives if negatives else None, wilson_interval(fp, negatives)
    )
    row |= _with_interval(
        "fnr", fn / positives if positives else None, wilson_interval(fn, positives)
    )
    return row


def area_labels(column: pd.Series) -> pd.Series:
    """An area column as text keys ('009', '25'); missing areas become NA."""
    if pd.api.types.is_numeric_dtype(column):
        numbers = pd.to_numeric(column, errors="coerce").astype("Int64")
        return numbers.astype("string")
    return column.astype("string").str.strip().replace("", pd.NA)


def audit_by(
    frame: pd.DataFrame,
    y: np.ndarray,
    proba: np.ndarray,
    threshold: float,
    column: str,
    min_rows: int = MIN_AREA_ROWS,
) -> pd.DataFrame:
    """One row per value of `column` (areas under `min_rows` rows pooled), largest areas first."""
    if column not in frame.columns:
        raise ValueError(f"cannot audit by {column!r}: the frame has no such column")
    if len(frame) != len(y) or len(y) != len(proba):
        raise ValueError(f"audit: {len(frame)} rows, {len(y)} labels, {len(proba)} probabilities")
    y, proba = np.asarray(y), np.asarray(proba, dtype="float64")
    # Codes in order of first appearance; a missing area gets -1 and always goes to the pool.
    codes, names = pd.factorize(area_labels(frame[column]))
    counts = np.bincount(codes[codes >= 0], minlength=len(names))
    kept = [c for c in np.argsort(-counts, kind="stable") if counts[c] >= min_rows]
    rows = []
    for code in kept:
        mask = codes == code
        head = {"area": str(names[code]), "pooled": False, "areas_pooled": 0}
        rows.append(head | area_metrics(y[mask], proba[mask], threshold))
    small = ~np.isin(codes, kept)
    if small.any():
        head = {"area": POOLED, "pooled": True, "areas_pooled": int((counts < min_rows).sum())}
        rows.append(head | area_metrics(y[small], proba[small], threshold))
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    return table.astype({"rows": "int64", "positives": "int64", "areas_pooled": "int64"})


def largest_gaps(table: pd.DataFrame, top: int = 3) -> pd.DataFrame:
    """The `top` worst areas per metric (pooled rows left out) with how far they are from the
    best area, and whether their 95 % intervals are apart (a gap, not noise)."""
    areas = table[~table["pooled"]]
    rows = []
    for metric, high_is_bad in GAP_METRICS:
        values = areas.dropna(subset=[metric])
        if values.empty:
            continue
        key = values[metric].abs() if metric == "calibration_gap" else values[metric]
        order = key.sort_values(ascending=not high_is_bad).index
        best = values.loc[order[-1]]
        for rank, index in enumerate(order[:top], start=1):
            worst = values.loc[index]
            apart = (
                worst[f"{metric}_high"] < best[f"{metric}_low"]
                if not high_is_bad
                else worst[f"{metric}_low"] > best[f"{metric}_high"]
            )
            rows.append(
                {
                    "metric": metric,
                    "rank": rank,
                    "area": worst["area"],
                    "rows": int(worst["rows"]),
                    "value": worst[metric],
                    "low": worst[f"{metric}_low"],
                    "high": worst[f"{metric}_high"],
                    "best_area": best["area"],
                    "best_value": best[metric],
                    "gap_to_best": abs(float(worst[metric]) - float(best[metric])),
                    "intervals_apart": bool(apart),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "metric",
            "rank",
            "area",
            "rows",
            "value",
            "low",
            "high",
            "best_area",
            "best_value",
            "gap_to_best",
            "intervals_apart",
        ],
    )


def audit_tables(
    frame: pd.DataFrame,
    y: np.ndarray,
    proba: np.ndarray,
    threshold: float,
    min_rows: int = MIN_AREA_ROWS,
) -> dict[str, pd.DataFrame]:
    """The audit: {"per_district", "per_community_area", "largest_gaps"} (gaps of both layers,
    told apart by their `by` column)."""
    tables = {
        name: audit_by(frame, y, proba, threshold, column, min_rows)
        for name, column in AREA_COLUMNS.items()
    }
    gaps = [
        largest_gaps(tables[name]).assign(by=column).loc[:, lambda t: ["by", *t.columns[:-1]]]
        for name, column in AREA_COLUMNS.items()
    ]
    tables["largest_gaps"] = pd.concat(gaps, ignore_index=True)
    return tables
