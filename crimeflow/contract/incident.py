"""The incident codec: one incident's values parsed once into canonical Python types.

`canonicalize` turns a raw incident (SODA JSON strings such as `"beat": "0614"`, or JSON numbers
such as `"beat": 614`) into a `CanonicalIncident`: naive Chicago time, zero-padded codes, ints and
floats, range-checked. A bad value raises `FieldProblem` naming the field; the HTTP layer turns
that into its 400 answer. From there the typed values travel as they are: `incidents_frame`
builds the model's input frame column by column (equal to `to_canonical` of the same records,
without its ~10 ms a row), and the prediction log stores the same values in its columns.
`incidents_from_frame` is the inverse edge, for frames (generated or exported incidents).

Decisions (README "Prediction API"):

* Required: `date`, `primary_type`, `iucr`. A position is optional: the model scores a row
  without coordinates (its station distance is filled with the training median and flagged),
  and ~0.5 % of real records have none. A half position (latitude without longitude, x without
  y) is rejected, because it is almost certainly a client bug.
* Codes are validated by shape only: an unknown beat, district, IUCR or FBI code of the right
  shape is a valid category (the model maps categories it never saw to its "rare" code).
  Numbers for codes are zero-padded like the feed's strings (`614` -> `"0614"`).
* `id`, `case_number`, `block`, `year` and `updated_on` are validated and logged with the
  prediction, but the model does not read them.
* Every timestamp (`date`, `updated_on`) lies in 2001-01-01 .. now + 1 day (Chicago time):
  `timestamp_in_range`, the one place the range is defined.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import msgspec
import numpy as np
import pandas as pd

from crimeflow.contract.schema import (
    CHICAGO_BOUNDS,
    FALSE_WORDS,
    FLOAT_COLUMNS,
    LABEL,
    SODA_COLUMNS,
    STRING_COLUMNS,
    TRUE_WORDS,
    chicago,
    to_canonical,
)

# The one plausible range of every timestamp of an incident (`date` and `updated_on`): the
# Chicago data starts in 2001, and a clock a day fast is tolerated. A value outside it is a 400
# at the edge; it would also not fit pandas' nanosecond timestamps (years 1677-2262) when the
# log is read back.
EARLIEST_DATE = datetime(2001, 1, 1)
LATEST_AHEAD = timedelta(days=1)
# The fields an incident cannot do without (the model's input starts from them).
REQUIRED_FIELDS = ("date", "iucr", "primary_type")


class CanonicalIncident(msgspec.Struct, frozen=True, gc=False):
    """A validated incident in canonical Python types (naive Chicago time, padded codes)."""

    date: datetime
    iucr: str
    primary_type: str
    description: str | None
    location_description: str | None
    domestic: bool | None
    beat: str | None
    district: str | None
    ward: int | None
    community_area: int | None
    fbi_code: str | None
    x_coordinate: float | None
    y_coordinate: float | None
    latitude: float | None
    longitude: float | None
    id: int | None
    case_number: str | None
    block: str | None
    year: int | None
    updated_on: datetime | None


# Every input field of an incident, in the order of the SODA contract (no label).
INCIDENT_FIELDS: tuple[str, ...] = tuple(c for c in SODA_COLUMNS if c != LABEL)
_FIELD_GETTER = operator.attrgetter(*INCIDENT_FIELDS)
_TZINFO = operator.attrgetter("tzinfo")


class RawIncident(Protocol):
    """The values `canonicalize` reads: what a decoded API body (`api.schemas.Incident`) holds."""

    date: str
    iucr: str | int
    primary_type: str
    description: str | None
    location_description: str | None
    domestic: bool | str | None
    beat: str | int | None
    district: str | int | None
    ward: str | int | None
    community_area: str | int | None
    fbi_code: str | int | None
    x_coordinate: float | str | None
    y_coordinate: float | str | None
    latitude: float | str | None
    longitude: float | str | None
    id: str | int | None
    case_number: str | None
    block: str | None
    year: str | int | None
    updated_on: str | None


class FieldProblem(ValueError):
    """One field of one incident is invalid: which field, and what is wrong with it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --- canonicalization (pure) -------------------------------------------------------------


