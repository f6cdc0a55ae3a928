"""API input schemas: msgspec decoding, the codec behind it, and bad input as field errors.

The codec itself (padding, time zones, the model frame): tests/contract/test_incident.py.
"""

from __future__ import annotations

import re
import typing
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import msgspec
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from api.schemas import (
    MAX_REPORTED_ERRORS,
    Incident,
    InvalidInputError,
    _without_patterns,
    all_match,
    canonical_batch,
    canonicalize_many,
    canonicalize_one,
    decode_batch_fast,
    decode_error,
    joined_pattern,
)
from crimeflow.contract.incident import (
    CanonicalIncident,
    FieldProblem,
    canonical_columns,
    canonicalize,
    chicago_now,
    columns_of,
    incidents_frame,
)
from crimeflow.contract.schema import CHICAGO_BOUNDS, to_canonical
from crimeflow.stores.prediction_log import PredictionRecord, record_to_row
from tests.api.test_app import INCIDENT_BODIES, NEARLY_VALID
from tests.incidents import MINIMAL
from tests.incidents import NUMBERS as FEED_NUMBERS
from tests.incidents import SODA as FEED

SODA_API_FILE = "crimes_2025-10-18_to_2025-11-03_api_jean-carlos-l.csv"

# The feed's record plus fields the model ignores, which the API accepts and drops.
SODA: dict[str, Any] = {
    **FEED,
    "arrest": False,
    "location": {"latitude": "41.733197065", "longitude": "-87.666637175", "human_address": "{}"},
    ":@computed_region_awaf_s7ux": "18",
}
# The same incident with JSON numbers and booleans (an integer x_coordinate, as JSON allows).
NUMBERS: dict[str, Any] = {**SODA, **FEED_NUMBERS, "x_coordinate": 1166222}


def decode(body: Any) -> Incident:
    """An Incident from a JSON-able body, through msgspec's JSON decoder like the API does."""
    return msgspec.json.decode(msgspec.json.encode(body), type=Incident)


def canonical(body: Any) -> CanonicalIncident:
    """Decode and canonicalize one body."""
    return canonicalize(decode(body))


def field_error(body: Any) -> tuple[str | None, str]:
    """(field, message) of the one error a body causes, from decoding or canonicalizing."""
    try:
        canonicalize_one(decode(body))
    except msgspec.ValidationError as error:
        (problem,) = decode_error(error, batch=False).errors
        return problem.field, problem.message
    except InvalidInputError as error:
        (problem,) = error.errors
        return problem.field, problem.message
    raise AssertionError(f"{body} was accepted")


def test_soda_strings_and_json_numbers_give_the_same_incident() -> None:
    assert canonical(SODA) == canonical(NUMBERS)
    row = canonical(SODA)
    assert (row.beat, row.district, row.iucr, row.fbi_code) == ("2221", "022", "0820", "06")
    assert (row.ward, row.community_area, row.id, row.year) == (18, 71, 14019926, 2025)
    assert row.date == datetime(2025, 11, 3) and row.domestic is False
    assert row.updated_on == datetime(2025, 11, 10, 15, 44, 45)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"beat": "12"}, "beat"),
        ({"beat": 12}, "beat"),
        ({"beat": "06141"}, "beat"),
        ({"district": "0061"}, "district"),
        ({"iucr": "04861"}, "iucr"),
        ({"iucr": "04 6"}, "iucr"),
        ({"fbi_code": "8BB"}, "fbi_code"),
        ({"ward": "ward 5"}, "ward"),
        ({"community_area": -3}, "community_area"),
        ({"domestic": "maybe"}, "domestic"),
        ({"primary_type": ""}, "primary_type"),
        ({"primary_type": "   "}, "primary_type"),
        ({"primary_type": "X" * 65}, "primary_type"),
        ({"description": "bad\x00byte"}, "description"),
        ({"latitude": "41.8"}, "longitude"),
        ({"x_coordinate": 1_170_000}, "y_coordinate"),
        ({"latitude": "north", "longitude": "-87.6"}, "latitude"),
        ({"latitude": "NaN", "longitude": "-87.6"}, "latitude"),
        ({"latitude": "38.6", "longitude": "-90.2"}, "latitude"),  # St. Louis
        ({"latitude": 41.8, "longitude": 87.6}, "longitude"),
        ({"x_coordinate": "0", "y_coordinate": "0"}, "x_coordinate"),
        ({"date": "2000-12-31T23:59:59"}, "date"),
        ({"date": "03/01/2018 10:00:00 AM"}, "date"),
        ({"date": "2024-02-30T10:00:00"}, "date"),
        ({"date": 1714573800}, "date"),
        ({"updated_on": "yesterday"}, "updated_on"),
        ({"id": "A123"}, "id"),
    ],
)
def test_invalid_values_name_their_field(change: dict[str, Any], field: str) -> None:
    assert field_error({**MINIMAL, **change})[0] == field


