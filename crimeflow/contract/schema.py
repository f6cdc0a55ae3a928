"""The raw-incident contract: SODA field names, canonical dtypes and loaders for both header styles.

Everything downstream (lake, model input, API body, prediction log) uses these names. A Socrata
CSV export ("Case Number", "MM/DD/YYYY hh:mm:ss AM") and a SODA JSON page ("case_number", ISO
dates, every value a string) both become the same typed frame through `to_canonical`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache, partial
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

SODA_COLUMNS: tuple[str, ...] = (
    "id",
    "case_number",
    "date",
    "block",
    "iucr",
    "primary_type",
    "description",
    "location_description",
    "arrest",
    "domestic",
    "beat",
    "district",
    "ward",
    "community_area",
    "fbi_code",
    "x_coordinate",
    "y_coordinate",
    "year",
    "updated_on",
    "latitude",
    "longitude",
)
LABEL = "arrest"
STRING_COLUMNS = (
    "case_number",
    "block",
    "iucr",
    "primary_type",
    "description",
    "location_description",
    "beat",
    "district",
    "fbi_code",
)
FLOAT_COLUMNS = ("x_coordinate", "y_coordinate", "latitude", "longitude")
INT_COLUMNS = ("id", "ward", "community_area", "year")
BOOL_COLUMNS = ("arrest", "domestic")
DATETIME_COLUMNS = ("date", "updated_on")
# Codes that Socrata zero-pads; integer-typed copies (Parquet exports) lose the padding.
ZERO_PADDED = {"beat": 4, "district": 3}

# The 22 CPD district codes in use since 2012 (13, 21 and 23 were merged away; 31 is O'Hare).
KNOWN_DISTRICTS: frozenset[str] = frozenset(
    [f"{n:03d}" for n in (*range(1, 13), *range(14, 21), 22, 24, 25, 31)]
)

# A generous box around the city: lat/lon degrees and Illinois State Plane East (US feet).
CHICAGO_BOUNDS = {
    "latitude": (41.64, 42.03),
    "longitude": (-87.95, -87.52),
    "x_coordinate": (1_091_000.0, 1_206_000.0),
    "y_coordinate": (1_813_000.0, 1_952_000.0),
}

# --- shared constants: the one definition every room imports ---------------------------------

# The feed's clock: Socrata timestamps are floating Chicago local time, schedules run on it.
CHICAGO_TZ = "America/Chicago"
# How the city's CSV export writes a timestamp ("01/01/2018 12:00:00 PM"); SODA JSON uses ISO.
EXPORT_DATE_FORMAT = "%m/%d/%Y %I:%M:%S %p"
# The words a true/false field may hold, lower-cased (the feed writes "true"/"false").
TRUE_WORDS: frozenset[str] = frozenset({"true", "t", "1", "y", "yes"})
FALSE_WORDS: frozenset[str] = frozenset({"false", "f", "0", "n", "no"})

_UTC_OFFSET = r"(?:Z|[+-]\d{2}:?\d{2})$"


@cache
def chicago() -> ZoneInfo:
    """The Chicago time zone, loaded on first use (not at import) and shared."""
    return ZoneInfo(CHICAGO_TZ)


def normalize_header(name: str) -> str:
    """Map a Socrata export header ('Case Number', 'X Coordinate') to its SODA field name."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lstrip("\ufeff").lower()).strip("_")


