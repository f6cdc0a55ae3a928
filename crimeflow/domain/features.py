"""sklearn transformers that turn a raw incident (SODA fields) into model features.

Every transformer here is a step of the one model pipeline (`crimeflow.domain.model`), so the
code that builds features for training is the code that scores a single API row. Enrichment calls
the ETL's pure functions in `crimeflow.domain.enrich` (station distance, calendar); nothing here
re-implements them.

One API row must cost a few milliseconds end to end, so each step builds at most one DataFrame
(from numpy arrays, never column by column) and the encoders only ever see numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.feature_selection import SelectorMixin, mutual_info_classif
from sklearn.impute import SimpleImputer
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import OneHotEncoder, TargetEncoder
from sklearn.utils.validation import check_is_fitted

from crimeflow.contract.schema import LABEL, SODA_COLUMNS, empty_canonical, to_canonical
from crimeflow.domain.enrich import (
    DAY_PARTS,
    SEASONS,
    StationIndex,
    calendar_arrays,
    labels_of_codes,
    naive_dates,
    state_plane_xy,
    station_features,
)

# Identifiers and audit fields: never features (`updated_on` would even leak late arrests).
BOOKKEEPING_COLUMNS: tuple[str, ...] = ("id", "updated_on")
# What the model accepts: the API body. `case_number`, `block` and `year` are accepted but not
# used (behavioural tests pin that free text cannot move a prediction).
MODEL_INPUT_COLUMNS: tuple[str, ...] = tuple(
    c for c in SODA_COLUMNS if c != LABEL and c not in BOOKKEEPING_COLUMNS
)
POSITION_COLUMNS: tuple[str, ...] = ("x_coordinate", "y_coordinate", "latitude", "longitude")
# Categorical fields taken from the incident as they are.
SOURCE_CATEGORIES: tuple[str, ...] = (
    "iucr",
    "primary_type",
    "description",
    "location_description",
    "fbi_code",
    "domestic",
    "beat",
    "district",
    "ward",
    "community_area",
)
# The raw fields every feature is computed from (the canonical check looks at these only).
SOURCE_COLUMNS: tuple[str, ...] = ("date", *SOURCE_CATEGORIES, *POSITION_COLUMNS)

MISSING_CATEGORY = "__missing__"

# One-hot: a handful of levels each.
LOW_CARDINALITY: tuple[str, ...] = ("domestic", "day_part", "district")
# Target-encoded (cross-fitted): up to hundreds of levels, and new ones appear every year.
HIGH_CARDINALITY: tuple[str, ...] = (
    "iucr",
    "primary_type",
    "description",
    "location_description",
    "fbi_code",
    "beat",
    "ward",
    "community_area",
    "nearest_station_district",
)
# Crossed categories: one offence means different things in different places (a THEFT in a
# SMALL RETAIL STORE is often a shoplifter held by staff; on the STREET the thief is gone).
CROSSES: tuple[tuple[str, str], ...] = (
    ("iucr", "location_description"),
    ("primary_type", "location_description"),
    ("primary_type", "domestic"),
    ("primary_type", "beat"),
)
# Month and season stay out by default: a 12-month window sees each month once, so the model
# would learn that year's trend per month and apply it to next year's.
SEASONAL_CATEGORICAL: tuple[str, ...] = ("season",)
SEASONAL_NUMERIC: tuple[str, ...] = ("month_sin", "month_cos")
CALENDAR_NUMERIC: tuple[str, ...] = (
    "hour",
    "weekday",
    "is_weekend",
    "hour_sin",
    "hour_cos",
    "weekday_sin",
    "weekday_cos",
)
# How precisely the time was recorded: officers on scene log the minute; victims who find a loss
# later give a round hour, midnight, noon or the first of the month.
REPORT_TIME_COLUMNS: tuple[str, ...] = (
    "minute",
    "time_on_hour",
    "time_on_5_minutes",
    "time_midnight",
    "time_noon",
    "first_of_month",
)
DISTANCE_COLUMN = "station_distance_m"
DISTANCE_NUMERIC: tuple[str, ...] = (DISTANCE_COLUMN, "station_distance_missing")
LOCATION_NUMERIC: tuple[str, ...] = ("x_feet", "y_feet")


def cross_name(left: str, right: str) -> str:
    """Column name of a crossed categorical feature."""
    return f"{left}__x__{right}"


def distance_position(
    *, seasonal: bool = False, crosses: Sequence[tuple[str, str]] = CROSSES
) -> int:
    """Index of the station-distance column in `FeatureMatrix` output."""
    low, high, numeric = feature_columns(seasonal=seasonal, crosses=crosses)
    return len(low) + len(high) + numeric.index(DISTANCE_COLUMN)


def feature_columns(
    *, seasonal: bool = False, crosses: Sequence[tuple[str, str]] = CROSSES
) -> tuple[list[str], list[str], list[str]]:
    """The (one-hot, target-encoded, numeric) columns of `FeatureMatrix`, in matrix order."""
    low = [*LOW_CARDINALITY, *(SEASONAL_CATEGORICAL if seasonal else ())]
    high = [*HIGH_CARDINALITY, *(cross_name(a, b) for a, b in crosses)]
    numeric = [
        *DISTANCE_NUMERIC,
        *LOCATION_NUMERIC,
        *CALENDAR_NUMERIC,
        *(SEASONAL_NUMERIC if seasonal else ()),
        *REPORT_TIME_COLUMNS,
    ]
    return low, high, numeric


@lru_cache(maxsize=1)
def _canonical_dtypes() -> dict[str, Any]:
    """Canonical dtype per SODA column (computed on first use, not at import)."""
    return dict(empty_canonical().dtypes.items())


def _dtype_ok(kind: Any, expected: Any) -> bool:
    """Whether a column of dtype `kind` already has the dtype `to_canonical` would give it."""
    if kind == expected:  # the common case, and the cheapest test
        return True
    if pd.api.types.is_datetime64_dtype(expected):
        return pd.api.types.is_datetime64_dtype(kind)
    if pd.api.types.is_bool_dtype(expected):
        return pd.api.types.is_bool_dtype(kind)
    if pd.api.types.is_float_dtype(expected):
        return pd.api.types.is_float_dtype(kind)
    if pd.api.types.is_integer_dtype(expected):
        return pd.api.types.is_integer_dtype(kind)
    # Codes: only the string dtype proves `to_canonical` ran (an object column may still hold
    # 614 for beat '0614').
    return isinstance(kind, pd.StringDtype)


def is_canonical(frame: pd.DataFrame, columns: Sequence[str] = SOURCE_COLUMNS) -> bool:
    """True when every column in `columns` is present with its canonical dtype."""
    expected = _canonical_dtypes()
    # One pass over the dtypes: per-column `frame[c]` costs ~8 us each on a one-row frame.
    kinds = dict(zip(frame.columns, frame.dtypes, strict=True))
    return all(c in kinds and _dtype_ok(kinds[c], expected[c]) for c in columns)


def category_values(values: pd.Series) -> np.ndarray:
    """Category labels as an object array of str, missing as `MISSING_CATEGORY`.

    Integers print as integers ('12', not '12.0') and booleans as 'True'/'False'. The numpy
    paths avoid `astype("string")`, which costs ~40 us per column on a single row.
    """
    kind = values.dtype
    if isinstance(kind, pd.StringDtype):
        return values.to_numpy(dtype=object, na_value=MISSING_CATEGORY)
    if pd.api.types.is_bool_dtype(kind):
        text = np.where(values.to_numpy(dtype=bool, na_value=False), "True", "False")
    elif pd.api.types.is_integer_dtype(kind):
        text = values.to_numpy(dtype="int64", na_value=0).astype(str)
    else:
        return values.astype("string").to_numpy(dtype=object, na_value=MISSING_CATEGORY)
    return np.where(values.isna().to_numpy(), MISSING_CATEGORY, text).astype(object)


def report_time_features(dates: pd.Series) -> dict[str, np.ndarray]:
    """Precision-of-record flags from the incident timestamp (NaN where the date is missing)."""
    stamps = dates.to_numpy(dtype="datetime64[ns]")
    missing = np.isnat(stamps)
    # Integer arithmetic on datetime64 is ~20x cheaper than the .dt accessors on one row.
    minutes = stamps.astype("datetime64[m]")
    minute = (minutes - stamps.astype("datetime64[h]")).astype("float64")
    hour = (stamps.astype("datetime64[h]") - stamps.astype("datetime64[D]")).astype("float64")
    day_start = stamps.astype("datetime64[D]")
    first_day = day_start == day_start.astype("datetime64[M]").astype("datetime64[D]")
    flags = {
        "minute": minute,
        "time_on_hour": minute == 0,
        "time_on_5_minutes": minute % 5 == 0,
        "time_midnight": (hour == 0) & (minute == 0),
        "time_noon": (hour == 12) & (minute == 0),
        "first_of_month": first_day,
    }
    return {name: np.where(missing, np.nan, v.astype("float64")) for name, v in flags.items()}


class CanonicalIncidents(TransformerMixin, BaseEstimator):
    """Bring raw incidents to the contract's canonical dtypes; canonical frames pass untouched."""

    def fit(self, X: pd.DataFrame, y: Any = None) -> CanonicalIncidents:
        """Nothing to learn; checks the input is a DataFrame."""
        _require_frame(X)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """`X` itself when its source columns are canonical, else `to_canonical(X)`.

        `to_canonical` costs ~10 ms on one row, so callers that already validated (the API)
        should pass canonical frames.
        """
        _require_frame(X)
        return X if is_canonical(X) else to_canonical(X)


