"""Wire schemas of the prediction API (msgspec Structs) and the canonical incident they become.

An `Incident` is a raw incident as the SODA JSON feed sends it (every value a string: `"beat":
"0614"`, `"latitude": "41.88"`) or as a client with JSON numbers sends it (`"beat": 614`,
`"latitude": 41.88`). msgspec checks the shape (types, patterns, lengths, JSON-number ranges);
`canonicalize` then parses the string forms, range-checks them and returns a `CanonicalIncident`
whose values already have the contract's canonical types, so `incidents_frame` can build the
model's input frame column by column without `to_canonical` (~10 ms a row).

Decisions (README "Prediction API"):

* Required: `date`, `primary_type`, `iucr`. A position is optional: the model scores a row
  without coordinates (its station distance is filled with the training median and flagged),
  and ~0.5 % of real records have none. A half position (latitude without longitude, x without
  y) is rejected, because it is almost certainly a client bug.
* Codes are validated by shape only: an unknown beat, district, IUCR or FBI code of the right
  shape is a valid category (the model maps categories it never saw to its "rare" code).
  Numbers for codes are zero-padded like the feed's strings (`614` -> `"0614"`).
* Every other SODA field (`arrest`, `location`, `:@computed_region_*`, ...) is accepted and
  ignored; `id`, `case_number`, `block`, `year` and `updated_on` are validated and logged with
  the prediction, but the model does not read them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
import numpy as np
import pandas as pd
from msgspec import Meta

from crimeflow.contract.schema import (
    CHICAGO_BOUNDS,
    FALSE_WORDS,
    FLOAT_COLUMNS,
    SODA_COLUMNS,
    STRING_COLUMNS,
    TRUE_WORDS,
    chicago,
)

EARLIEST_DATE = datetime(2001, 1, 1)
# Batch errors are collected (not stopped at the first) but capped: a 10k-row file of garbage
# must not produce a 10k-entry error body.
MAX_REPORTED_ERRORS = 50

# Printable text: control characters are never in the feed and PostgreSQL rejects NUL.
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


def _text(max_length: int, description: str, example: str) -> Any:
    """A printable string of at most `max_length` characters."""
    return Annotated[
        str,
        Meta(
            max_length=max_length, pattern=_PRINTABLE, description=description, examples=[example]
        ),
    ]


def _number(column: str, description: str, example: float) -> Any:
    """A coordinate: a JSON number inside Chicago, or numeric text (range-checked later)."""
    low, high = CHICAGO_BOUNDS[column]
    return (
        Annotated[float, Meta(ge=low, le=high, description=description, examples=[example])]
        | Annotated[str, Meta(max_length=32, description=f"{description} (as text)")]
        | None
    )


def _code(pattern: str, max_int: int, description: str, example: str) -> Any:
    """A code: text matching `pattern`, or a non-negative integer (zero-padded later)."""
    return (
        Annotated[str, Meta(pattern=pattern, description=description, examples=[example])]
        | Annotated[int, Meta(ge=0, le=max_int, description=f"{description} (as a number)")]
    )


DateText = Annotated[
    str,
    Meta(
        min_length=10,
        max_length=40,
        description=(
            "ISO 8601 timestamp. Without an offset it is Chicago local time (as in the SODA "
            "feed); with an offset or Z it is converted to Chicago local time. "
            "2001-01-01 to now + 1 day."
        ),
        examples=["2025-11-03T14:05:00.000"],
    ),
]
IucrCode = _code(r"^[0-9A-Z]{3,4}$", 9999, "Illinois UCR code; digits-only codes pad to 4", "0486")
BeatCode = _code(r"^[0-9]{3,4}$", 9999, "Police beat, 3-4 digits (zero-padded to 4)", "0614")
DistrictCode = _code(r"^[0-9]{1,3}$", 999, "Police district, 1-3 digits (zero-padded to 3)", "006")
FbiCode = _code(r"^[0-9]{2}[A-Z]?$", 99, "FBI offense code", "08B")
WardNumber = _code(r"^[0-9]{1,3}$", 999, "City ward", "17")
AreaNumber = _code(r"^[0-9]{1,3}$", 999, "Community area", "44")
YearNumber = _code(r"^[0-9]{4}$", 9999, "Year of the incident (not used by the model)", "2025")
IdNumber = _code(r"^[0-9]{1,18}$", 10**18 - 1, "Socrata record id (not used by the model)", "1")
BoolText = Annotated[str, Meta(max_length=8, description="true/false, t/f, yes/no, 1/0")]
PrimaryType = _text(64, "Primary offense type", "BATTERY")
Description = _text(128, "Offense description", "DOMESTIC BATTERY SIMPLE")
LocationDescription = _text(128, "Kind of place", "APARTMENT")
CaseNumber = _text(32, "CPD case number (not used by the model)", "JJ101234")
Block = _text(128, "Block address (not used by the model)", "064XX S STATE ST")
UpdatedOn = Annotated[str, Meta(max_length=40, description="ISO 8601 (not used by the model)")]
XCoordinate = _number("x_coordinate", "Illinois State Plane East x, US feet", 1176543.0)
YCoordinate = _number("y_coordinate", "Illinois State Plane East y, US feet", 1850231.0)
Latitude = _number("latitude", "WGS84 latitude", 41.7512)
Longitude = _number("longitude", "WGS84 longitude", -87.6321)


class Incident(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """One raw incident by SODA field name; strings or JSON numbers; unknown fields ignored."""

    date: DateText
    primary_type: PrimaryType
    iucr: IucrCode
    description: Description | None = None
    location_description: LocationDescription | None = None
    domestic: bool | BoolText | None = None
    beat: BeatCode | None = None
    district: DistrictCode | None = None
    ward: WardNumber | None = None
    community_area: AreaNumber | None = None
    fbi_code: FbiCode | None = None
    x_coordinate: XCoordinate = None
    y_coordinate: YCoordinate = None
    latitude: Latitude = None
    longitude: Longitude = None
    # Bookkeeping fields: validated and logged with the prediction, never read by the model.
    id: IdNumber | None = None
    case_number: CaseNumber | None = None
    block: Block | None = None
    year: YearNumber | None = None
    updated_on: UpdatedOn | None = None


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


class PredictionOut(msgspec.Struct, kw_only=True):
    """One prediction: the arrest probability, its label at the model's threshold, the model."""

    prediction_id: Annotated[str, Meta(description="uuid4 hex; quote it in POST /feedback")]
    arrest_probability: Annotated[float, Meta(ge=0.0, le=1.0)]
    arrest: Annotated[bool, Meta(description="arrest_probability >= the model's threshold")]
    model_name: str
    model_version: str
    served_at: Annotated[datetime, Meta(description="UTC")]