@pytest.mark.parametrize("required", ["date", "iucr", "primary_type"])
def test_required_fields_are_named_when_missing(required: str) -> None:
    body = {k: v for k, v in MINIMAL.items() if k != required}
    found, message = field_error(body)
    assert found == required and "missing" in message


def test_extra_and_bookkeeping_fields_are_ignored_by_the_canonical_model_input() -> None:
    with_extras = {**MINIMAL, "arrest": "true", "location": [1, 2], ":@computed_region_x": {}}
    assert canonical(with_extras) == canonical(MINIMAL)


def test_batch_errors_name_each_bad_row_and_are_capped() -> None:
    bad = {**MINIMAL, "latitude": "99", "longitude": "-87.6"}
    incidents = [
        decode(MINIMAL),
        decode(bad),
        decode(MINIMAL),
        decode({**MINIMAL, "date": "1999-01-01"}),
    ]
    with pytest.raises(InvalidInputError) as caught:
        canonicalize_many(incidents)
    assert [(e.row, e.field) for e in caught.value.errors] == [(1, "latitude"), (3, "date")]
    assert caught.value.detail == "2 of 4 rows are invalid"
    with pytest.raises(InvalidInputError) as caught:
        canonicalize_many([decode(bad)] * (MAX_REPORTED_ERRORS + 10))
    assert len(caught.value.errors) == MAX_REPORTED_ERRORS
    assert caught.value.detail.startswith(f"{MAX_REPORTED_ERRORS + 10} of")


@pytest.mark.parametrize(
    ("raw", "row", "field"),
    [
        (b'[{"date": "2024-05-01", "iucr": "0486", "primary_type": "X"}, {"date": 5}]', 1, "date"),
        (b'[{"date": "2024-05-01", "iucr": "0486"}]', 0, "primary_type"),
        (b'[{"date": "2024-05-01", "iucr": "0486", "primary_type": "X", "beat": true}]', 0, "beat"),
        (b'{"date": "2024-05-01"}', None, None),
        (b"[1, 2]", 0, None),
    ],
)
def test_decode_errors_carry_the_row_and_field(
    raw: bytes, row: int | None, field: str | None
) -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(raw, type=list[Incident])
    (problem,) = decode_error(caught.value, batch=True).errors
    assert (problem.row, problem.field) == (row, field)
    assert " - at " not in problem.message


def test_malformed_json_is_reported_as_such() -> None:
    with pytest.raises(msgspec.DecodeError) as caught:
        msgspec.json.decode(b'{"date": ', type=Incident)
    assert decode_error(caught.value, batch=False).detail == "request body is not valid JSON"


