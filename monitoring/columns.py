"""What the drift check monitors, and each column prepared for Evidently from a canonical frame.

Which columns and why, and how categories are pooled: the docstring of `monitoring.drift`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

Kind = Literal["categorical", "numerical"]

MISSING = "__missing__"
OTHER = "__other__"
PROBABILITY = "probability"
# Where each side keeps the model's score (log: `probability`; reference: `arrest_probability`)
# and the true outcome.
PROBABILITY_SOURCES = ("probability", "arrest_probability")
REFERENCE_LABEL = "arrest"
CURRENT_LABEL = "feedback_arrest"
# Expected count per category below which chi-square's approximation is not trusted.
MIN_EXPECTED_COUNT = 5


@dataclass(frozen=True)
class MonitoredColumn:
    """One column the drift check covers: its kind and the raw field it comes from."""

    name: str
    kind: Kind
    source: str


MONITORED_COLUMNS: tuple[MonitoredColumn, ...] = (
    MonitoredColumn("primary_type", "categorical", "primary_type"),
    MonitoredColumn("iucr", "categorical", "iucr"),
    MonitoredColumn("fbi_code", "categorical", "fbi_code"),
    MonitoredColumn("location_description", "categorical", "location_description"),
    MonitoredColumn("domestic", "categorical", "domestic"),
    MonitoredColumn("district", "categorical", "district"),
    MonitoredColumn("beat", "categorical", "beat"),
    MonitoredColumn("community_area", "categorical", "community_area"),
    MonitoredColumn("latitude", "numerical", "latitude"),
    MonitoredColumn("longitude", "numerical", "longitude"),
    MonitoredColumn("hour", "numerical", "date"),
)
CATEGORICAL_COLUMNS = tuple(c.name for c in MONITORED_COLUMNS if c.kind == "categorical")
NUMERICAL_COLUMNS = tuple(c.name for c in MONITORED_COLUMNS if c.kind == "numerical")


def _categorical_text(values: pd.Series) -> pd.Series:
    """Category values as plain strings, missing as `MISSING`."""
    if pd.api.types.is_bool_dtype(values):
        text = values.astype("boolean").map({True: "true", False: "false"}, na_action="ignore")
    elif pd.api.types.is_float_dtype(values) and (values.dropna() % 1 == 0).all():
        # A code stored as float on one side (25.0) must match the Int64 code (25) on the other.
        text = values.astype("Int64").astype("string")
    else:
        text = values.astype("string")
    return text.astype("string").fillna(MISSING).astype(object)


def _numbers(values: pd.Series) -> pd.Series:
    """Float64 values (nullable and object inputs included), missing as NaN."""
    return pd.to_numeric(values, errors="coerce").astype("float64")


def model_probability(frame: pd.DataFrame) -> pd.Series | None:
    """The model's score from either naming (`probability` or `arrest_probability`)."""
    for name in PROBABILITY_SOURCES:
        if name in frame.columns:
            return _numbers(frame[name])
    return None


def monitored_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The monitored columns (plus `probability` when present) derived from a canonical frame."""
    columns: dict[str, pd.Series] = {}
    for column in MONITORED_COLUMNS:
        if column.name == "hour":
            source = frame.get("date")
            if source is None:
                values = pd.Series(np.nan, index=frame.index)
            else:
                dates = source
                if not pd.api.types.is_datetime64_any_dtype(dates):
                    dates = pd.to_datetime(dates, errors="coerce")
                values = dates.dt.hour.astype("float64")
        else:
            source = frame.get(column.source)
            values = pd.Series(pd.NA, index=frame.index) if source is None else source
        if column.kind == "categorical":
            columns[column.name] = _categorical_text(values)
        else:
            columns[column.name] = _numbers(values)
    probability = model_probability(frame)
    if probability is not None:
        columns[PROBABILITY] = probability
    return pd.DataFrame(columns, index=frame.index)


def pool_rare_levels(
    reference: pd.Series, current: pd.Series, min_share: float
) -> tuple[pd.Series, pd.Series]:
    """Pool levels rarer than `min_share` in the reference, and unknown ones, into `OTHER`.

    `OTHER` is topped up with the rarest kept levels until it holds `min_share` of the
    reference too: a level the reference never has gets an expected count of zero, and
    chi-square would call a single new value in the window a certain drift.
    """
    shares = reference.value_counts(normalize=True)
    kept = shares[shares >= min_share]
    other_share = 1.0 - float(kept.sum())
    while other_share < min_share and len(kept) > 1:
        other_share += float(kept.iloc[-1])
        kept = kept.iloc[:-1]
    levels = kept.index
    return reference.where(reference.isin(levels), OTHER), current.where(
        current.isin(levels), OTHER
    )


def unseen_share(reference: pd.Series, current: pd.Series) -> float:
    """Share of current non-missing values that never occur in the reference."""
    present = current[current != MISSING]
    if present.empty:
        return 0.0
    return float((~present.isin(pd.unique(reference))).mean())