def chicago_now() -> datetime:
    """The current naive Chicago local time (the feed's clock)."""
    return datetime.now(UTC).astimezone(chicago()).replace(tzinfo=None)


def parse_local_timestamp(field: str, text: str) -> datetime:
    """ISO 8601 text as naive Chicago local time (offsets converted, like parse_timestamps)."""
    try:
        value = datetime.fromisoformat(text.strip())
        if value.tzinfo is not None:
            value = value.astimezone(chicago()).replace(tzinfo=None)
    except (ValueError, OverflowError) as error:
        raise FieldProblem(field, f"not an ISO 8601 timestamp: {text!r}") from error
    return value


def timestamp_in_range(field: str, value: datetime, now: datetime) -> datetime:
    """`value` if in EARLIEST_DATE .. now + LATEST_AHEAD, else FieldProblem naming `field`."""
    latest = now + LATEST_AHEAD
    if not EARLIEST_DATE <= value <= latest:
        raise FieldProblem(
            field, f"{value.isoformat()} is outside {EARLIEST_DATE.date()} .. {latest.date()}"
        )
    return value


def _timestamp(field: str, text: str, now: datetime) -> datetime:
    """An incident timestamp, parsed and range-checked (Chicago time)."""
    return timestamp_in_range(field, parse_local_timestamp(field, text), now)


def _clean(value: str | None) -> str | None:
    """Text with surrounding blanks removed; blank text is missing (as in to_canonical)."""
    if value is None:
        return None
    value = value.strip()
    return value or None


def _padded(field: str, value: str | int | None, pattern: str, width: int) -> str | None:
    """A code as text; integers must match the same shape; digit-only codes zero-padded."""
    if value is None:
        return None
    text = str(value).strip()
    if isinstance(value, int) and not re.fullmatch(pattern, text):
        raise FieldProblem(field, f"{value} does not match {pattern}")
    return text.zfill(width) if text.isdigit() else text


def _whole(value: str | int | None) -> int | None:
    """A whole number from an integer or digit text (the wire pattern already checked the text)."""
    if value is None:
        return None
    return int(value)


