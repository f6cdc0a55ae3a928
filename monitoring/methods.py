"""Each column's Evidently method and threshold for one check: p-values or distances.

The table and the reasons for it: the docstring of `monitoring.drift`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pandas as pd

from monitoring.columns import MONITORED_COLUMNS, PROBABILITY, Kind

if TYPE_CHECKING:
    from monitoring.drift import DriftConfig

Statistic = Literal["p_value", "distance"]

# Evidently stattest per (kind, regime); the reasons are in the docstring of monitoring.drift.
METHODS: dict[tuple[Kind, Statistic], str] = {
    ("categorical", "p_value"): "chisquare",
    ("categorical", "distance"): "jensenshannon",
    ("numerical", "p_value"): "ks",
    ("numerical", "distance"): "wasserstein",
}


def exceeds(score: float | None, threshold: float, statistic: Statistic) -> bool:
    """Whether a score means drift: p-value below the threshold, distance at or above it."""
    if score is None or not math.isfinite(score):
        return False
    return score < threshold if statistic == "p_value" else score >= threshold


def regime(reference_rows: int, current_rows: int, config: DriftConfig) -> Statistic:
    """p-value tests when the smaller side is small, distances otherwise."""
    return (
        "p_value" if min(reference_rows, current_rows) <= config.small_sample_rows else "distance"
    )


def js_chance_floor(levels: int, reference_rows: int, current_rows: int, alpha: float) -> float:
    """The JS distance two same-distribution samples exceed with probability `alpha`."""
    from scipy.stats import chi2

    if levels < 2 or reference_rows < 1 or current_rows < 1:
        return 0.0
    # Two samples from one distribution: sum (p - q)^2 / m ~ chi2(k - 1) * (1/n1 + 1/n2), and
    # JS divergence ~ that sum / 8 for small differences; the distance is its square root.
    quantile = float(chi2.ppf(1.0 - alpha, levels - 1))
    return math.sqrt(quantile * (1.0 / reference_rows + 1.0 / current_rows) / 8.0)


@dataclass(frozen=True)
class Plan:
    """Per-column methods and thresholds for one check, and what was left out."""

    statistic: Statistic
    methods: dict[str, str]
    thresholds: dict[str, float]
    columns: list[str]
    skipped: list[str]


def plan_columns(
    reference: pd.DataFrame, current: pd.DataFrame, config: DriftConfig, statistic: Statistic
) -> Plan:
    """Choose each column's Evidently method and threshold for this pair of samples."""
    methods: dict[str, str] = {}
    thresholds: dict[str, float] = {}
    columns: list[str] = []
    skipped: list[str] = []
    for column in MONITORED_COLUMNS:
        name = column.name
        if column.kind == "numerical" and (
            reference[name].notna().sum() == 0 or current[name].notna().sum() == 0
        ):
            # Evidently cannot compare an empty side (e.g. a client that never sends
            # coordinates); say so instead of failing the whole check.
            skipped.append(name)
            continue
        columns.append(name)
        methods[name] = METHODS[(column.kind, statistic)]
        thresholds[name] = _threshold(column.kind, statistic, reference, current, name, config)
    if _has_values(reference, PROBABILITY) and _has_values(current, PROBABILITY):
        methods[PROBABILITY] = METHODS[("numerical", statistic)]
        thresholds[PROBABILITY] = _threshold(
            "numerical", statistic, reference, current, PROBABILITY, config
        )
    return Plan(statistic, methods, thresholds, columns, skipped)


def _has_values(frame: pd.DataFrame, name: str) -> bool:
    """Whether `frame` has column `name` with at least one non-missing value."""
    return name in frame.columns and bool(frame[name].notna().any())


def _threshold(
    kind: Kind,
    statistic: Statistic,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    name: str,
    config: DriftConfig,
) -> float:
    """The drift threshold of one column in this regime (JS raised to its chance floor)."""
    if statistic == "p_value":
        return config.p_value_threshold
    if kind == "numerical":
        return config.numerical_distance_threshold
    levels = len(pd.unique(pd.concat([reference[name], current[name]], ignore_index=True)))
    floor = js_chance_floor(levels, len(reference), len(current), config.chance_alpha)
    return max(config.categorical_distance_threshold, floor)
