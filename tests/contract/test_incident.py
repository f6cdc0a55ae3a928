"""The incident codec: raw values -> CanonicalIncident -> model frame; frames -> incidents."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
import pandas as pd
import pytest

from crimeflow.contract.incident import (
    INCIDENT_FIELDS,
    CanonicalIncident,
    FieldProblem,
    canonicalize,
    chicago_now,
    incidents_frame,
    incidents_from_frame,
    parse_local_timestamp,
)
from crimeflow.contract.schema import LABEL, to_canonical
from crimeflow.domain.features import is_canonical
from tests.incidents import MINIMAL, NUMBERS, SODA


class Raw(msgspec.Struct, kw_only=True):
    """A raw incident without the HTTP layer's shape checks (any field may be missing)."""

    date: Any = None
    iucr: Any = None
    primary_type: Any = None
    description: Any = None
    location_description: Any = None
    domestic: Any = None
    beat: Any = None
    district: Any = None
    ward: Any = None
    community_area: Any = None
    fbi_code: Any = None
    x_coordinate: Any = None
    y_coordinate: Any = None
    latitude: Any = None
    longitude: Any = None
    id: Any = None
    case_number: Any = None
    block: Any = None
    year: Any = None
    updated_on: Any = None


def canonical(body: dict[str, Any]) -> CanonicalIncident:
    """Canonicalize one body of raw values."""
    return canonicalize(Raw(**body))


def problem(body: dict[str, Any]) -> FieldProblem:
    """The FieldProblem a body causes."""
    with pytest.raises(FieldProblem) as caught:
        canonical(body)
    return caught.value


def test_feed_strings_and_numbers_give_the_same_typed_incident() -> None:
    assert canonical(SODA) == canonical(NUMBERS)
    row = canonical(SODA)
    assert (row.beat, row.district, row.iucr, row.fbi_code) == ("2221", "022", "0820", "06")
    assert (row.ward, row.community_area, row.id, row.year) == (18, 71, 14019926, 2025)
    assert row.date == datetime(2025, 11, 3) and row.domestic is False
    assert row.updated_on == datetime(2025, 11, 10, 15, 44, 45)
    assert row.latitude == 41.733197065 and type(row.latitude) is float


def test_codes_given_as_numbers_are_zero_padded_like_the_feed() -> None:
    row = canonical({**MINIMAL, "beat": 614, "district": 6, "iucr": 486, "fbi_code": 8})
    assert (row.beat, row.district, row.iucr, row.fbi_code) == ("0614", "006", "0486", "08")
    # Text of the right shape is padded too; letters in a code are kept as they are.
    row = canonical({**MINIMAL, "beat": "614", "district": "6", "iucr": "031A"})
    assert (row.beat, row.district, row.iucr) == ("0614", "006", "031A")


def test_unknown_categories_of_the_right_shape_are_valid() -> None:
    row = canonical(
        {
            **MINIMAL,
            "district": "099",
            "iucr": "9999",
            "primary_type": "SOMETHING NEW",
            "beat": "9999",
            "fbi_code": "99Z",
            "location_description": "A BRAND NEW PLACE",
        }
    )
    assert (row.district, row.iucr, row.primary_type, row.fbi_code) == (
        "099",
        "9999",
        "SOMETHING NEW",
        "99Z",
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"beat": 12}, "beat"),
        ({"domestic": "maybe"}, "domestic"),
        ({"primary_type": "   "}, "primary_type"),
        ({"latitude": "41.8"}, "longitude"),
        ({"x_coordinate": 1_170_000}, "y_coordinate"),
        ({"latitude": "north", "longitude": "-87.6"}, "latitude"),
        ({"latitude": "NaN", "longitude": "-87.6"}, "latitude"),
        ({"latitude": 41.8, "longitude": 87.6}, "longitude"),
        ({"date": "2000-12-31T23:59:59"}, "date"),
        ({"date": "03/01/2018 10:00:00 AM"}, "date"),
        ({"updated_on": "yesterday"}, "updated_on"),
        # Every timestamp has the same plausible range (pandas cannot even hold year 1).
        ({"updated_on": "0001-01-01T00:00:00"}, "updated_on"),
        ({"updated_on": "2000-12-31T23:59:59"}, "updated_on"),
        ({"updated_on": "9999-12-31T23:59:59"}, "updated_on"),
        ({"updated_on": "2262-04-12T00:00:00Z"}, "updated_on"),
    ],
)
def test_a_field_problem_names_the_field_and_says_what_is_wrong(
    change: dict[str, Any], field: str
) -> None:
    found = problem({**MINIMAL, **change})
    assert found.field == field and found.message
    assert isinstance(found, ValueError) and str(found).startswith(f"{field}: ")


