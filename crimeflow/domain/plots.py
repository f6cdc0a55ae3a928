"""Evaluation plots logged with every training run: ROC, PR, calibration, confusion, importance,
and the per-area audit map."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)


def _axes(title: str) -> tuple[Figure, Any]:
    """A small figure with one titled axes (no pyplot state: safe in worker threads)."""
    figure = Figure(figsize=(4.5, 4), dpi=90)
    ax = figure.subplots()
    ax.set_title(title, fontsize=10)
    return figure, ax


def roc_figure(y: np.ndarray, proba: np.ndarray) -> Figure:
    """ROC curve with its AUC and the chance diagonal."""
    fpr, tpr, _ = roc_curve(y, proba)
    figure, ax = _axes(f"ROC (AUC {roc_auc_score(y, proba):.3f})")
    ax.plot(fpr, tpr, color="#4c78a8")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    return figure


def pr_figure(y: np.ndarray, proba: np.ndarray, threshold: float) -> Figure:
    """Precision-recall curve, the prior as baseline, and the operating point at `threshold`."""
    precision, recall, _ = precision_recall_curve(y, proba)
    figure, ax = _axes(f"Precision-recall (AP {average_precision_score(y, proba):.3f})")
    ax.plot(recall, precision, color="#4c78a8")
    ax.axhline(y.mean(), ls="--", color="grey", lw=0.8, label=f"prior {y.mean():.2f}")
    predicted = proba >= threshold
    tp = float((predicted & (y == 1)).sum())
    if predicted.any():
        ax.scatter(
            [tp / max(y.sum(), 1)],
            [tp / predicted.sum()],
            color="#e45756",
            zorder=3,
            label=f"threshold {threshold:.2f}",
        )
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.legend(fontsize=8)
    return figure


def calibration_figure(y: np.ndarray, proba: np.ndarray) -> Figure:
    """Reliability diagram: mean predicted vs observed arrest rate per probability bin."""
    observed, predicted = calibration_curve(y, proba, n_bins=10, strategy="quantile")
    figure, ax = _axes(f"Calibration (mean {proba.mean():.3f} vs observed {y.mean():.3f})")
    ax.plot(predicted, observed, marker="o", color="#4c78a8")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed arrest rate")
    return figure


def confusion_figure(y: np.ndarray, proba: np.ndarray, threshold: float) -> Figure:
    """Confusion matrix at the stored decision threshold."""
    predicted = (proba >= threshold).astype(int)
    matrix = np.array([[((y == a) & (predicted == p)).sum() for p in (0, 1)] for a in (0, 1)])
    figure, ax = _axes(f"Confusion at threshold {threshold:.2f}")
    ax.imshow(matrix, cmap="Blues")
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(col, row, f"{count:,}", ha="center", va="center", fontsize=10)
    ax.set_xticks([0, 1], ["no arrest", "arrest"])
    ax.set_yticks([0, 1], ["no arrest", "arrest"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    return figure


def permutation_importances(
    estimator: Any, frame: pd.DataFrame, y: np.ndarray, columns: list[str], seed: int = 0
) -> pd.Series:
    """Drop in PR-AUC when each raw input column is shuffled (what the model relies on)."""
    result = permutation_importance(
        estimator, frame[columns], y, scoring="average_precision", n_repeats=3, random_state=seed
    )
    return pd.Series(result.importances_mean, index=columns).sort_values(ascending=False)


def importance_figure(importances: pd.Series) -> Figure:
    """Horizontal bars of permutation importance, largest on top."""
    top = importances.head(15).iloc[::-1]
    figure, ax = _axes("Permutation importance (PR-AUC drop)")
    ax.barh(top.index, top.to_numpy(), color="#4c78a8")
    ax.tick_params(labelsize=7)
    figure.tight_layout()
    return figure


def area_map_figure(
    table: pd.DataFrame, boundaries: Any, metric: str = "pr_auc", title: str | None = None
) -> Figure:
    """Choropleth of one audited metric per area (`audit_by` table) over the boundary layer.

    Areas without their own row (pooled for too few rows, or absent) are drawn hatched grey.
    """
    id_column = next(c for c in ("community_area", "district") if c in boundaries.columns)
    keys = pd.to_numeric(boundaries[id_column], errors="coerce").astype("Int64").astype("string")
    own = table[~table["pooled"]]
    values = pd.to_numeric(own["area"], errors="coerce").astype("Int64").astype("string")
    by_area = pd.Series(own[metric].to_numpy(dtype="float64"), index=values.to_numpy())
    shaded = boundaries.assign(value=keys.map(by_area).astype("float64").to_numpy())
    figure = Figure(figsize=(5.5, 6.5), dpi=90)
    ax = figure.subplots()
    shaded.plot(
        ax=ax,
        column="value",
        cmap="viridis",
        legend=True,
        legend_kwds={"label": metric, "shrink": 0.6},
        missing_kwds={"color": "lightgrey", "hatch": "///", "label": "pooled (too few rows)"},
        edgecolor="white",
        linewidth=0.4,
    )
    ax.set_title(title or f"{metric} by {id_column.replace('_', ' ')}", fontsize=10)
    ax.set_axis_off()
    figure.tight_layout()
    return figure
