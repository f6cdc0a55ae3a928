"""Data and prediction drift of served traffic against the champion's reference, with Evidently 0.7.

Reference: the sample of training-period incidents the champion logged to MLflow
(`reference/reference.parquet`: SODA fields plus `arrest_probability`). Current: a window of the
API's prediction log (SODA input fields plus `probability`, `served_at`, `feedback_arrest`...).
`compute_drift` turns both into the monitored columns below, samples large windows (seeded,
stratified by day), runs one Evidently `Report` and reads Evidently's own per-column verdicts
into a typed `DriftResult`. Nothing here does I/O; `monitoring.report_store` stores the outcome.

Monitored columns (`MONITORED_COLUMNS`) and why:

- categorical: `primary_type`, `iucr`, `fbi_code` (the offence), `location_description`,
  `domestic`, `district`, `beat`, `community_area` (the place, as the model's encoders see it);
- numerical: `latitude`, `longitude` (the place, continuous) and `hour` (derived from `date`).

Left out on purpose: `id`, `case_number` (identifiers), `block` (free text), `description` (a
function of `iucr`: it would double-count every offence shift), `ward` (a fourth coding of place
next to district/beat/community area: it would tilt the drifted share towards location),
`x_coordinate`/`y_coordinate` (the same point as latitude/longitude), `year` and the datetimes
`date`/`updated_on` (a week of traffic always "drifts" in time against a year of history;
`hour` keeps the part of `date` the model uses), and month/weekday (a window of a few days
cannot have the reference's mix of them). The label is not an input: labelled rows feed the
classification-performance section instead.

Methods (set per column through Evidently's `per_column_method` / `per_column_threshold`; the
verdict is Evidently's per-column test status, never a re-implementation):

| column kind | sample regime | method (Evidently name) | score is | drifted when |
|---|---|---|---|---|
| categorical | small | chi-square (`chisquare`) | p-value | p < 0.01 |
| categorical | large | Jensen-Shannon (`jensenshannon`) | distance | d >= max(0.1, chance floor) |
| numerical | small | Kolmogorov-Smirnov (`ks`) | p-value | p <= 0.01 |
| numerical | large | normed Wasserstein (`wasserstein`) | distance | d >= 0.1 |
| prediction (`probability`) | small / large | `ks` / `wasserstein` | as above | as above |

"Small" means the smaller side has at most `DriftConfig.small_sample_rows` (1,000) rows after
sampling. That is Evidently's own switch point, but decided on the smaller side: Evidently looks
at the reference only, so a 300-row window against a 20k-row reference would get distance
scores, which are biased upwards on small samples. Why these tests:

- p-values below 1,000 rows: with a few hundred rows a distance between two samples is mostly
  sampling noise, while a test knows how large chance differences are at that size. 0.01 instead
  of Evidently's 0.05 because eleven columns are tested at once.
- distances above: at 100k rows chi-square and K-S call every trivial difference (a seasonal
  wobble in the offence mix) significant; a distance measures how large the shift is.
  Jensen-Shannon (not PSI) because it stays finite when a category is missing on one side - a
  renamed location is exactly that - and is bounded. Normed Wasserstein for numbers because it
  measures how far the mass moved in units of the reference's spread (0.1 = a tenth of a std).
- the JS "chance floor": even without drift, the JS distance of two finite samples is about
  sqrt(chi2_{k-1} * (1/n_ref + 1/n_cur) / 8) for k levels. At 1,000-5,000 rows and 100+ levels
  that exceeds 0.1 by itself, so the threshold is raised to that value's (1 - 0.001) quantile:
  a column drifts only when the shift is both material and beyond chance.
- categories: missing values become `__missing__` (a change in missingness is drift too) and
  levels rarer than `min_category_share` in the reference (or than 5 expected rows in the
  current window) are pooled into `__other__`, with values the reference never had; `__other__`
  always keeps some reference mass (the rarest kept levels join it if needed), so one new value
  is not an infinite chi-square. That keeps chi-square's expected counts valid and the JS
  estimate stable; a vocabulary change still shows, as `__other__` growing.

Dataset verdict: drift when any of these holds (`DriftResult.reasons` says which):

1. the share of drifted monitored columns reaches `DriftConfig.drift_share` (0.25: e.g. the
   three offence columns out of eleven);
2. a categorical column has at least `max_unseen_share` (5 %) of current values the reference
   never contained: the model has never seen them, whatever else moved (a location vocabulary
   change touches one column only and would never reach a column share);
3. the prediction drifted (`prediction_drift_is_drift`, on by default): the probability is what
   the model makes of all its inputs, so a shift there is a shift that matters to the model,
   even when it is spread thinly over the columns.

Classification performance on rows with feedback labels is reported alongside, not folded into
the verdict: feedback arrives late and is biased towards the arrests recorded first. Below
`min_current_rows` current rows (or `min_reference_rows`) the result is "insufficient_data" and
`drift_detected` is None, never "no drift". A column whose levels all pool into `__other__`
(beats in a 300-row window) cannot be tested: its score is None and it does not drift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import numpy as np
import pandas as pd

from crimeflow.contract.settings import DriftSettings

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

Kind = Literal["categorical", "numerical"]
Statistic = Literal["p_value", "distance"]
Status = Literal["drift", "no_drift", "insufficient_data"]

MISSING = "__missing__"
OTHER = "__other__"
PROBABILITY = "probability"
TARGET = "target"
# Where each side keeps the model's score (log: `probability`; reference: `arrest_probability`)
# and the true outcome.
PROBABILITY_SOURCES = ("probability", "arrest_probability")
REFERENCE_LABEL = "arrest"
CURRENT_LABEL = "feedback_arrest"
# Expected count per category below which chi-square's approximation is not trusted.
MIN_EXPECTED_COUNT = 5
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

# Evidently stattest per (kind, regime); see the module docstring for the reasons.
METHODS: dict[tuple[Kind, Statistic], str] = {
    ("categorical", "p_value"): "chisquare",
    ("categorical", "distance"): "jensenshannon",
    ("numerical", "p_value"): "ks",
    ("numerical", "distance"): "wasserstein",
}


@dataclass(frozen=True)
class DriftConfig:
    """How a drift check decides; defaults are the documented choices (module docstring)."""

    min_current_rows: int = 200
    min_reference_rows: int = 200
    max_rows: int = 50_000
    drift_share: float = 0.25
    max_unseen_share: float = 0.05
    min_labelled_rows: int = 200
    seed: int = 0
    small_sample_rows: int = 1_000
    p_value_threshold: float = 0.01
    categorical_distance_threshold: float = 0.1
    numerical_distance_threshold: float = 0.1
    chance_alpha: float = 0.001
    min_category_share: float = 0.005
    prediction_drift_is_drift: bool = True

    def __post_init__(self) -> None:
        for name in ("min_current_rows", "min_reference_rows", "min_labelled_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.max_rows < self.min_current_rows:
            raise ValueError("max_rows must be >= min_current_rows")
        for name in ("drift_share", "max_unseen_share", "p_value_threshold", "chance_alpha"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value!r}")
        for name in ("categorical_distance_threshold", "numerical_distance_threshold"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if not 0 <= self.min_category_share < 1:
            raise ValueError("min_category_share must be in [0, 1)")

    @classmethod
    def from_settings(cls, drift: DriftSettings) -> DriftConfig:
        """The rules the `CRIMEFLOW_DRIFT_*` settings choose; the rest keep their defaults."""
        return cls(
            min_current_rows=drift.min_current_rows,
            max_rows=drift.max_rows,
            drift_share=drift.share,
            max_unseen_share=drift.max_unseen_share,
            min_labelled_rows=drift.min_labelled_rows,
            seed=drift.seed,
            prediction_drift_is_drift=drift.prediction_triggers,
        )


class ColumnDrift(msgspec.Struct, frozen=True, kw_only=True):
    """Evidently's verdict on one column: method, score, threshold and whether it drifted.

    `statistic` says how to read `score`: a p-value drifts when it is *below* the threshold,
    a distance when it is *at or above* it. `unseen_share` (categorical columns only) is the
    share of current values the reference never contained.
    """

    name: str
    kind: Kind
    method: str
    statistic: Statistic
    score: float | None
    threshold: float
    drifted: bool
    unseen_share: float | None = None


class DriftResult(msgspec.Struct, kw_only=True):
    """The outcome of one drift check, JSON-serializable (`to_json` / `from_json`)."""

    status: Status
    drift_detected: bool | None
    drift_share: float | None
    drift_share_threshold: float
    drifted_columns: list[str]
    columns: list[ColumnDrift]
    prediction_drift: ColumnDrift | None
    performance: dict[str, Any] | None
    reasons: list[str]
    current_rows: int
    reference_rows: int
    sampled_current_rows: int
    sampled_reference_rows: int
    labelled_rows: int
    window_start: datetime | None
    window_end: datetime | None
    model_version: str | None
    checked_at: datetime
    skipped_columns: list[str] = []

    def to_json(self) -> bytes:
        """The result as JSON bytes."""
        return msgspec.json.encode(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> DriftResult:
        """Read a result written by `to_json`."""
        return msgspec.json.decode(data, type=cls)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready builtins (datetimes as ISO text)."""
        return msgspec.to_builtins(self)