def _coordinate(column: str, value: float | str | None) -> float | None:
    """A finite coordinate inside CHICAGO_BOUNDS; blank text is missing."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError as error:
            raise FieldProblem(column, f"not a number: {text!r}") from error
    if value is None:
        return None
    low, high = CHICAGO_BOUNDS[column]
    # `not low <= v <= high` is also True for NaN.
    if not low <= value <= high:
        raise FieldProblem(column, f"{value} is outside Chicago's range [{low}, {high}]")
    return value


def _boolean(field: str, value: bool | str | None) -> bool | None:
    """A boolean from true/false (the feed's text) or a JSON boolean."""
    if value is None or isinstance(value, bool):
        return value
    text = value.strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise FieldProblem(field, f"not a boolean: {value!r}")


def _pair(first: str, a: float | None, second: str, b: float | None) -> None:
    """Both halves of a position, or neither."""
    if (a is None) != (b is None):
        given, missing = (first, second) if a is not None else (second, first)
        raise FieldProblem(missing, f"{given} is given, so {missing} is required too")


# Codes: the shape an integer must have, and the width digit-only codes are zero-padded to.
_CODES: dict[str, tuple[str, int]] = {
    "iucr": (r"[0-9]{1,4}", 4),
    "beat": (r"[0-9]{3,4}", 4),
    "district": (r"[0-9]{1,3}", 3),
    "fbi_code": (r"[0-9]{1,2}", 2),
}
_TEXT_FIELDS = ("description", "location_description", "case_number", "block")
_WHOLE_FIELDS = ("ward", "community_area", "id", "year")


def _primary_type(value: str) -> str:
    """The offense type, required and not blank."""
    primary_type = _clean(value)
    if primary_type is None:
        raise FieldProblem("primary_type", "must not be blank")
    return primary_type


def _code(field: str, value: str | int | None) -> str | None:
    """A code of `_CODES` as padded text."""
    pattern, width = _CODES[field]
    return _padded(field, value, pattern, width)


def _incident_date(text: str, now: datetime) -> datetime:
    """When the incident happened, parsed and range-checked."""
    return _timestamp("date", text, now)


def _updated_on(value: str | None, now: datetime) -> datetime | None:
    """The record's last update, parsed and range-checked; blank text is missing."""
    if value is None or not value.strip():
        return None
    return _timestamp("updated_on", value, now)


def canonicalize(incident: RawIncident, now: datetime | None = None) -> CanonicalIncident:
    """Parse, range-check and normalize one incident; `FieldProblem` names a bad field.

    Every check lives in a per-field helper that `canonical_columns` applies too, so the batch
    path accepts exactly what this accepts: add a new check to a helper, not inline here.
    """
    now = chicago_now() if now is None else now
    primary_type = _primary_type(incident.primary_type)
    x = _coordinate("x_coordinate", incident.x_coordinate)
    y = _coordinate("y_coordinate", incident.y_coordinate)
    _pair("x_coordinate", x, "y_coordinate", y)
    latitude = _coordinate("latitude", incident.latitude)
    longitude = _coordinate("longitude", incident.longitude)
    _pair("latitude", latitude, "longitude", longitude)
    date = _incident_date(incident.date, now)
    updated_on = _updated_on(incident.updated_on, now)
    return CanonicalIncident(
        date=date,
        iucr=_code("iucr", incident.iucr),  # type: ignore[arg-type]
        primary_type=primary_type,
        description=_clean(incident.description),
        location_description=_clean(incident.location_description),
        domestic=_boolean("domestic", incident.domestic),
        beat=_code("beat", incident.beat),
        district=_code("district", incident.district),
        ward=_whole(incident.ward),
        community_area=_whole(incident.community_area),
        fbi_code=_code("fbi_code", incident.fbi_code),
        x_coordinate=x,
        y_coordinate=y,
        latitude=latitude,
        longitude=longitude,
        id=_whole(incident.id),
        case_number=_clean(incident.case_number),
        block=_clean(incident.block),
        year=_whole(incident.year),
        updated_on=updated_on,
    )


# --- many incidents at once, column by column ---------------------------------------------


@dataclass(frozen=True, slots=True)
class IncidentColumns:
    """Validated incidents column by column: a list of canonical values per `INCIDENT_FIELDS`.

    Built only by `canonical_columns` or `columns_of`, so every value already has its canonical
    type (naive Chicago datetimes, padded codes, finite in-range floats).
    """

    values: dict[str, list[Any]]

    def __len__(self) -> int:
        return len(self.values["date"])


def columns_of(incidents: Sequence[CanonicalIncident]) -> IncidentColumns:
    """The columns of already canonical incidents."""
    return IncidentColumns(
        {name: [getattr(row, name) for row in incidents] for name in INCIDENT_FIELDS}
    )


def _mapped(values: list[Any], convert: Callable[[Any], Any]) -> list[Any]:
    """`convert` of every value, computed once per distinct value (codes repeat a lot).

    Exact only for pure conversions of hashable values whose equal values convert equally:
    true of every field here (a code field never holds both 1 and True, for instance).
    """
    table = {value: convert(value) for value in set(values)}
    return [table[value] for value in values]


def _coordinates(name: str, values: list[Any]) -> list[float | None]:
    """`_coordinate` of a column: one float() pass when every value is a number, text or None."""
    try:
        # float() strips the same whitespace as str.strip(); blank text goes the slow way.
        floats = [None if value is None else float(value) for value in values]
    except ValueError:
        return _mapped(values, lambda value: _coordinate(name, value))
    low, high = CHICAGO_BOUNDS[name]
    array = np.array(floats, dtype="float64")  # None -> NaN, masked below
    missing = np.array([value is None for value in floats], dtype=bool)
    if not np.all(((array >= low) & (array <= high)) | missing):  # NaN text fails too
        return [_coordinate(name, value) for value in values]  # raises for the culprit
    return floats


def _pairs(first: str, a: list[Any], second: str, b: list[Any]) -> None:
    """`_pair` of two columns."""
    if [v is None for v in a] != [v is None for v in b]:
        for x, y in zip(a, b, strict=True):
            _pair(first, x, second, y)


def _timestamp_column(texts: list[Any], now: datetime) -> list[datetime] | None:
    """The per-row timestamp parse of a column in a few C-level passes; None: parse per row.

    Only for the plain case, where both give the same values: every value is ISO text without
    surrounding blanks (`fromisoformat` rejects them) or an offset, and the column's min and
    max are in range. Anything else (blank, None, an offset, a bad or out-of-range value) is
    left to the per-row parse, which also names the problem.
    """
    try:
        values = list(map(datetime.fromisoformat, texts))
    except (TypeError, ValueError, OverflowError):
        return None
    if not values or any(map(_TZINFO, values)):  # a tzinfo object is truthy
        return None
    if not (min(values) >= EARLIEST_DATE and max(values) <= now + LATEST_AHEAD):
        return None
    return values


def canonical_columns(
    incidents: Sequence[RawIncident], now: datetime | None = None
) -> IncidentColumns:
    """`canonicalize` of every incident, column by column; FieldProblem if any row is invalid.

    Equal to `columns_of([canonicalize(i, now) for i in incidents])` (tested), without a
    function call and a record per row. It applies the same per-field helpers, so it accepts
    and rejects exactly the same rows; the problem it raises names a field but not a row (and
    may not be a row's first problem): the caller asks `canonicalize` row by row for those.
    """
    now = chicago_now() if now is None else now
    # One C-level pass: a tuple of the fields per row, transposed into one list per field.
    transposed = zip(*map(_FIELD_GETTER, incidents), strict=True) if incidents else ()
    raw = dict(zip(INCIDENT_FIELDS, map(list, transposed), strict=True))
    if not raw:
        raw = {name: [] for name in INCIDENT_FIELDS}
    out: dict[str, list[Any]] = {"primary_type": _mapped(raw["primary_type"], _primary_type)}
    for name in ("x_coordinate", "y_coordinate", "latitude", "longitude"):
        out[name] = _coordinates(name, raw[name])
    _pairs("x_coordinate", out["x_coordinate"], "y_coordinate", out["y_coordinate"])
    _pairs("latitude", out["latitude"], "longitude", out["longitude"])
    out["date"] = _timestamp_column(raw["date"], now) or [
        _incident_date(text, now) for text in raw["date"]
    ]
    out["updated_on"] = _timestamp_column(raw["updated_on"], now) or [
        _updated_on(text, now) for text in raw["updated_on"]
    ]
    for name in _CODES:
        out[name] = _mapped(raw[name], lambda value, name=name: _code(name, value))
    for name in _TEXT_FIELDS:
        out[name] = _mapped(raw[name], _clean)
    for name in _WHOLE_FIELDS:
        out[name] = _mapped(raw[name], _whole)
    out["domestic"] = _mapped(raw["domestic"], lambda value: _boolean("domestic", value))
    return IncidentColumns({name: out[name] for name in INCIDENT_FIELDS})


# --- incidents -> the model's input frame ------------------------------------------------

# `year` is built below: the incident's value, else derived from `date` (as `to_canonical` does).
_INT_FIELDS = ("id", "ward", "community_area")


def _strings(values: list[Any]) -> pd.arrays.StringArray:
    """A pandas string array (None -> <NA>) without pd.array's per-value inference."""
    return pd.arrays.StringArray(np.array(values, dtype=object))


def _ints(values: list[int | None]) -> pd.arrays.IntegerArray:
    """A nullable Int64 array."""
    mask = np.array([v is None for v in values], dtype=bool)
    data = np.array([0 if v is None else v for v in values], dtype="int64")
    return pd.arrays.IntegerArray(data, mask)


def _floats(values: list[float | None]) -> np.ndarray:
    """float64 with NaN for missing."""
    return np.array([np.nan if v is None else v for v in values], dtype="float64")


def _timestamps(values: list[datetime | None]) -> np.ndarray:
    """datetime64[ns] with NaT for missing."""
    try:
        # pandas converts datetime objects in C, several times faster than numpy does.
        return pd.DatetimeIndex(values).as_unit("ns").to_numpy()
    except (pd.errors.OutOfBoundsDatetime, OverflowError):
        return np.array(values, dtype="datetime64[ns]")  # what it was before: numpy's own


def incidents_frame(incidents: Sequence[CanonicalIncident]) -> pd.DataFrame:
    """The canonical frame of `incidents` (SODA columns, to_canonical's dtypes), built directly.

    Equal to `to_canonical` of the same records as feed text (tested), so the model pipeline's
    `is_canonical` fast path applies and no value is parsed twice.
    """
    return columns_frame(columns_of(incidents))


def columns_frame(incidents: IncidentColumns) -> pd.DataFrame:
    """The canonical frame of validated columns (what `incidents_frame` builds from records)."""
    values = incidents.values
    n = len(incidents)
    columns: dict[str, Any] = {}
    for name in STRING_COLUMNS:
        columns[name] = _strings(values[name])
    for name in _INT_FIELDS:
        columns[name] = _ints(values[name])
    for name in FLOAT_COLUMNS:
        columns[name] = _floats(values[name])
    # `year` is derivable from `date`; to_canonical fills it the same way.
    columns["year"] = _ints(
        [d.year if y is None else y for d, y in zip(values["date"], values["year"], strict=True)]
    )
    columns["date"] = _timestamps(values["date"])
    columns["updated_on"] = _timestamps(values["updated_on"])
    domestic = values["domestic"]
    columns["domestic"] = pd.arrays.BooleanArray(
        np.array([bool(v) for v in domestic], dtype=bool),
        np.array([v is None for v in domestic], dtype=bool),
    )
    columns["arrest"] = pd.arrays.BooleanArray(np.zeros(n, dtype=bool), np.ones(n, dtype=bool))
    return pd.DataFrame({name: columns[name] for name in SODA_COLUMNS}, copy=False)


# --- a frame -> incidents (the edge for generated and exported records) -------------------


def _python_values(values: pd.Series) -> list[Any]:
    """A canonical column's cells as plain Python values (None for every kind of missing)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return [None if pd.isna(v) else v.to_pydatetime() for v in values]
    cells = values.astype(object).tolist()
    return [
        None if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v
        for v in cells
    ]


def incidents_from_frame(frame: pd.DataFrame) -> list[CanonicalIncident]:
    """Each row of a frame (either header style) as a CanonicalIncident, via `to_canonical`.

    ValueError names the first row that lacks one of `REQUIRED_FIELDS`: such a row is not an
    incident the API would take, and the typed record has no place for the gap.
    """
    canonical = to_canonical(frame)
    incomplete = canonical[list(REQUIRED_FIELDS)].isna().any(axis=1)
    if incomplete.any():
        first = incomplete.to_numpy().nonzero()[0][0]
        raise ValueError(f"row {first}: {', '.join(REQUIRED_FIELDS)} are required")
    columns = [_python_values(canonical[name]) for name in INCIDENT_FIELDS]
    return [
        CanonicalIncident(**dict(zip(INCIDENT_FIELDS, cells, strict=True)))
        for cells in zip(*columns, strict=True)
    ]