def normalize_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Rename headers to SODA names; keep only contract columns (adding missing ones)."""
    renamed = frame.rename(columns={c: normalize_header(str(c)) for c in frame.columns})
    return renamed.reindex(columns=list(SODA_COLUMNS))


def parse_timestamps(values: pd.Series) -> pd.Series:
    """Parse ISO 8601 and 'MM/DD/YYYY hh:mm:ss AM' timestamps to naive Chicago time; bad -> NaT.

    Socrata's timestamps are floating (Chicago local, no offset) and are kept as they are; a
    value with an offset or `Z` (an API client's UTC time) is converted to Chicago local time.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        if values.dt.tz is not None:
            values = values.dt.tz_convert(CHICAGO_TZ).dt.tz_localize(None)
        return values.astype("datetime64[ns]")
    text = values.astype("string").str.strip()
    parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    aware = text.str.contains(_UTC_OFFSET, regex=True).fillna(False).astype(bool)
    if (~aware).any():
        parsed[~aware] = pd.to_datetime(text[~aware], format="ISO8601", errors="coerce")
    if aware.any():
        utc = pd.to_datetime(text[aware], format="ISO8601", errors="coerce", utc=True)
        parsed[aware] = utc.dt.tz_convert(CHICAGO_TZ).dt.tz_localize(None)
    missing = parsed.isna() & text.notna()
    if missing.any():
        parsed[missing] = pd.to_datetime(text[missing], format=EXPORT_DATE_FORMAT, errors="coerce")
    return parsed


def parse_booleans(values: pd.Series) -> pd.Series:
    """Parse true/false in any case (and real booleans) into a nullable boolean; others -> <NA>."""
    if pd.api.types.is_bool_dtype(values):
        return values.astype("boolean")
    text = values.astype("string").str.strip().str.lower()
    out = pd.Series(pd.NA, index=values.index, dtype="boolean")
    out[text.isin(TRUE_WORDS)] = True
    out[text.isin(FALSE_WORDS)] = False
    return out


def _codes(values: pd.Series, width: int | None) -> pd.Series:
    """Strings with surrounding blanks removed; integer-looking codes zero-padded to `width`."""
    text = values.astype("string").str.strip()
    text = text.mask(text == "")
    if width is not None:
        # Parquet/pandas may have turned '0614' into 614.0: drop the float tail before padding.
        text = text.str.replace(r"^(\d+)\.0*$", r"\1", regex=True)
        digits = text.str.fullmatch(r"\d+").fillna(False)
        text = text.mask(digits, text.str.zfill(width))
    return text


# A column whose sample is at least this distinct is parsed row by row, not per unique value.
_DISTINCT_SHARE_FOR_ROWWISE = 0.5
_SAMPLE = 10_000


def _per_unique(values: pd.Series, convert: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """Apply the element-wise `convert` once per distinct value and broadcast it back.

    Crime codes, types, beats and most timestamps repeat heavily, so this turns millions of
    Python-level string operations into thousands. Nearly-unique columns (ids, case numbers)
    skip the factorization, which would only add a hashing pass.
    """
    head = values.iloc[:_SAMPLE]
    distinct = head.nunique(dropna=True)
    if len(values) <= _SAMPLE or distinct > _DISTINCT_SHARE_FOR_ROWWISE * len(head):
        return convert(values)
    codes, uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)
    converted = convert(pd.Series(uniques, dtype=object))
    taken = converted.array.take(codes, allow_fill=True)
    return pd.Series(taken, index=values.index, name=values.name)


def _to_floats(values: pd.Series) -> pd.Series:
    """Numbers as float64; unparseable -> NaN."""
    if values.dtype == object:
        try:
            # float() per value is 3-7x faster than to_numeric; any bad value -> slow path.
            return pd.Series(values.to_numpy().astype("float64"), index=values.index)
        except (TypeError, ValueError):
            pass
    return pd.to_numeric(values, errors="coerce").astype("float64")


def _to_ints(values: pd.Series) -> pd.Series:
    """Whole numbers as Int64; fractional or unparseable -> <NA>."""
    # Only for text: int() would truncate a float object such as 2.5 instead of rejecting it.
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=False) == "string":
        try:
            return pd.Series(values.to_numpy().astype("int64"), index=values.index, dtype="Int64")
        except (TypeError, ValueError, OverflowError):
            pass
    numbers = pd.to_numeric(values, errors="coerce")
    whole = numbers.notna() & (numbers == np.floor(numbers))
    return numbers.where(whole).astype("Int64")


def _convert(column: str, values: pd.Series) -> pd.Series:
    """One column in its canonical dtype (typed inputs take the direct path)."""
    if column in DATETIME_COLUMNS:
        convert: Callable[[pd.Series], pd.Series] = parse_timestamps
    elif column in BOOL_COLUMNS:
        convert = parse_booleans
    elif column in FLOAT_COLUMNS:
        convert = _to_floats
    elif column in INT_COLUMNS:
        convert = _to_ints
    else:
        convert = partial(_codes, width=ZERO_PADDED.get(column))
    text_like = values.dtype == object or isinstance(values.dtype, pd.StringDtype)
    if text_like or (convert is not parse_timestamps and pd.api.types.is_integer_dtype(values)):
        return _per_unique(values, convert)
    return convert(values)


def to_canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Coerce a frame in either header style to the contract's canonical dtypes.

    Values that cannot be parsed become missing; `coercion_errors` tells which ones, so
    validation can name them instead of reporting a vague 'missing'.
    """
    # Look columns up by normalized name instead of renaming/reindexing: no copy of the input.
    source = {normalize_header(str(c)): c for c in frame.columns}
    columns = {}
    for column in SODA_COLUMNS:
        if column in source:
            values = frame[source[column]]
        else:
            values = pd.Series(None, index=frame.index, dtype=object, name=column)
        columns[column] = _convert(column, values)
    out = pd.DataFrame(columns, index=frame.index)
    # `year` is derivable from `date`; exports that omit it get it back here.
    out["year"] = out["year"].fillna(out["date"].dt.year.astype("Int64"))
    return out


def coercion_errors(raw: pd.DataFrame, canonical: pd.DataFrame) -> pd.Series:
    """Per-row text naming every value that was present in `raw` but unparseable (empty if none)."""
    df = normalize_columns(raw)
    reasons = pd.Series("", index=df.index, dtype="object")
    for column in (*DATETIME_COLUMNS, *BOOL_COLUMNS, *FLOAT_COLUMNS, *INT_COLUMNS):
        present = df[column].notna() & (df[column].astype("string").str.strip() != "")
        bad = present & canonical[column].isna()
        if bad.any():
            reasons[bad] = reasons[bad] + f"{column}: unparseable value; "
    return reasons.str.rstrip("; ")


def empty_canonical() -> pd.DataFrame:
    """A zero-row frame with the canonical columns and dtypes."""
    return to_canonical(pd.DataFrame(columns=list(SODA_COLUMNS)))
