"""Why the model scored an incident as it did: exact contributions in a person's terms.

`Explainer` runs an incident through the fitted pipeline up to the classifier, computes exact
Shapley contributions of the classifier's inputs (`crimeflow.domain.treeshap`: path-dependent
TreeSHAP for HistGradientBoosting and random forests, coefficient x deviation for logistic
regression) and sums them per readable feature: the target encoding of `iucr`, the one-hot
columns of `day_part` and the hour's sine and cosine all become "hour" or "crime code", and so
on. Sums of Shapley values keep additivity: base value + every readable contribution = the
classifier's raw score (log-odds for HGB and logistic regression, the forest's probability),
*before* calibration. Calibration is monotone, so a positive contribution always pushes the
served probability up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from crimeflow.domain.features import DISTANCE_COLUMN, MISSING_CATEGORY, cross_name
from crimeflow.domain.model import ArrestModel, _threadpools, selected_feature_names
from crimeflow.domain.treeshap import (
    LeafTable,
    LinearExplainer,
    UnsupportedModelError,
    leaf_table,
    linear_explainer,
)

__all__ = [
    "READABLE",
    "Contribution",
    "Explainer",
    "Explanation",
    "UnsupportedModelError",
    "global_importance",
    "importance_figure",
    "readable_feature",
]

# Every model input column (before encoding) -> the feature a person recognises.
READABLE: dict[str, str] = {
    "primary_type": "crime type",
    "iucr": "crime code (IUCR)",
    "description": "crime description",
    "location_description": "location description",
    "fbi_code": "FBI code",
    "domestic": "domestic",
    "beat": "beat",
    "district": "district",
    "ward": "ward",
    "community_area": "community area",
    "nearest_station_district": "nearest police station",
    cross_name("iucr", "location_description"): "crime code at this kind of place",
    cross_name("primary_type", "location_description"): "crime type at this kind of place",
    cross_name("primary_type", "domestic"): "crime type, domestic or not",
    cross_name("primary_type", "beat"): "crime type in this beat",
    DISTANCE_COLUMN: "distance to police station",
    "station_distance_missing": "distance to police station",
    "x_feet": "location (coordinates)",
    "y_feet": "location (coordinates)",
    "hour": "hour",
    "hour_sin": "hour",
    "hour_cos": "hour",
    "day_part": "hour",
    "weekday": "day of week",
    "weekday_sin": "day of week",
    "weekday_cos": "day of week",
    "is_weekend": "day of week",
    "season": "month",
    "month_sin": "month",
    "month_cos": "month",
    "minute": "time as recorded (exact or rounded)",
    "time_on_hour": "time as recorded (exact or rounded)",
    "time_on_5_minutes": "time as recorded (exact or rounded)",
    "time_midnight": "time as recorded (exact or rounded)",
    "time_noon": "time as recorded (exact or rounded)",
    "first_of_month": "time as recorded (exact or rounded)",
}
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

Value = str | int | float | None


def readable_feature(encoded: str) -> str:
    """The readable feature of an encoded column name (`district=011`, `target__iucr`, ...)."""
    column = encoded.split("=", 1)[0].removeprefix("target__")
    column = column.removeprefix("log_") if column == f"log_{DISTANCE_COLUMN}" else column
    # A feature added to the pipeline later is still explained, under its column name.
    return READABLE.get(column, column)


@dataclass(frozen=True)
class Contribution:
    """One readable feature's value for this incident and its push on the score."""

    feature: str
    value: Value
    contribution: float


@dataclass(frozen=True)
class Explanation:
    """One incident: base value + the sum of all contributions = `raw_score` (exactly)."""

    base_value: float
    raw_score: float
    contributions: list[Contribution]  # the top ones by |contribution|, largest first


