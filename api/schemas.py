"""Wire schemas of the prediction API (msgspec Structs) and how bad input becomes a 400.

An `Incident` is a raw incident as the SODA JSON feed sends it (every value a string: `"beat":
"0614"`, `"latitude": "41.88"`) or as a client with JSON numbers sends it (`"beat": 614`,
`"latitude": 41.88`). msgspec checks the shape (types, patterns, lengths, JSON-number ranges);
`crimeflow.contract.incident.canonicalize` then parses the string forms, range-checks them and
returns a `CanonicalIncident`, which travels as it is to the model and the prediction log.
Here, its `FieldProblem` becomes an `InvalidInputError` (HTTP 400 naming the row and field).

Every SODA field the body does not declare (`arrest`, `location`, `:@computed_region_*`, ...)
is accepted and ignored. The decisions on required fields and codes are in the codec's module.
"""

from __future__ import annotations

import functools
import operator
import re
import types
import typing
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Union

import msgspec
from msgspec import Meta

from crimeflow.contract.incident import (
    CanonicalIncident,
    FieldProblem,
    IncidentColumns,
    canonical_columns,
    canonicalize,
    chicago_now,
    columns_of,
)
from crimeflow.contract.schema import CHICAGO_BOUNDS

# Batch errors are collected (not stopped at the first) but capped: a 10k-row file of garbage
# must not produce a 10k-entry error body.
MAX_REPORTED_ERRORS = 50


_ANCHOR_HEAD, _ANCHOR_TAIL = "^(?:", r")$(?!\n)"


def anchored(pattern: str) -> str:
    """`pattern` matching the whole string, with no trailing newline let through.

    msgspec checks a pattern with `re.search`, where `$` also matches before a final newline
    (`"0614\n"` would pass `^[0-9]{4}$`). `(?!\n)` closes that and is the same regex in
    JSON Schema's dialect (ECMA 262, where backslash-Z means a literal Z), so /schema stays valid.
    """
    return f"{_ANCHOR_HEAD}{pattern}{_ANCHOR_TAIL}"


# Printable text: control characters are never in the feed and PostgreSQL rejects NUL.
_PRINTABLE = anchored(r"[^\x00-\x1f\x7f]*")


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
IucrCode = _code(
    anchored(r"[0-9A-Z]{3,4}"), 9999, "Illinois UCR code; digits-only codes pad to 4", "0486"
)
BeatCode = _code(
    anchored(r"[0-9]{3,4}"), 9999, "Police beat, 3-4 digits (zero-padded to 4)", "0614"
)
DistrictCode = _code(
    anchored(r"[0-9]{1,3}"), 999, "Police district, 1-3 digits (zero-padded to 3)", "006"
)
FbiCode = _code(anchored(r"[0-9]{2}[A-Z]?"), 99, "FBI offense code", "08B")
WardNumber = _code(anchored(r"[0-9]{1,3}"), 999, "City ward", "17")
AreaNumber = _code(anchored(r"[0-9]{1,3}"), 999, "Community area", "44")
YearNumber = _code(
    anchored(r"[0-9]{4}"), 9999, "Year of the incident (not used by the model)", "2025"
)
IdNumber = _code(
    anchored(r"[0-9]{1,18}"), 10**18 - 1, "Socrata record id (not used by the model)", "1"
)
BoolText = Annotated[str, Meta(max_length=8, description="true/false, t/f, yes/no, 1/0")]
PrimaryType = _text(64, "Primary offense type", "BATTERY")
Description = _text(128, "Offense description", "DOMESTIC BATTERY SIMPLE")
LocationDescription = _text(128, "Kind of place", "APARTMENT")
CaseNumber = _text(32, "CPD case number (not used by the model)", "JJ101234")
Block = _text(128, "Block address (not used by the model)", "064XX S STATE ST")
UpdatedOn = Annotated[
    str,
    Meta(
        max_length=40,
        description="ISO 8601 like `date`, 2001-01-01 to now + 1 day (not used by the model)",
    ),
]
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


class PredictionOut(msgspec.Struct, kw_only=True):
    """One prediction: the arrest probability, its label at the model's threshold, the model."""

    prediction_id: Annotated[
        str, Meta(description="32 hex digits, time-ordered; quote it in POST /feedback")
    ]
    arrest_probability: Annotated[float, Meta(ge=0.0, le=1.0)]
    arrest: Annotated[bool, Meta(description="arrest_probability >= the model's threshold")]
    model_name: str
    model_version: str
    served_at: Annotated[datetime, Meta(description="UTC")]