class IncidentEnricher(TransformerMixin, BaseEstimator):
    """Station distance and calendar features (via crimeflow.domain.enrich) plus report-time flags.

    Output: one DataFrame with the categorical fields as str (missing as `MISSING_CATEGORY`)
    and every numeric feature as float64, raw distance in meters included (see
    `DistanceOutliers`).
    """

    def __init__(self, stations: StationIndex | None = None) -> None:
        self.stations = stations

    def fit(self, X: pd.DataFrame, y: Any = None) -> IncidentEnricher:
        """Keep the station index (the packaged CPD stations when none was given)."""
        _require_frame(X)
        self.index_ = self.stations if self.stations is not None else StationIndex.packaged()
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """The enriched feature frame, one row per incident, same index as `X`."""
        check_is_fitted(self, "index_")
        # The enrich functions copy their input: hand them small frames of just what they read
        # (built from arrays, which is cheaper than selecting columns of X).
        positions = pd.DataFrame(
            {c: X[c].to_numpy(dtype="float64", na_value=np.nan) for c in POSITION_COLUMNS},
            index=X.index,
        )
        # The column dicts, not the add_* frames: the API scores a handful of rows per call,
        # where building and concatenating frames would cost more than the features.
        stations = station_features(positions, self.index_)
        # The arrays behind `temporal_features`, not its Series: the same numbers for less.
        calendar = calendar_arrays(naive_dates(X["date"]))
        x_feet, y_feet = state_plane_xy(positions)
        distance = stations[DISTANCE_COLUMN].to_numpy(dtype="float64", na_value=np.nan)

        columns: dict[str, np.ndarray] = {
            name: category_values(X[name]) for name in SOURCE_CATEGORIES
        }
        columns["nearest_station_district"] = category_values(stations["nearest_station_district"])
        columns["day_part"] = labels_of_codes(
            calendar["day_part_code"], DAY_PARTS, MISSING_CATEGORY
        )
        columns["season"] = labels_of_codes(calendar["season_code"], SEASONS, MISSING_CATEGORY)
        columns[DISTANCE_COLUMN] = distance
        columns["station_distance_missing"] = np.isnan(distance).astype("float64")
        columns["x_feet"] = x_feet
        columns["y_feet"] = y_feet
        missing = calendar["missing"]
        calendar["is_weekend"] = calendar["weekday"] >= 5
        for name in (*CALENDAR_NUMERIC, *SEASONAL_NUMERIC):
            values = calendar[name]
            # Like the nullable calendar columns as float: NaN where the date is missing.
            if values.dtype.kind != "f":
                values = np.where(missing, np.nan, values)
            columns[name] = values
        columns.update(report_time_features(X["date"]))
        return pd.DataFrame(columns, index=X.index)


