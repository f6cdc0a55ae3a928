"""The raw-incident contract: SODA field names, canonical dtypes and loaders for both header styles.

Everything downstream (lake, model input, API body, prediction log) uses these names. A Socrata
CSV export ("Case Number", "MM/DD/YYYY hh:mm:ss AM") and a SODA JSON page ("case_number", ISO
dates, every value a string) both become the same typed frame through `to_canonical`.
"""

from __future__ import annotations

import re

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

_EXPORT_DATE_FORMAT = "%m/%d/%Y %I:%M:%S %p"
_TRUE = {"true", "t", "1", "y", "yes"}
_FALSE = {"false", "f", "0", "n", "no"}


def normalize_header(name: str) -> str:
    """Map a Socrata export header ('Case Number', 'X Coordinate') to its SODA field name."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lstrip("\ufeff").lower()).strip("_")


def normalize_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Rename headers to SODA names; keep only contract columns (adding missing ones)."""
    renamed = frame.rename(columns={c: normalize_header(str(c)) for c in frame.columns})
    return renamed.reindex(columns=list(SODA_COLUMNS))


def parse_timestamps(values: pd.Series) -> pd.Series:
    """Parse ISO 8601 and 'MM/DD/YYYY hh:mm:ss AM' timestamps (naive Chicago time); bad -> NaT."""
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values.dt.tz_convert(None) if values.dt.tz is not None else values
        return parsed.astype("datetime64[ns]")
    text = values.astype("string").str.strip()
    parsed = pd.to_datetime(text, format="ISO8601", errors="coerce")
    missing = parsed.isna() & text.notna()
    if missing.any():
        parsed = parsed.copy()
        parsed[missing] = pd.to_datetime(text[missing], format=_EXPORT_DATE_FORMAT, errors="coerce")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert(None)
    return parsed.astype("datetime64[ns]")


def parse_booleans(values: pd.Series) -> pd.Series:
    """Parse true/false in any case (and real booleans) into a nullable boolean; others -> <NA>."""
    if pd.api.types.is_bool_dtype(values):
        return values.astype("boolean")
    text = values.astype("string").str.strip().str.lower()
    out = pd.Series(pd.NA, index=values.index, dtype="boolean")
    out[text.isin(_TRUE)] = True
    out[text.isin(_FALSE)] = False
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


def to_canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Coerce a frame in either header style to the contract's canonical dtypes.

    Values that cannot be parsed become missing; `coercion_errors` tells which ones, so
    validation can name them instead of reporting a vague 'missing'.
    """
    df = normalize_columns(frame)
    out = pd.DataFrame(index=df.index)
    for column in SODA_COLUMNS:
        values = df[column]
        if column in DATETIME_COLUMNS:
            out[column] = parse_timestamps(values)
        elif column in BOOL_COLUMNS:
            out[column] = parse_booleans(values)
        elif column in FLOAT_COLUMNS:
            out[column] = pd.to_numeric(values, errors="coerce").astype("float64")
        elif column in INT_COLUMNS:
            numbers = pd.to_numeric(values, errors="coerce")
            whole = numbers.notna() & (numbers == np.floor(numbers))
            out[column] = numbers.where(whole).astype("Int64")
        else:
            out[column] = _codes(values, ZERO_PADDED.get(column))
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