class ContributionOut(msgspec.Struct, kw_only=True):
    """One readable feature's value for this incident and how far it moved the score."""

    feature: Annotated[str, Meta(description="e.g. crime type, location description, hour")]
    value: Annotated[
        str | int | float | None,
        Meta(description="What the incident says (distance in meters; null if missing)"),
    ]
    contribution: Annotated[
        float, Meta(description="Exact Shapley contribution on `contribution_scale`")
    ]


class ExplainedPredictionOut(PredictionOut, kw_only=True):
    """A prediction with its explanation (`?explain=true`).

    base_value + the contributions of *every* feature = raw_score; the list holds the
    largest ones only. Calibration is monotone: a positive contribution raises the probability.
    """

    contributions: list[ContributionOut]
    base_value: Annotated[float, Meta(description="The score of an average training incident")]
    raw_score: Annotated[float, Meta(description="This incident's score, before calibration")]
    contribution_scale: Annotated[str, Meta(examples=["log-odds before calibration"])]
    explanation_method: Annotated[str, Meta(examples=["path-dependent TreeSHAP"])]


class BatchPredictionOut(msgspec.Struct, kw_only=True):
    """The predictions of a batch, in request order."""

    predictions: list[PredictionOut]


class Feedback(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The observed outcome of an earlier prediction."""

    prediction_id: Annotated[str, Meta(pattern=anchored("[0-9a-f]{32}"), examples=["0" * 32])]
    arrest: bool


class FeedbackOut(msgspec.Struct, kw_only=True):
    """Acknowledgement: the outcome is stored next to the prediction (and in its history)."""

    prediction_id: str
    arrest: bool
    stored: bool = True
    replaced: Annotated[
        bool, Meta(description="An earlier outcome of this prediction was overwritten")
    ] = False
    previous_arrest: Annotated[
        bool | None, Meta(description="The outcome this one replaced (null: the first one)")
    ] = None
    received_at: Annotated[datetime | None, Meta(description="UTC")] = None


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
    # Pages in the MLflow UI at its public URL: the model version, its training run and the
    # model card in that run (both null when the run is unknown).
    mlflow_url: str
    run_url: str | None
    model_card_url: str | None = None


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


def body_error(message: str) -> InvalidInputError:
    """A body that is not valid JSON at all (400): bad UTF-8, nesting too deep."""
    return InvalidInputError([FieldError(message=message)], detail="request body is not valid JSON")


# --- codec problems -> field errors ------------------------------------------------------


def canonicalize_one(incident: Incident) -> CanonicalIncident:
    """`canonicalize` for /predict: an InvalidInputError (400) names the bad field."""
    try:
        return canonicalize(incident)
    except FieldProblem as problem:
        raise InvalidInputError(
            [FieldError(message=problem.message, field=problem.field)], "invalid incident"
        ) from None


def canonicalize_many(
    incidents: Sequence[Incident], now: datetime | None = None
) -> list[CanonicalIncident]:
    """`canonicalize` every row; InvalidInputError lists the bad rows (index and field)."""
    now = chicago_now() if now is None else now
    rows: list[CanonicalIncident] = []
    errors: list[FieldError] = []
    bad_rows = 0
    for index, incident in enumerate(incidents):
        try:
            rows.append(canonicalize(incident, now))
        except FieldProblem as problem:
            bad_rows += 1
            if len(errors) < MAX_REPORTED_ERRORS:
                errors.append(FieldError(message=problem.message, field=problem.field, row=index))
    if errors:
        raise InvalidInputError(errors, f"{bad_rows} of {len(incidents)} rows are invalid")
    return rows


def canonical_batch(incidents: Sequence[Incident]) -> IncidentColumns:
    """A batch's validated columns; InvalidInputError lists the bad rows (index and field).

    The column-by-column codec does the work; when it finds a problem, the row-by-row one
    (the same checks) names every bad row and its field, exactly as `canonicalize_many` does.
    """
    now = chicago_now()
    try:
        return canonical_columns(incidents, now)
    except FieldProblem:
        return columns_of(canonicalize_many(incidents, now))


# --- fast batch decoding: the regex checks once per distinct value ------------------------------

_META_KEYS = ("gt", "ge", "lt", "le", "multiple_of", "min_length", "max_length", "tz")


def _without_patterns(annotation: Any, patterns: list[str]) -> Any:
    """`annotation` with every Meta's `pattern` removed (collected in `patterns`)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        base, *metas = args
        kept = []
        for meta in metas:
            if isinstance(meta, Meta) and meta.pattern is not None:
                patterns.append(meta.pattern)
                values = {k: getattr(meta, k) for k in _META_KEYS if getattr(meta, k) is not None}
                meta = Meta(**values)
            kept.append(meta)
        return Annotated[(_without_patterns(base, patterns), *kept)]  # type: ignore[misc]
    if origin in (Union, types.UnionType):
        return Union[tuple(_without_patterns(a, patterns) for a in args)]  # noqa: UP007
    return annotation


def _loose_incident() -> tuple[type[Incident], dict[str, list[re.Pattern[str]]]]:
    """A subclass of Incident whose fields have every constraint but `pattern`, and per field
    its patterns as `joined_pattern`s."""
    hints = typing.get_type_hints(Incident, include_extras=True)
    fields: list[Any] = []
    checks: dict[str, list[re.Pattern[str]]] = {}
    for info in msgspec.structs.fields(Incident):
        patterns: list[str] = []
        loose = _without_patterns(hints[info.name], patterns)
        if patterns:
            checks[info.name] = [joined_pattern(p) for p in patterns]
        default = info.default if info.required is False else msgspec.NODEFAULT
        fields.append((info.name, loose, default) if not info.required else (info.name, loose))
    loose_type = msgspec.defstruct(
        "LooseIncident", fields, bases=(Incident,), kw_only=True, forbid_unknown_fields=False
    )
    return loose_type, checks


def joined_pattern(pattern: str) -> re.Pattern[str]:
    """For an `anchored` pattern, a regex that fullmatches the newline-joined texts it accepts.

    msgspec's check of an `anchored` pattern (`re.search`) accepts exactly the texts that
    fullmatch its inner pattern. Joined by newlines, a list of texts without a newline is then
    accepted as a whole exactly when each text is, provided the inner pattern never matches a
    newline: true of every pattern here (character classes without one; tested).
    """
    if not (pattern.startswith(_ANCHOR_HEAD) and pattern.endswith(_ANCHOR_TAIL)):
        raise ValueError(f"not an anchored pattern: {pattern!r}")
    inner = pattern[len(_ANCHOR_HEAD) : -len(_ANCHOR_TAIL)]
    return re.compile(f"(?:{inner})(?:\n(?:{inner}))*")


def all_match(patterns: Sequence[re.Pattern[str]], texts: list[str]) -> bool:
    """Whether every text matches every `joined_pattern`: one regex pass per pattern."""
    if "\n" in "".join(texts):  # a newline would blur the texts' boundaries (never valid)
        return False
    joined = "\n".join(texts)
    return all(p.fullmatch(joined) is not None for p in patterns)


@functools.cache
def _loose_decoder() -> tuple[msgspec.json.Decoder[Any], dict[str, list[re.Pattern[str]]]]:
    """The pattern-free batch decoder and, per field, the patterns its text must match."""
    loose_type, checks = _loose_incident()
    return msgspec.json.Decoder(Annotated[list[loose_type], Meta(min_length=1)]), checks


def decode_batch_fast(body: bytes) -> list[Incident] | None:
    """A batch body decoded as the strict decoder would, or None: then decode it strictly.

    msgspec runs a field's regex on every value (about 4 ms per 1,000 rows); codes repeat, so
    here each distinct text is checked once, all of a field's texts in one regex pass
    (`joined_pattern`), after a decode with every other constraint. Only
    a body that passes every check is returned; anything else (including any error) is None,
    and the strict decoder gives its exact answer, its 400 naming the row and field included.
    """
    try:
        decoder, checks = _loose_decoder()
        rows = decoder.decode(body)
        for name, patterns in checks.items():
            # set() of a C-level map first, then the type test on the few distinct values.
            texts = [v for v in set(map(operator.attrgetter(name), rows)) if isinstance(v, str)]
            if texts and not all_match(patterns, texts):
                return None
        return rows
    except Exception:  # the strict decoder owns every error
        return None