def test_the_canonical_incident_is_what_the_prediction_log_stores() -> None:
    incident = canonical(SODA)
    record = PredictionRecord(
        prediction_id="a" * 32,
        served_at=datetime.now(UTC),
        model_name="m",
        model_version="1",
        request_id=None,
        probability=0.25,
        label=False,
        incident=incident,
    )
    row = record_to_row(record)
    # The typed values go into the row as they are: nothing is written as text and re-parsed.
    assert row["date"] is incident.date and row["date"] == datetime(2025, 11, 3)
    assert row["ward"] == 18 and row["beat"] == "2221"
    assert row["latitude"] == pytest.approx(41.733197065)


@pytest.mark.real_data
def test_real_soda_records_validate_and_frame_like_to_canonical(real_data_dir: Path) -> None:
    raw = pd.read_csv(real_data_dir / SODA_API_FILE, dtype=str, keep_default_na=False, nrows=2000)
    records = [{k: v for k, v in row.items() if v != ""} for row in raw.to_dict("records")]
    low, high = CHICAGO_BOUNDS["latitude"]
    inside = [r for r in records if "latitude" not in r or low <= float(r["latitude"]) <= high]
    assert len(inside) >= 1990  # nearly every real record is valid input as it is
    rows = [canonical(record) for record in inside]
    feed = pd.DataFrame([{k: v for k, v in r.items() if k != "arrest"} for r in inside])
    expected = to_canonical(feed)
    pd.testing.assert_frame_equal(incidents_frame(rows), expected)
    assert np.isnan(incidents_frame(rows)["latitude"]).sum() == expected["latitude"].isna().sum()


# --- the batch codec: column by column, exactly the row codec ----------------------------------


def _incidents(rows: list[Any]) -> list[Incident] | None:
    """The rows through the API's strict decoder, or None when the wire shape rejects them."""
    try:
        return msgspec.json.decode(msgspec.json.encode(rows), type=list[Incident])
    except (msgspec.ValidationError, msgspec.EncodeError):
        return None


# Values the wire shape takes but the codec may refuse (or takes in an unusual form).
CODEC_EDGES: dict[str, Any] = {
    "primary_type": st.sampled_from(["  ", "", " THEFT "]),
    "date": st.sampled_from(
        [
            "2000-12-31T23:59:59",
            "2099-01-01",
            "2024-05-01T14:30:00-05:00",
            " 2024-05-01T14:30:00 ",
            "2024-05-01T14:30:00.250",
            "20240501T143000",
        ]
    ),
    "updated_on": st.sampled_from(["", "  ", "yesterday", "2024-05-01T14:30:00Z"]),
    "domestic": st.sampled_from(["maybe", " TRUE ", "", True]),
    "beat": st.sampled_from([12, 614, "0614", 99999]),
    "district": st.sampled_from([1000, 7, "7"]),
    "latitude": st.sampled_from(["", " ", "north", "NaN", "41.8", " 41.8 ", "1_41.8", None]),
    "longitude": st.sampled_from(["-87.6", "inf", "", None, -87.6]),
    "x_coordinate": st.sampled_from(["1170000", "", None, 1_170_000.0, "1e9"]),
    "y_coordinate": st.sampled_from(["1880000", " ", None, 1_880_000.0]),
}
BATCH_ROWS = st.builds(
    lambda row, edges: {**row, **edges},
    NEARLY_VALID,
    st.fixed_dictionaries({}, optional=CODEC_EDGES),
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(NEARLY_VALID | BATCH_ROWS | BATCH_ROWS, min_size=1, max_size=8))
def test_the_column_codec_accepts_and_builds_exactly_what_the_row_codec_does(
    rows: list[Any],
) -> None:
    incidents = _incidents(rows)
    assume(incidents is not None)
    assert incidents is not None
    now = chicago_now()
    try:
        expected = columns_of(canonicalize_many(incidents, now))
    except InvalidInputError as error:
        event("invalid batch")
        with pytest.raises(FieldProblem):
            canonical_columns(incidents, now)
        with pytest.raises(InvalidInputError) as batch_error:
            canonical_batch(incidents)
        assert batch_error.value.errors == error.errors
        assert batch_error.value.detail == error.detail
        return
    event("valid batch")
    got = canonical_columns(incidents, now)
    assert got.values == expected.values
    # Equal and of the same type: 1166222.0 is not stored as 1166222, "0614" not as 614.
    for name, values in got.values.items():
        assert [type(v) for v in values] == [type(v) for v in expected.values[name]], name


