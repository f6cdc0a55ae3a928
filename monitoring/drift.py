"""Data and prediction drift of served traffic against the champion's reference, with Evidently 0.7.

Reference: the sample of training-period incidents the champion logged to MLflow
(`reference/reference.parquet`: SODA fields plus `arrest_probability`). Current: a window of the
API's prediction log (SODA input fields plus `probability`, `served_at`, `feedback_arrest`...).
`compute_drift` turns both into the monitored columns below, samples large windows (seeded,
stratified by day), runs one Evidently `Report` and reads Evidently's own per-column verdicts
into a typed `DriftResult`. Nothing here does I/O; `monitoring.report_store` stores the outcome.
The parts live next door: `monitoring.columns` (what is monitored, each column prepared),
`monitoring.sampling` (by day), `monitoring.methods` (method and threshold per column) and
`monitoring.evidently_reports` (running Evidently, reading its verdicts); this module holds the
config, the result types and the decision.

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

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import numpy as np
import pandas as pd

from crimeflow.contract.settings import DriftSettings
from monitoring.columns import (
    CATEGORICAL_COLUMNS,
    CURRENT_LABEL,
    MIN_EXPECTED_COUNT,
    MISSING,
    MONITORED_COLUMNS,
    NUMERICAL_COLUMNS,
    OTHER,
    PROBABILITY,
    REFERENCE_LABEL,
    Kind,
    MonitoredColumn,
    monitored_frame,
    pool_rare_levels,
    unseen_share,
)
from monitoring.evidently_reports import (
    TARGET,
    drift_report,
    drifted_share,
    labelled_scores,
    merge_snapshots,
    naive_utc,
    performance_report,
    read_column_verdicts,
    snapshot_metadata,
)
from monitoring.methods import METHODS, Statistic, exceeds, js_chance_floor, plan_columns, regime
from monitoring.sampling import sample_by_day, sample_positions, stratum_column

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

__all__ = [
    "CATEGORICAL_COLUMNS",
    "METHODS",
    "MISSING",
    "MONITORED_COLUMNS",
    "NUMERICAL_COLUMNS",
    "OTHER",
    "PROBABILITY",
    "ColumnDrift",
    "DriftConfig",
    "DriftResult",
    "Kind",
    "MonitoredColumn",
    "Statistic",
    "compute_drift",
    "exceeds",
    "js_chance_floor",
    "merge_snapshots",
    "monitored_frame",
    "pool_rare_levels",
    "read_column_verdicts",
    "regime",
    "sample_by_day",
    "sample_positions",
    "unseen_share",
]

Status = Literal["drift", "no_drift", "insufficient_data"]


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
    # Realized and estimated performance per incident month (`monitoring.outcomes`), when the
    # monitor assessed it: apart from `performance`, which scores the /feedback labels.
    outcome_performance: dict[str, Any] | None = None

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


# --- the check: sample, run Evidently, decide ---------------------------------------------------


@dataclass(frozen=True)
class _Samples:
    """Both sides as monitored columns, sampled and pooled, and what sampling kept."""

    reference: pd.DataFrame
    current: pd.DataFrame
    # Positions of the sampled reference rows in the caller's frame (for its labels).
    reference_rows: np.ndarray
    # Per categorical column: the share of current values the reference never had.
    unseen: dict[str, float]


@dataclass(frozen=True)
class _Verdicts:
    """Evidently's verdicts read into typed columns, and the share of drifted ones."""

    columns: list[ColumnDrift]
    prediction_drift: ColumnDrift | None
    drifted: list[str]
    share: float


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
    base = _common_fields(
        reference,
        current,
        config,
        checked_at=checked_at,
        window_start=window_start,
        window_end=window_end,
        model_version=model_version,
    )
    if len(current) < config.min_current_rows or len(reference) < config.min_reference_rows:
        return _insufficient_data(reference, current, config, base), None

    samples = _prepare_samples(reference, current, config)
    statistic = regime(len(samples.reference), len(samples.current), config)
    plan = plan_columns(samples.reference, samples.current, config, statistic)
    timestamp = naive_utc(window_end) or checked_at.replace(tzinfo=None)
    metadata = snapshot_metadata(window_start, window_end, model_version)
    snapshot = drift_report(samples.reference, samples.current, plan, config, timestamp, metadata)
    verdicts = _read_verdicts(snapshot, plan.columns, statistic, samples.unseen)
    reasons = _drift_reasons(verdicts, samples.unseen, config)
    detected = bool(reasons)

    perf_snapshot, performance = _performance(
        reference,
        samples.reference_rows,
        current,
        config,
        decision_threshold,
        timestamp,
        metadata,
    )
    if perf_snapshot is not None:
        snapshot = merge_snapshots(snapshot, perf_snapshot)

    result = DriftResult(
        status="drift" if detected else "no_drift",
        drift_detected=detected,
        drift_share=verdicts.share,
        drifted_columns=verdicts.drifted,
        columns=verdicts.columns,
        prediction_drift=verdicts.prediction_drift,
        performance=performance,
        reasons=reasons,
        sampled_current_rows=len(samples.current),
        sampled_reference_rows=len(samples.reference),
        skipped_columns=plan.skipped,
        **base,
    )
    return result, snapshot