class BatchPredictionOut(msgspec.Struct, kw_only=True):
    """The predictions of a batch, in request order."""

    predictions: list[PredictionOut]


class Feedback(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The observed outcome of an earlier prediction."""

    prediction_id: Annotated[str, Meta(pattern=r"^[0-9a-f]{32}$", examples=["0" * 32])]
    arrest: bool


class FeedbackOut(msgspec.Struct, kw_only=True):
    """Acknowledgement: the outcome is stored next to the prediction."""

    prediction_id: str
    arrest: bool
    stored: bool = True


class Health(msgspec.Struct, kw_only=True):
    """Liveness: the process answers."""

    status: str = "ok"


class Readiness(msgspec.Struct, kw_only=True):
    """Readiness: a model is loaded and the prediction log takes writes."""

    ready: bool
    model_loaded: bool
    model_version: str | None
    prediction_log_writable: bool
    detail: str | None = None


class ModelInfo(msgspec.Struct, kw_only=True):
    """The model being served."""

    name: str
    version: str
    alias: str | None
    run_id: str | None
    loaded_at: datetime
    threshold: float
    metrics: dict[str, float]


class ReloadOut(msgspec.Struct, kw_only=True):
    """Result of a reload: whether the served version changed, and to what."""

    changed: bool
    version: str | None
    previous_version: str | None
    detail: str


class FieldError(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What is wrong with one field (`row` is the index in a batch; absent for /predict)."""

    message: str
    field: str | None = None
    row: int | None = None


class ErrorBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every error response: HTTP status, a sentence, and field errors for bad input."""

    status_code: int
    detail: str
    errors: list[FieldError] = msgspec.field(default_factory=list)


class InvalidInputError(Exception):
    """The request body is not valid input; answered with 400 and the field errors."""

    def __init__(self, errors: Sequence[FieldError], detail: str = "invalid input") -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors)


class _FieldProblem(ValueError):
    """One field of one incident is invalid (internal: becomes a FieldError)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --- msgspec errors -> field errors ------------------------------------------------------

_PATH = re.compile(
    r"^(?P<message>.*?)(?: - at `\$(?:\[(?P<row>\d+)\])?(?:\.(?P<field>[^.\[`]+))?[^`]*`)?$"
)
_MISSING = re.compile(r"missing required field `([^`]+)`")


def decode_error(
    error: msgspec.MsgspecError, *, batch: bool, subject: str = "incident"
) -> InvalidInputError:
    """A msgspec decode/validation error as an InvalidInputError naming the row and field."""
    text = str(error)
    match = _PATH.match(text)
    message = match.group("message") if match else text
    field = match.group("field") if match else None
    row = match.group("row") if match else None
    if field is None and (missing := _MISSING.search(message)):
        field = missing.group(1)
    if isinstance(error, msgspec.DecodeError) and not isinstance(error, msgspec.ValidationError):
        detail = "request body is not valid JSON"
    else:
        detail = f"invalid {subject} in batch" if batch else f"invalid {subject}"
    return InvalidInputError(
        [FieldError(message=message, field=field, row=int(row) if row is not None else None)],
        detail=detail,
    )


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
        raise _FieldProblem(field, f"not an ISO 8601 timestamp: {text!r}") from error
    return value


def _incident_date(text: str, now: datetime) -> datetime:
    """The incident timestamp, between 2001-01-01 and now + 1 day (Chicago time)."""
    value = parse_local_timestamp("date", text)
    latest = now + timedelta(days=1)
    if not EARLIEST_DATE <= value <= latest:
        raise _FieldProblem(
            "date", f"{value.isoformat()} is outside {EARLIEST_DATE.date()} .. {latest.date()}"
        )
    return value


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
        raise _FieldProblem(field, f"{value} does not match {pattern}")
    return text.zfill(width) if text.isdigit() else text


def _whole(value: str | int | None) -> int | None:
    """A whole number from an integer or digit text (the pattern already checked the text)."""
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
            raise _FieldProblem(column, f"not a number: {text!r}") from error
    if value is None:
        return None
    low, high = CHICAGO_BOUNDS[column]
    # `not low <= v <= high` is also True for NaN.
    if not low <= value <= high:
        raise _FieldProblem(column, f"{value} is outside Chicago's range [{low}, {high}]")
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
    raise _FieldProblem(field, f"not a boolean: {value!r}")


def _pair(first: str, a: float | None, second: str, b: float | None) -> None:
    """Both halves of a position, or neither."""
    if (a is None) != (b is None):
        given, missing = (first, second) if a is not None else (second, first)
        raise _FieldProblem(missing, f"{given} is given, so {missing} is required too")


def canonicalize(incident: Incident, now: datetime | None = None) -> CanonicalIncident:
    """Parse, range-check and normalize one incident; `_FieldProblem` names a bad field."""
    now = chicago_now() if now is None else now
    primary_type = _clean(incident.primary_type)
    if primary_type is None:
        raise _FieldProblem("primary_type", "must not be blank")
    x = _coordinate("x_coordinate", incident.x_coordinate)
    y = _coordinate("y_coordinate", incident.y_coordinate)
    _pair("x_coordinate", x, "y_coordinate", y)
    latitude = _coordinate("latitude", incident.latitude)
    longitude = _coordinate("longitude", incident.longitude)
    _pair("latitude", latitude, "longitude", longitude)
    date = _incident_date(incident.date, now)
    updated_on = None
    if incident.updated_on is not None and incident.updated_on.strip():
        updated_on = parse_local_timestamp("updated_on", incident.updated_on)
    return CanonicalIncident(
        date=date,
        iucr=_padded("iucr", incident.iucr, r"[0-9]{1,4}", 4),  # type: ignore[arg-type]
        primary_type=primary_type,
        description=_clean(incident.description),
        location_description=_clean(incident.location_description),
        domestic=_boolean("domestic", incident.domestic),
        beat=_padded("beat", incident.beat, r"[0-9]{3,4}", 4),
        district=_padded("district", incident.district, r"[0-9]{1,3}", 3),
        ward=_whole(incident.ward),
        community_area=_whole(incident.community_area),
        fbi_code=_padded("fbi_code", incident.fbi_code, r"[0-9]{1,2}", 2),
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


def canonicalize_one(incident: Incident) -> CanonicalIncident:
    """`canonicalize` for /predict: an InvalidInputError (400) names the bad field."""
    try:
        return canonicalize(incident)
    except _FieldProblem as problem:
        raise InvalidInputError(
            [FieldError(message=problem.message, field=problem.field)], "invalid incident"
        ) from None


def canonicalize_many(incidents: Sequence[Incident]) -> list[CanonicalIncident]:
    """`canonicalize` every row; InvalidInputError lists the bad rows (index and field)."""
    now = chicago_now()
    rows: list[CanonicalIncident] = []
    errors: list[FieldError] = []
    bad_rows = 0
    for index, incident in enumerate(incidents):
        try:
            rows.append(canonicalize(incident, now))
        except _FieldProblem as problem:
            bad_rows += 1
            if len(errors) < MAX_REPORTED_ERRORS:
                errors.append(FieldError(message=problem.message, field=problem.field, row=index))
    if errors:
        raise InvalidInputError(errors, f"{bad_rows} of {len(incidents)} rows are invalid")
    return rows


# --- the model's input frame -------------------------------------------------------------

_STRING_FIELDS = STRING_COLUMNS
# `year` is built below: the body's value, else derived from `date` (as `to_canonical` does).
_INT_FIELDS = ("id", "ward", "community_area")
_FLOAT_FIELDS = FLOAT_COLUMNS


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
    return np.array(values, dtype="datetime64[ns]")


def incidents_frame(incidents: Sequence[CanonicalIncident]) -> pd.DataFrame:
    """The canonical frame of `incidents` (SODA columns, to_canonical's dtypes), built directly.

    Equal to `to_canonical` of the same records as feed text (tested), so the model pipeline's
    `is_canonical` fast path applies and no value is parsed twice.
    """
    n = len(incidents)
    columns: dict[str, Any] = {}
    for name in _STRING_FIELDS:
        columns[name] = _strings([getattr(row, name) for row in incidents])
    for name in _INT_FIELDS:
        columns[name] = _ints([getattr(row, name) for row in incidents])
    for name in _FLOAT_FIELDS:
        columns[name] = _floats([getattr(row, name) for row in incidents])
    # `year` is derivable from `date`; to_canonical fills it the same way.
    columns["year"] = _ints([row.date.year if row.year is None else row.year for row in incidents])
    columns["date"] = _timestamps([row.date for row in incidents])
    columns["updated_on"] = _timestamps([row.updated_on for row in incidents])
    domestic = [row.domestic for row in incidents]
    columns["domestic"] = pd.arrays.BooleanArray(
        np.array([bool(v) for v in domestic], dtype=bool),
        np.array([v is None for v in domestic], dtype=bool),
    )
    columns["arrest"] = pd.arrays.BooleanArray(np.zeros(n, dtype=bool), np.ones(n, dtype=bool))
    return pd.DataFrame({name: columns[name] for name in SODA_COLUMNS}, copy=False)


def features_of(incident: CanonicalIncident) -> dict[str, Any]:
    """The incident's SODA input fields as JSON-able values (ISO text for timestamps)."""
    features = msgspec.structs.asdict(incident)
    features["date"] = incident.date.isoformat()
    if incident.updated_on is not None:
        features["updated_on"] = incident.updated_on.isoformat()
    return features