class Explainer:
    """Exact contributions for a fitted ArrestModel, grouped into readable features."""

    def __init__(self, model: ArrestModel) -> None:
        pipeline = model.pipeline
        classifier = pipeline.named_steps["classifier"]
        self.core: LeafTable | LinearExplainer = _core_of(pipeline, classifier)
        self.feature_names = selected_feature_names(pipeline)
        if len(self.feature_names) != self.core.n_features:
            raise UnsupportedModelError("the classifier's inputs do not match the selected names")
        self.features = list(dict.fromkeys(readable_feature(n) for n in self.feature_names))
        # (n_inputs, n_readable) 0/1: one matrix product sums the columns of each feature.
        groups = np.zeros((len(self.feature_names), len(self.features)))
        for row, name in enumerate(self.feature_names):
            groups[row, self.features.index(readable_feature(name))] = 1.0
        self._groups = groups
        self._pipeline = pipeline
        unit = self.core.scale
        self.scale = f"{unit} before calibration" if model.calibrator is not None else unit
        self.method = self.core.method
        self.base_value = float(self.core.base_value)

    def contributions(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(per-readable-feature contributions, the enriched frame) of raw-incident rows."""
        matrix, enriched = self._classifier_input(frame)
        with _threadpools().limit(limits=1):
            values = self.core.shap_values(matrix) @ self._groups
        return pd.DataFrame(values, columns=self.features, index=frame.index), enriched

    def explain(self, frame: pd.DataFrame, top: int = 5) -> list[Explanation]:
        """The `top` readable contributions of every row, with the base value and raw score."""
        if top < 1:
            raise ValueError("top must be >= 1")
        table, enriched = self.contributions(frame)
        values = table.to_numpy()
        totals = values.sum(axis=1) + self.base_value
        order = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :top]
        out = []
        for row in range(len(values)):
            picked = [
                Contribution(
                    feature=self.features[j],
                    value=_value_of(self.features[j], frame, enriched, row),
                    contribution=float(values[row, j]),
                )
                for j in order[row]
            ]
            out.append(Explanation(self.base_value, float(totals[row]), picked))
        return out

    def _classifier_input(self, frame: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
        """The matrix the classifier sees, and the enriched frame (for readable values)."""
        data: Any = frame
        enriched = frame
        for name, step in self._pipeline.steps[:-1]:
            if step is None or step == "passthrough" or hasattr(step, "fit_resample"):
                continue  # samplers act at fit time only
            data = step.transform(data)
            if name == "enrich":
                enriched = data
        return np.asarray(data, dtype="float64"), enriched


def _core_of(pipeline: Any, classifier: Any) -> LeafTable | LinearExplainer:
    """The exact method for the pipeline's classifier."""
    if isinstance(classifier, HistGradientBoostingClassifier | RandomForestClassifier):
        return leaf_table(classifier)
    if isinstance(classifier, LogisticRegression):
        scaler = pipeline.named_steps.get("scale")
        if not isinstance(scaler, StandardScaler):
            raise UnsupportedModelError("a logistic regression needs its StandardScaler step")
        # Standardised inputs: the training mean is the origin.
        return linear_explainer(classifier, np.zeros(classifier.coef_.shape[1]))
    raise UnsupportedModelError(f"no exact contribution method for {type(classifier).__name__}")


def _category(value: Any) -> Value:
    """A category label as sent, missing as None."""
    if value is None or value == MISSING_CATEGORY or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value)


def _value_of(feature: str, frame: pd.DataFrame, enriched: pd.DataFrame, row: int) -> Value:
    """What the incident says for a readable feature (codes as text, distance in meters)."""
    columns = [c for c, name in READABLE.items() if name == feature] or [feature]
    at = enriched.iloc[row]
    if feature == READABLE[DISTANCE_COLUMN]:
        distance = at[DISTANCE_COLUMN]
        return None if np.isnan(distance) else round(float(distance), 1)
    if feature in ("hour", "day of week", "month", READABLE["minute"]):
        date = frame["date"].iloc[row]
        if pd.isna(date):
            return None
        if feature == "hour":
            return int(date.hour)
        if feature == "day of week":
            return _WEEKDAYS[date.weekday()]
        if feature == "month":
            return int(date.month)
        return f"{date.hour:02d}:{date.minute:02d}"
    if feature == READABLE["x_feet"]:
        lat, lon = frame["latitude"].iloc[row], frame["longitude"].iloc[row]
        return None if pd.isna(lat) or pd.isna(lon) else f"{float(lat):.4f}, {float(lon):.4f}"
    sides = columns[0].split("__x__")
    parts = [_category(at[side]) if side in at.index else None for side in sides]
    if any(part is None for part in parts):
        return None if len(parts) == 1 else " | ".join(p or "(missing)" for p in parts)
    return " | ".join(str(p) for p in parts)


def global_importance(explainer: Explainer, frame: pd.DataFrame) -> pd.DataFrame:
    """Mean |contribution| per readable feature over `frame`, largest first, with its share."""
    table, _ = explainer.contributions(frame)
    mean_abs = table.abs().mean(axis=0).sort_values(ascending=False)
    total = float(mean_abs.sum())
    return pd.DataFrame(
        {
            "feature": mean_abs.index,
            "mean_abs_contribution": mean_abs.to_numpy(),
            "share": mean_abs.to_numpy() / total if total > 0 else 0.0,
        }
    )


def importance_figure(importance: pd.DataFrame, scale: str) -> Figure:
    """Horizontal bars of mean |contribution| per readable feature, largest on top."""
    top = importance.head(15).iloc[::-1]
    figure = Figure(figsize=(5, 4), dpi=90)  # no pyplot state: safe in worker threads
    ax = figure.subplots()
    ax.set_title("Mean |contribution| (exact Shapley)", fontsize=10)
    ax.barh(top["feature"], top["mean_abs_contribution"], color="#4c78a8")
    ax.set_xlabel(scale, fontsize=8)
    ax.tick_params(labelsize=7)
    figure.tight_layout()
    return figure


def explain_many(
    explainer: Explainer, frame: pd.DataFrame, top: int, chunk: int = 256
) -> Sequence[Explanation]:
    """`explainer.explain` in chunks of rows (bounded memory for a large batch)."""
    out: list[Explanation] = []
    for start in range(0, len(frame), chunk):
        out += explainer.explain(frame.iloc[start : start + chunk], top)
    return out