def _common_fields(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    config: DriftConfig,
    *,
    checked_at: datetime,
    window_start: datetime | None,
    window_end: datetime | None,
    model_version: str | None,
) -> dict[str, Any]:
    """The DriftResult fields every outcome has, insufficient data included."""
    labelled_rows = (
        int(current[CURRENT_LABEL].notna().sum()) if CURRENT_LABEL in current.columns else 0
    )
    return {
        "drift_share_threshold": config.drift_share,
        "current_rows": len(current),
        "reference_rows": len(reference),
        "labelled_rows": labelled_rows,
        "window_start": window_start,
        "window_end": window_end,
        "model_version": model_version,
        "checked_at": checked_at,
    }


def _insufficient_data(
    reference: pd.DataFrame, current: pd.DataFrame, config: DriftConfig, base: dict[str, Any]
) -> DriftResult:
    """The result when either side is below its minimum: no verdict, and why."""
    reason = (
        f"insufficient data: {len(current)} current rows (need {config.min_current_rows}),"
        f" {len(reference)} reference rows (need {config.min_reference_rows})"
    )
    return DriftResult(
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


def _prepare_samples(
    reference: pd.DataFrame, current: pd.DataFrame, config: DriftConfig
) -> _Samples:
    """Monitored columns of both sides, sampled by day, categories pooled alike on both."""
    full_reference = monitored_frame(reference)
    full_current = monitored_frame(current)
    ref_rows = sample_positions(reference, config.max_rows, config.seed, stratum_column(reference))
    cur_rows = sample_positions(current, config.max_rows, config.seed + 1, stratum_column(current))
    ref = full_reference.iloc[ref_rows].reset_index(drop=True)
    cur = full_current.iloc[cur_rows].reset_index(drop=True)

    unseen: dict[str, float] = {}
    min_share = max(config.min_category_share, MIN_EXPECTED_COUNT / max(len(cur), 1))
    for name in CATEGORICAL_COLUMNS:
        # Unseen values are judged on everything the reference holds, not on its sample.
        unseen[name] = unseen_share(full_reference[name], full_current[name])
        ref[name], cur[name] = pool_rare_levels(ref[name], cur[name], min_share)
    return _Samples(ref, cur, ref_rows, unseen)


def _read_verdicts(
    snapshot: Snapshot, planned: list[str], statistic: Statistic, unseen: dict[str, float]
) -> _Verdicts:
    """The planned columns' and the prediction's verdicts from a drift snapshot."""
    verdicts = read_column_verdicts(snapshot)
    kinds = {c.name: c.kind for c in MONITORED_COLUMNS}
    columns = [
        _column_result(name, kinds[name], statistic, verdicts[name], unseen.get(name))
        for name in planned
    ]
    prediction_drift = (
        _column_result(PROBABILITY, "numerical", statistic, verdicts[PROBABILITY], None)
        if PROBABILITY in verdicts
        else None
    )
    drifted = [c.name for c in columns if c.drifted]
    share = drifted_share(snapshot)
    if share is None:
        share = len(drifted) / len(columns) if columns else 0.0
    return _Verdicts(columns, prediction_drift, drifted, share)


def _drift_reasons(verdicts: _Verdicts, unseen: dict[str, float], config: DriftConfig) -> list[str]:
    """Why the dataset drifted, one line per rule that fired (none: no drift)."""
    columns, drifted, share = verdicts.columns, verdicts.drifted, verdicts.share
    prediction_drift = verdicts.prediction_drift
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
    return reasons


def _performance(
    reference: pd.DataFrame,
    reference_rows: np.ndarray,
    current: pd.DataFrame,
    config: DriftConfig,
    decision_threshold: float,
    timestamp: datetime,
    metadata: dict[str, str],
) -> tuple[Snapshot | None, dict[str, Any] | None]:
    """Classification quality on the labelled current rows (snapshot, values); None if too few.

    The reference side is the rows the drift sample kept (`reference_rows`), with labels.
    """
    labelled_current = labelled_scores(_capped_labelled(current, config), CURRENT_LABEL)
    if len(labelled_current) < config.min_labelled_rows or labelled_current[TARGET].nunique() != 2:
        return None, None
    labelled_reference = labelled_scores(reference.iloc[reference_rows], REFERENCE_LABEL)
    return performance_report(
        labelled_reference, labelled_current, decision_threshold, timestamp, metadata
    )


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


def _capped_labelled(current: pd.DataFrame, config: DriftConfig) -> pd.DataFrame:
    """The current rows with a feedback label, sampled by day down to `max_rows`."""
    if CURRENT_LABEL not in current.columns:
        return current.iloc[:0]
    labelled = current[current[CURRENT_LABEL].notna()]
    rows = sample_positions(labelled, config.max_rows, config.seed + 2, stratum_column(labelled))
    return labelled.iloc[rows]