# --- pure helpers --------------------------------------------------------------------------


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


def _day_keys(values: pd.Series) -> np.ndarray:
    """An integer per calendar day of a datetime column (-1 for missing)."""
    if not pd.api.types.is_datetime64_any_dtype(values):
        values = pd.to_datetime(values, errors="coerce")
    codes, _ = pd.factorize(values.dt.normalize(), use_na_sentinel=True)
    return codes


def sample_positions(frame: pd.DataFrame, max_rows: int, seed: int, time_column: str) -> np.ndarray:
    """Positions of the rows `sample_by_day` keeps (all rows when the frame is small enough)."""
    if max_rows < 0:
        raise ValueError("max_rows must be >= 0")
    if len(frame) <= max_rows:
        return np.arange(len(frame))
    if time_column in frame.columns:
        days = _day_keys(frame[time_column])
    else:
        days = np.zeros(len(frame), dtype=np.int64)
    _, strata = np.unique(days, return_inverse=True)
    counts = np.bincount(strata)
    exact = counts * (max_rows / len(frame))
    quota = np.floor(exact).astype(np.int64)
    short = max_rows - int(quota.sum())
    if short:
        # Largest remainders first; ties broken by stratum order, so it is deterministic.
        by_remainder = np.argsort(-(exact - quota), kind="stable")
        quota[by_remainder[:short]] += 1
    keys = np.random.default_rng(seed).random(len(frame))
    # Rank rows inside their day by a random key; a row is kept when its rank is within quota.
    order = np.lexsort((keys, strata))
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(len(frame), dtype=np.int64)
    rank[order] = np.arange(len(frame)) - first[strata[order]]
    return np.flatnonzero(rank < quota[strata])