def test_dates_with_an_offset_become_chicago_local_time() -> None:
    # July: CDT (UTC-5); January: CST (UTC-6). Without an offset the time is taken as it is.
    assert canonical({**MINIMAL, "date": "2025-07-01T17:00:00Z"}).date == datetime(2025, 7, 1, 12)
    winter = canonical({**MINIMAL, "date": "2025-01-15T18:00:00+00:00"}).date
    assert winter == datetime(2025, 1, 15, 12)
    assert canonical({**MINIMAL, "date": "2025-01-15T18:00:00"}).date == datetime(2025, 1, 15, 18)
    assert canonical({**MINIMAL, "date": "2025-01-15"}).date == datetime(2025, 1, 15)
    assert parse_local_timestamp("updated_on", " 2025-07-01T17:00:00-05:00 ") == datetime(
        2025, 7, 1, 17
    )


def test_dates_up_to_a_day_ahead_are_accepted_but_not_later() -> None:
    soon = (chicago_now() + timedelta(hours=20)).isoformat(timespec="seconds")
    assert canonical({**MINIMAL, "date": soon}).date == datetime.fromisoformat(soon)
    later = (chicago_now() + timedelta(days=2)).isoformat(timespec="seconds")
    assert problem({**MINIMAL, "date": later}).field == "date"
    # `now` is the caller's clock: a batch checks every row against the same instant.
    assert canonical({**MINIMAL, "date": "2024-05-01"}).date == datetime(2024, 5, 1)
    with pytest.raises(FieldProblem):
        canonicalize(Raw(**MINIMAL), now=datetime(2024, 4, 1))


def test_a_body_without_any_position_is_valid_and_blank_text_is_missing() -> None:
    row = canonical({**MINIMAL, "latitude": " ", "longitude": "", "description": "  "})
    assert row.latitude is None and row.longitude is None and row.description is None
    assert row.x_coordinate is None and row.y_coordinate is None


def test_the_direct_frame_equals_to_canonical_of_the_same_records() -> None:
    bodies = [
        SODA,
        NUMBERS,
        MINIMAL,
        {**MINIMAL, "x_coordinate": "1170000", "y_coordinate": "1900000"},
    ]
    frame = incidents_frame([canonical(body) for body in bodies])
    feed_text = [SODA, SODA, *bodies[2:]]
    pd.testing.assert_frame_equal(frame, to_canonical(pd.DataFrame(feed_text)))
    assert is_canonical(frame)


def test_empty_and_single_row_frames_keep_the_canonical_dtypes() -> None:
    one = incidents_frame([canonical(MINIMAL)])
    none = incidents_frame([])
    assert len(one) == 1 and len(none) == 0
    assert (
        list(one.dtypes) == list(none.dtypes) == list(to_canonical(pd.DataFrame([MINIMAL])).dtypes)
    )
    assert one.loc[0, "year"] == 2024  # derived from the date, as to_canonical does


def test_a_canonical_incident_crosses_json_unchanged() -> None:
    # The JSON edge (exports, replies, tests): msgspec writes the typed values, ISO timestamps.
    row = canonical(SODA)
    text = msgspec.json.encode(row)
    assert b'"date":"2025-11-03T00:00:00"' in text and b'"beat":"2221"' in text
    assert msgspec.json.decode(text, type=CanonicalIncident) == row


def test_frames_in_either_header_style_become_the_incidents_the_codec_makes() -> None:
    feed = pd.DataFrame([SODA, MINIMAL])
    # A frame without `year` gets it from `date` (to_canonical's rule).
    expected = [canonical(SODA), canonical({**MINIMAL, "year": 2024})]
    assert incidents_from_frame(feed) == expected
    export = feed.rename(columns={"case_number": "Case Number", "date": "Date"})
    export["Date"] = ["11/03/2025 12:00:00 AM", "05/01/2024 02:30:00 PM"]
    assert incidents_from_frame(export) == expected
    # Plain Python values only: no NaN, NA or Timestamp reaches a record.
    values = [getattr(i, n) for i in incidents_from_frame(feed) for n in INCIDENT_FIELDS]
    assert {type(v) for v in values} <= {str, int, float, bool, datetime, type(None)}
    assert incidents_from_frame(feed.iloc[:0]) == []


def test_frame_incidents_round_trip_through_the_model_frame() -> None:
    from crimeflow.standins.generate import generate_incidents

    generated = generate_incidents("2024-05", "2024-05", rows_per_month=300, seed=5)
    incidents = incidents_from_frame(generated)
    expected = generated.assign(**{LABEL: pd.array([pd.NA] * len(generated), dtype="boolean")})
    pd.testing.assert_frame_equal(incidents_frame(incidents), expected)


def test_a_frame_row_without_a_required_field_is_named() -> None:
    rows = pd.DataFrame([MINIMAL, {**MINIMAL, "primary_type": " "}])
    with pytest.raises(ValueError, match=r"row 1: date, iucr, primary_type are required"):
        incidents_from_frame(rows)