def test_a_batch_names_each_bad_row_and_its_first_bad_field() -> None:
    good = {**MINIMAL, "latitude": "41.8", "longitude": "-87.6", "beat": "614"}
    rows = [good] * 300
    rows[7] = {**good, "primary_type": "  ", "latitude": "north"}  # primary_type comes first
    rows[150] = {**good, "longitude": None}
    rows[299] = {**good, "date": "2000-12-31T23:59:59"}
    incidents = _incidents(rows)
    assert incidents is not None
    with pytest.raises(InvalidInputError) as caught:
        canonical_batch(incidents)
    assert [(e.row, e.field) for e in caught.value.errors] == [
        (7, "primary_type"),
        (150, "longitude"),
        (299, "date"),
    ]
    assert caught.value.detail == "3 of 300 rows are invalid"
    columns = canonical_batch(incidents[:7])
    assert columns.values["beat"] == ["0614"] * 7 and len(columns) == 7


STRICT_BATCH = msgspec.json.Decoder(Annotated[list[Incident], msgspec.Meta(min_length=1)])


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(NEARLY_VALID | BATCH_ROWS | INCIDENT_BODIES, min_size=0, max_size=6))
def test_the_fast_batch_decoder_answers_exactly_what_the_strict_one_does(rows: list[Any]) -> None:
    body = msgspec.json.encode(rows)
    fast = decode_batch_fast(body)
    try:
        strict = STRICT_BATCH.decode(body)
    except msgspec.ValidationError:
        event("strict rejects")
        assert fast is None  # the strict decoder then gives its own 400
        return
    event("strict accepts")
    assert fast is not None  # a valid body never pays for the strict decoding
    assert [msgspec.structs.asdict(r) for r in fast] == [msgspec.structs.asdict(r) for r in strict]
    assert all(isinstance(r, Incident) for r in fast)


def test_the_fast_batch_decoder_leaves_every_bad_body_to_the_strict_one() -> None:
    good = {**MINIMAL, "beat": "0614", "description": "OK"}
    for bad in (
        {**good, "beat": "12"},  # a pattern
        {**good, "description": "tab\there"},  # the printable-text pattern
        {**good, "district": 1000},  # a range
        {**good, "beat": "0614\\n"},  # not a newline: a backslash and an n
    ):
        assert decode_batch_fast(msgspec.json.encode([good, bad])) is None, bad
    assert decode_batch_fast(b'[{"date": "2024-05-01T14:30:00", "iucr": "\xff"}]') is None
    assert decode_batch_fast(b"[]") is None
    assert decode_batch_fast(msgspec.json.encode([good])) is not None


def _wire_patterns() -> set[str]:
    """Every `pattern` constraint of the Incident wire schema."""
    found: list[str] = []
    for hint in typing.get_type_hints(Incident, include_extras=True).values():
        _without_patterns(hint, found)
    return set(found)


TEXT_PARTS = st.sampled_from(["0", "12", "614", "08B", "A", "x y", "", "\n", "\t", "\x7f", "é"])


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(st.lists(TEXT_PARTS, max_size=4).map("".join), min_size=1, max_size=5))
def test_one_joined_regex_pass_accepts_what_checking_each_text_accepts(texts: list[str]) -> None:
    patterns = _wire_patterns()
    assert len(patterns) == 7  # the six code shapes and printable text
    for pattern in patterns:
        each = all(re.search(pattern, text) for text in texts)  # what msgspec does
        assert all_match([joined_pattern(pattern)], texts) == each, (pattern, texts)