def sample_by_day(frame: pd.DataFrame, max_rows: int, seed: int, time_column: str) -> pd.DataFrame:
    """At most `max_rows` rows, seeded, each calendar day keeping its share of the frame.

    Quotas are allocated by largest remainder so the total is exactly `max_rows`; rows without
    a timestamp form their own stratum. The row order of `frame` is kept; a frame that is
    small enough is returned as it is.
    """
    if len(frame) <= max_rows:
        return frame
    return frame.iloc[sample_positions(frame, max_rows, seed, time_column)]


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


def _probability(frame: pd.DataFrame) -> pd.Series | None:
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
    probability = _probability(frame)
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


# --- the Evidently part --------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """Per-column methods and thresholds for one check, and what was left out."""

    statistic: Statistic
    methods: dict[str, str]
    thresholds: dict[str, float]
    columns: list[str]
    skipped: list[str]


def _plan(
    reference: pd.DataFrame, current: pd.DataFrame, config: DriftConfig, statistic: Statistic
) -> _Plan:
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
    return _Plan(statistic, methods, thresholds, columns, skipped)


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


def _metadata(
    window_start: datetime | None, window_end: datetime | None, model_version: str | None
) -> dict[str, str]:
    """Snapshot metadata the Evidently UI shows next to each run."""
    return {
        "window_start": "" if window_start is None else window_start.isoformat(),
        "window_end": "" if window_end is None else window_end.isoformat(),
        "model_version": model_version or "",
    }