class DistanceOutliers(TransformerMixin, BaseEstimator):
    """Clip station distance to training quantiles, take log1p, fill gaps with the training median.

    Rows are never dropped: a test incident 20 km from any station is clipped, not removed.
    `column` names the distance column of a DataFrame or indexes it in an array (the pipeline
    runs this on `FeatureMatrix` output, where a column swap is cheaper than a frame copy).
    """

    def __init__(
        self,
        lower_quantile: float = 0.0,
        upper_quantile: float = 0.995,
        column: int | str = DISTANCE_COLUMN,
    ) -> None:
        self.lower_quantile = lower_quantile
        self.upper_quantile = upper_quantile
        self.column = column

    def fit(self, X: pd.DataFrame | np.ndarray, y: Any = None) -> DistanceOutliers:
        """Learn the clip bounds and the fill value from the training distances."""
        if not 0.0 <= self.lower_quantile < self.upper_quantile <= 1.0:
            raise ValueError("need 0 <= lower_quantile < upper_quantile <= 1")
        distance = self._distance(X)
        known = distance[np.isfinite(distance)]
        if known.size == 0:
            raise ValueError("no finite station distance in the training data")
        low, high = np.quantile(known, [self.lower_quantile, self.upper_quantile])
        self.lower_ = float(low)
        self.upper_ = float(high)
        self.fill_ = float(np.log1p(np.median(np.clip(known, low, high))))
        return self

    def transform(self, X: pd.DataFrame | np.ndarray) -> pd.DataFrame | np.ndarray:
        """A copy of `X` whose distance column is the clipped log1p (gaps filled)."""
        check_is_fitted(self, "fill_")
        distance = self._distance(X)
        logged = np.log1p(np.clip(distance, self.lower_, self.upper_))
        logged = np.where(np.isfinite(distance), logged, self.fill_)
        if isinstance(X, pd.DataFrame):
            out = X.copy(deep=False)
            out[self.column] = logged
            return out
        out = np.array(X, dtype="float64")
        out[:, self.column] = logged
        return out

    def _distance(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The raw distance column as float64 (NaN where unknown)."""
        if isinstance(X, pd.DataFrame):
            return X[self.column].to_numpy(dtype="float64", na_value=np.nan)
        return np.asarray(X, dtype="float64")[:, self.column]


# From this many rows on, FeatureMatrix codes each distinct value once (`_factorized_codes`);
# below it, a dict lookup per value is cheaper than the factorizing.
_FACTORIZE_ROWS = 64


class FeatureMatrix(TransformerMixin, BaseEstimator):
    """The encoder input as one float matrix: category codes (crosses included), then numbers.

    Categories become integer codes learnt at fit (one dict lookup per value, so an API row
    costs microseconds and the encoders never touch strings). Categories seen fewer than
    `min_count` times in training share code 0 with categories never seen at all, so an unseen
    `iucr` at serving time is scored like the rare ones were in training.
    """

    def __init__(
        self,
        seasonal: bool = False,
        crosses: Sequence[tuple[str, str]] = CROSSES,
        min_count: int = 10,
    ) -> None:
        self.seasonal = seasonal
        self.crosses = crosses
        self.min_count = min_count

    def fit(self, X: pd.DataFrame, y: Any = None) -> FeatureMatrix:
        """Learn one vocabulary per categorical column from the training rows."""
        low, high, numeric = feature_columns(seasonal=self.seasonal, crosses=self.crosses)
        self.categorical_ = [*low, *high]
        self.numeric_ = numeric
        categories = self._categories(X)
        self.vocabularies_: dict[str, dict[str, int]] = {}
        for name in self.categorical_:
            counts = pd.Series(categories[name]).value_counts()
            kept = sorted(str(v) for v in counts.index[counts.to_numpy() >= self.min_count])
            self.vocabularies_[name] = {value: code for code, value in enumerate(kept, start=1)}
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """(n, n_categorical + n_numeric) float64: codes first, then the numeric columns."""
        check_is_fitted(self, "vocabularies_")
        matrix = np.empty((len(X), len(self.categorical_) + len(self.numeric_)))
        coded = self._factorized_codes(X) if len(X) >= _FACTORIZE_ROWS else None
        if coded is None:
            categories = self._categories(X)
            coded = [
                [self.vocabularies_[name].get(value, 0) for value in categories[name]]
                for name in self.categorical_
            ]
        for j, codes in enumerate(coded):
            matrix[:, j] = codes
        # One block copy instead of a Series per column: ~10 us per column saved on one row.
        matrix[:, len(self.categorical_) :] = X[self.numeric_].to_numpy(dtype="float64")
        return matrix

    def _factorized_codes(self, X: pd.DataFrame) -> list[np.ndarray] | None:
        """The codes of `categorical_` for many rows; None if a value is missing (NaN/None).

        Equal to the per-value lookups (tested). Each column is factorized once (one hash per
        value, in C) and only its distinct values are looked up; a cross is coded from its two
        sides' factor codes, so its text is built once per distinct pair instead of per row.
        `IncidentEnricher` never leaves a value missing; for other input the per-value path
        gives its own answer.
        """
        low, high, _ = feature_columns(seasonal=self.seasonal, crosses=())
        names = [*low, *high]
        block = X[names].to_numpy(dtype=object)
        factors: dict[str, tuple[np.ndarray, Sequence[Any]]] = {}
        for j, name in enumerate(names):
            codes, distinct = pd.factorize(block[:, j])
            if codes.size and codes.min() < 0:
                return None
            factors[name] = (codes, distinct)
        for left, right in self.crosses:
            (left_codes, left_values), (right_codes, right_values) = factors[left], factors[right]
            width = len(right_values)
            pair_codes, pairs = pd.factorize(left_codes.astype("int64") * width + right_codes)
            texts = [
                left_values[pair // width] + "|" + right_values[pair % width]
                for pair in pairs.tolist()
            ]
            factors[cross_name(left, right)] = (pair_codes, texts)
        coded = []
        for name in self.categorical_:
            codes, distinct = factors[name]
            lookup = self.vocabularies_[name].get
            table = np.array([lookup(value, 0) for value in distinct], dtype="float64")
            coded.append(table[codes])
        return coded

    def _categories(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        """Every categorical column (crosses included) as an object array of str."""
        low, high, _ = feature_columns(seasonal=self.seasonal, crosses=())
        names = [*low, *high]
        block = X[names].to_numpy(dtype=object)
        columns = {name: block[:, j] for j, name in enumerate(names)}
        for left, right in self.crosses:
            columns[cross_name(left, right)] = columns[left] + "|" + columns[right]
        return columns

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns."""
        check_is_fitted(self, "vocabularies_")
        return np.asarray([*self.categorical_, *self.numeric_], dtype=object)


class CodeTargetEncoder(TargetEncoder):
    """sklearn's TargetEncoder with a table-lookup `transform` for integer-coded categories.

    Fitting (and the cross-fitted `fit_transform`) is TargetEncoder's own. `transform` returns
    the same numbers as TargetEncoder.transform (unit-tested) without its per-column
    validation, which cost ~0.1 ms per column on a single API row.
    """

    def transform(self, X: Any) -> np.ndarray:
        """Encoded values: the category's learnt encoding, the target mean where unseen."""
        check_is_fitted(self, "encodings_")
        if self.target_type_ != "binary":
            return super().transform(X)
        X = np.asarray(X, dtype="float64")
        if X.ndim != 2 or X.shape[1] != len(self.categories_):
            raise ValueError(f"expected {len(self.categories_)} columns, got shape {X.shape}")
        out = np.empty(X.shape, dtype="float64")
        for j, (known, encoding) in enumerate(zip(self.categories_, self.encodings_, strict=True)):
            column = X[:, j]
            at = np.minimum(np.searchsorted(known, column), known.size - 1)
            found = known[at] == column
            out[:, j] = np.where(found, encoding[at], self.target_mean_)
        return out


class CodeOneHotEncoder(OneHotEncoder):
    """sklearn's OneHotEncoder (dense, unknown codes -> all zeros) with a lookup `transform`.

    Fitting is OneHotEncoder's own; `transform` returns the same matrix as
    OneHotEncoder.transform (unit-tested) at a tenth of its cost on a single row.
    """

    def __init__(self) -> None:
        super().__init__(handle_unknown="ignore", sparse_output=False)

    def transform(self, X: Any) -> np.ndarray:
        """Indicator columns, one block per input column, in `categories_` order."""
        check_is_fitted(self, "categories_")
        X = np.asarray(X, dtype="float64")
        if X.ndim != 2 or X.shape[1] != len(self.categories_):
            raise ValueError(f"expected {len(self.categories_)} columns, got shape {X.shape}")
        widths = [len(known) for known in self.categories_]
        out = np.zeros((X.shape[0], sum(widths)), dtype="float64")
        rows = np.arange(X.shape[0])
        offset = 0
        for j, known in enumerate(self.categories_):
            column = X[:, j]
            at = np.minimum(np.searchsorted(known, column), known.size - 1)
            found = known[at] == column
            out[rows[found], offset + at[found]] = 1.0
            offset += widths[j]
        return out


class ColumnEncoders(TransformerMixin, BaseEstimator):
    """Encode blocks of `FeatureMatrix` columns, one sklearn encoder per block, and stack them.

    This is ColumnTransformer's job without its per-call machinery (joblib dispatch, config
    contexts, feature-name checks), which cost ~0.7 ms per API row. `fit_transform` calls each
    encoder's own `fit_transform`, so TargetEncoder cross-fits the training rows.
    """

    def __init__(self, encoders: Sequence[tuple[str, Any, Sequence[int]]] = ()) -> None:
        self.encoders = encoders

    def fit(self, X: np.ndarray, y: np.ndarray) -> ColumnEncoders:
        """Fit every encoder on its block."""
        self.fit_transform(X, y)
        return self

    def fit_transform(self, X: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        """Fit every encoder on its block and return the (cross-fitted) training encoding."""
        X = np.asarray(X, dtype="float64")
        self.encoders_ = [(name, clone(encoder), list(at)) for name, encoder, at in self.encoders]
        parts = [encoder.fit_transform(X[:, at], y) for _, encoder, at in self.encoders_]
        self.n_features_in_ = X.shape[1]
        return np.hstack(parts)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """The encoded blocks side by side, in the order of `encoders`."""
        check_is_fitted(self, "encoders_")
        X = np.asarray(X, dtype="float64")
        return np.hstack([encoder.transform(X[:, at]) for _, encoder, at in self.encoders_])

    @property
    def named_encoders_(self) -> dict[str, Any]:
        """The fitted encoders by name."""
        check_is_fitted(self, "encoders_")
        return {name: encoder for name, encoder, _ in self.encoders_}


def make_encoder(
    *,
    seasonal: bool = False,
    crosses: Sequence[tuple[str, str]] = CROSSES,
    random_state: int = 0,
) -> ColumnEncoders:
    """One-hot the low-cardinality codes, target-encode the others, impute the numbers.

    Works on `FeatureMatrix` output (positions, not names). TargetEncoder cross-fits the
    training rows (5 shuffled folds), so no training row is encoded with its own label. Code 0
    (rare or unseen) is a category like any other; a code the encoders never saw becomes
    all-zero (one-hot) or the training mean (target).
    """
    low, high, numeric = feature_columns(seasonal=seasonal, crosses=crosses)
    low_at = list(range(len(low)))
    high_at = list(range(len(low), len(low) + len(high)))
    numeric_at = list(range(len(low) + len(high), len(low) + len(high) + len(numeric)))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=random_state)
    return ColumnEncoders(
        [
            ("onehot", CodeOneHotEncoder(), low_at),
            ("target", CodeTargetEncoder(target_type="binary", cv=folds), high_at),
            ("numeric", SimpleImputer(strategy="median", keep_empty_features=True), numeric_at),
        ]
    )


def encoded_feature_names(encoder: ColumnEncoders, matrix: FeatureMatrix) -> list[str]:
    """Readable names of a fitted encoder's output columns (`district=011`, `target__iucr`)."""
    onehot = encoder.named_encoders_["onehot"]
    low_count = len(onehot.categories_)
    names: list[str] = []
    for column, codes in zip(matrix.categorical_[:low_count], onehot.categories_, strict=True):
        value_of = {code: value for value, code in matrix.vocabularies_[column].items()}
        names += [f"{column}={value_of.get(int(code), '(other)')}" for code in codes]
    names += [f"target__{column}" for column in matrix.categorical_[low_count:]]
    names += [f"log_{n}" if n == DISTANCE_COLUMN else n for n in matrix.numeric_]
    return names


class MutualInfoSelector(SelectorMixin, BaseEstimator):
    """Keep the `k` features with the highest mutual information with the label.

    The estimate is k-NN based and costs O(n log n) per feature, so `fit` scores a seeded,
    stratified subsample of at most `max_rows` rows. Two-valued columns (one-hot, flags) are
    scored as discrete.
    """

    def __init__(self, k: int | None = None, max_rows: int = 20_000, random_state: int = 0) -> None:
        self.k = k
        self.max_rows = max_rows
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> MutualInfoSelector:
        """Score every feature on the subsample and remember the top `k` (None keeps all)."""
        X = np.asarray(X, dtype="float64")
        y = np.asarray(y)
        if self.k is not None and self.k < 1:
            raise ValueError("k must be >= 1, or None to keep every feature")
        rows = _stratified_subsample(y, self.max_rows, self.random_state)
        sample = X[rows]
        discrete = np.array([np.unique(sample[:, j]).size <= 2 for j in range(X.shape[1])])
        self.scores_ = mutual_info_classif(
            sample, y[rows], discrete_features=discrete, random_state=self.random_state
        )
        self.n_features_in_ = X.shape[1]
        keep = X.shape[1] if self.k is None else min(self.k, X.shape[1])
        # Stable sort: ties keep column order, so the selection is reproducible.
        order = np.argsort(-self.scores_, kind="stable")[:keep]
        mask = np.zeros(X.shape[1], dtype=bool)
        mask[order] = True
        self.support_ = mask
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """The kept columns (a plain slice: SelectorMixin's validation costs ~0.1 ms a row)."""
        check_is_fitted(self, "support_")
        X = np.asarray(X, dtype="float64")
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} columns, got shape {X.shape}")
        return X[:, self.support_]

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "support_")
        return self.support_


def _stratified_subsample(y: np.ndarray, max_rows: int, random_state: int) -> np.ndarray:
    """Sorted row indices of a class-stratified random subsample (every row when few)."""
    if len(y) <= max_rows:
        return np.arange(len(y))
    rng = np.random.default_rng(random_state)
    picked = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        share = max(1, round(max_rows * members.size / len(y)))
        picked.append(rng.choice(members, size=min(share, members.size), replace=False))
    return np.sort(np.concatenate(picked))


def _require_frame(X: Any) -> None:
    """Raise a clear error unless X is a DataFrame (the model's input is an incident frame)."""
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame of incidents, got {type(X).__name__}")