def _drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    plan: _Plan,
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


def _labelled(frame: pd.DataFrame, label_column: str) -> pd.DataFrame:
    """Rows with both a true outcome and a score, as Evidently's target/probability columns."""
    probability = _probability(frame)
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


def _performance_report(
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


def _drifted_share(snapshot: Snapshot) -> float | None:
    """Evidently's share of drifted columns (DriftedColumnsCount)."""
    for metric in snapshot.dict()["metrics"]:
        if metric.get("config", {}).get("type") == _DRIFTED_COUNT:
            return _finite(metric["value"]["share"])
    return None


def _column_result(
    name: str,
    kind: Kind,
    statistic: Statistic,
    verdict: tuple[float | None, float, str, bool],
    unseen: float | None,
) -> ColumnDrift:
    """A ColumnDrift from Evidently's verdict on one column."""
    score, threshold, method, drifted = verdict
    return ColumnDrift(
        name=name,
        kind=kind,
        method=method,
        statistic=statistic,
        score=score,
        threshold=threshold,
        drifted=drifted,
        unseen_share=unseen,
    )


def _time_column(frame: pd.DataFrame) -> str:
    """The column a side is stratified by: when it was served (log) or happened (reference)."""
    return "served_at" if "served_at" in frame.columns else "date"


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    config: DriftConfig,
    *,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    model_version: str | None = None,
    decision_threshold: float = 0.5,
) -> tuple[DriftResult, Snapshot | None]:
    """Compare a window of served traffic with the reference; the verdict and its snapshot.

    `reference`: the champion's reference sample (SODA columns, `arrest`,
    `arrest_probability`); `current`: prediction-log rows (SODA input columns, `probability`,
    `served_at`, `feedback_arrest`). `decision_threshold` turns probabilities into the labels
    the classification metrics use (pass the champion's threshold). The snapshot is None when
    there is too little data to decide.
    """
    checked_at = datetime.now(UTC)
    labelled_rows = (
        int(current[CURRENT_LABEL].notna().sum()) if CURRENT_LABEL in current.columns else 0
    )
    base = {
        "drift_share_threshold": config.drift_share,
        "current_rows": len(current),
        "reference_rows": len(reference),
        "labelled_rows": labelled_rows,
        "window_start": window_start,
        "window_end": window_end,
        "model_version": model_version,
        "checked_at": checked_at,
    }
    if len(current) < config.min_current_rows or len(reference) < config.min_reference_rows:
        reason = (
            f"insufficient data: {len(current)} current rows (need {config.min_current_rows}),"
            f" {len(reference)} reference rows (need {config.min_reference_rows})"
        )
        result = DriftResult(
            status="insufficient_data",
            drift_detected=None,
            drift_share=None,
            drifted_columns=[],
            columns=[],
            prediction_drift=None,
            performance=None,
            reasons=[reason],
            sampled_current_rows=0,
            sampled_reference_rows=0,
            **base,
        )
        return result, None

    full_reference = monitored_frame(reference)
    full_current = monitored_frame(current)
    ref_rows = sample_positions(reference, config.max_rows, config.seed, _time_column(reference))
    cur_rows = sample_positions(current, config.max_rows, config.seed + 1, _time_column(current))
    ref = full_reference.iloc[ref_rows].reset_index(drop=True)
    cur = full_current.iloc[cur_rows].reset_index(drop=True)

    unseen: dict[str, float] = {}
    min_share = max(config.min_category_share, MIN_EXPECTED_COUNT / max(len(cur), 1))
    for name in CATEGORICAL_COLUMNS:
        # Unseen values are judged on everything the reference holds, not on its sample.
        unseen[name] = unseen_share(full_reference[name], full_current[name])
        ref[name], cur[name] = pool_rare_levels(ref[name], cur[name], min_share)

    statistic = regime(len(ref), len(cur), config)
    plan = _plan(ref, cur, config, statistic)
    timestamp = _naive_utc(window_end) or checked_at.replace(tzinfo=None)
    metadata = _metadata(window_start, window_end, model_version)
    snapshot = _drift_report(ref, cur, plan, config, timestamp, metadata)

    verdicts = read_column_verdicts(snapshot)
    kinds = {c.name: c.kind for c in MONITORED_COLUMNS}
    columns = [
        _column_result(name, kinds[name], statistic, verdicts[name], unseen.get(name))
        for name in plan.columns
    ]
    prediction_drift = (
        _column_result(PROBABILITY, "numerical", statistic, verdicts[PROBABILITY], None)
        if PROBABILITY in verdicts
        else None
    )
    drifted = [c.name for c in columns if c.drifted]
    share = _drifted_share(snapshot)
    if share is None:
        share = len(drifted) / len(columns) if columns else 0.0

    reasons: list[str] = []
    if columns and share >= config.drift_share:
        reasons.append(
            f"{len(drifted)} of {len(columns)} monitored columns drifted"
            f" (share {share:.2f} >= {config.drift_share:.2f}): {', '.join(drifted)}"
        )
    if config.prediction_drift_is_drift and prediction_drift and prediction_drift.drifted:
        reasons.append(
            f"prediction drift: {prediction_drift.method} {prediction_drift.score:.3g}"
            f" vs threshold {prediction_drift.threshold:.3g}"
        )
    for name, value in unseen.items():
        if value >= config.max_unseen_share:
            reasons.append(
                f"{name}: {value:.1%} of current values never occur in the reference"
                f" (>= {config.max_unseen_share:.0%})"
            )
    detected = bool(reasons)

    performance: dict[str, Any] | None = None
    labelled_current = _labelled(_capped_labelled(current, config), CURRENT_LABEL)
    if (
        len(labelled_current) >= config.min_labelled_rows
        and labelled_current[TARGET].nunique() == 2
    ):
        labelled_reference = _labelled(reference.iloc[ref_rows], REFERENCE_LABEL)
        perf_snapshot, performance = _performance_report(
            labelled_reference, labelled_current, decision_threshold, timestamp, metadata
        )
        snapshot = merge_snapshots(snapshot, perf_snapshot)

    result = DriftResult(
        status="drift" if detected else "no_drift",
        drift_detected=detected,
        drift_share=share,
        drifted_columns=drifted,
        columns=columns,
        prediction_drift=prediction_drift,
        performance=performance,
        reasons=reasons,
        sampled_current_rows=len(cur),
        sampled_reference_rows=len(ref),
        skipped_columns=plan.skipped,
        **base,
    )
    return result, snapshot


def _capped_labelled(current: pd.DataFrame, config: DriftConfig) -> pd.DataFrame:
    """The current rows with a feedback label, sampled by day down to `max_rows`."""
    if CURRENT_LABEL not in current.columns:
        return current.iloc[:0]
    labelled = current[current[CURRENT_LABEL].notna()]
    rows = sample_positions(labelled, config.max_rows, config.seed + 2, _time_column(labelled))
    return labelled.iloc[rows]


def _naive_utc(value: datetime | None) -> datetime | None:
    """A timestamp as naive UTC (Evidently's snapshot timestamps are naive)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)
