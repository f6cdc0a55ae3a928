"""Tests for validation: every rule, reasons, upsert of duplicate ids, window, share gate."""

from __future__ import annotations

import gc
import warnings
import weakref
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pandera.pandas as pa
import pytest

from crimeflow.contract.schema import SODA_COLUMNS, to_canonical
from crimeflow.domain import validate as validate_module
from crimeflow.domain.validate import (
    REASON_COLUMN,
    ValidationFailed,
    ValidationResult,
    check_bad_share,
    incident_schema,
    validate_incidents,
)

REAL_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
JANUARY = (datetime(2024, 1, 1), datetime(2024, 2, 1))


def good_row(row_id: int, **changes: Any) -> dict[str, Any]:
    """One valid incident as the SODA API sends it (strings), with `changes` applied."""
    row: dict[str, Any] = {
        "id": str(row_id),
        "case_number": f"JH{row_id:06d}",
        "date": "2024-01-15T13:45:00.000",
        "block": "012XX S STATE ST",
        "iucr": "0486",
        "primary_type": "BATTERY",
        "description": "DOMESTIC BATTERY SIMPLE",
        "location_description": "APARTMENT",
        "arrest": "false",
        "domestic": "true",
        "beat": "0131",
        "district": "001",
        "ward": "3",
        "community_area": "33",
        "fbi_code": "08B",
        "x_coordinate": "1176569",
        "y_coordinate": "1891771",
        "year": "2024",
        "updated_on": "2024-01-22T15:40:00.000",
        "latitude": "41.858",
        "longitude": "-87.627",
    }
    row.update(changes)
    return row


def raw_frame(*rows: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(SODA_COLUMNS))


def only_reason(result: ValidationResult) -> str:
    assert len(result.quarantine) == 1, result.quarantine
    return str(result.quarantine.loc[0, REASON_COLUMN])


def test_clean_rows_pass_untouched_with_canonical_dtypes():
    result = validate_incidents(raw_frame(good_row(1), good_row(2)), JANUARY)
    assert len(result.clean) == 2 and len(result.quarantine) == 0
    assert result.reasons == {} and result.bad_share == 0.0
    assert result.clean["id"].tolist() == [1, 2]
    assert str(result.clean["arrest"].dtype) == "boolean"
    assert list(result.quarantine.columns) == [*SODA_COLUMNS, REASON_COLUMN]


def test_validated_frames_are_freed_without_waiting_for_the_cyclic_gc():
    result = validate_incidents(raw_frame(good_row(1), good_row(2, district="999")), JANUARY)
    frames = [weakref.ref(f) for f in (result.clean, result.quarantine)]
    gc.disable()  # a reference cycle would keep them until a full collection
    try:
        del result
        assert [f() for f in frames] == [None, None]
    finally:
        gc.enable()


@pytest.mark.parametrize(
    "column", ["id", "date", "primary_type", "arrest", "domestic", "iucr", "beat", "district"]
)
def test_each_required_field_missing_is_quarantined(column):
    bad = good_row(2, **{column: None})
    result = validate_incidents(raw_frame(good_row(1), bad, good_row(3)), JANUARY)
    assert only_reason(result) == f"{column}: missing"
    assert result.reasons == {f"{column}: missing": 1}
    assert result.clean["id"].tolist() == [1, 3]


def test_blank_required_string_counts_as_missing():
    result = validate_incidents(raw_frame(good_row(1), good_row(2, iucr="  ")), JANUARY)
    assert only_reason(result) == "iucr: missing"


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("arrest", "maybe", "arrest: unparseable value ('maybe')"),
        ("domestic", "2", "domestic: unparseable value ('2')"),
        ("date", "yesterday", "date: unparseable value ('yesterday')"),
        ("id", "12a", "id: unparseable value ('12a')"),
        ("latitude", "north", "latitude: unparseable value ('north')"),
        ("ward", "3.5", "ward: unparseable value ('3.5')"),
    ],
)
def test_unparseable_values_are_named_with_the_raw_value(column, value, reason):
    result = validate_incidents(raw_frame(good_row(1), good_row(2, **{column: value})), JANUARY)
    # Not also reported as "missing": one reason per column.
    assert only_reason(result) == reason
    assert result.clean["id"].tolist() == [1]


def test_boolean_spellings_are_accepted():
    rows = [good_row(i, arrest=v) for i, v in enumerate(["True", "FALSE", "t", "0"], start=1)]
    result = validate_incidents(raw_frame(*rows), JANUARY)
    assert result.clean["arrest"].tolist() == [True, False, True, False]


@pytest.mark.parametrize("district", ["099", "013", "HQ"])
def test_unknown_district_is_quarantined(district):
    result = validate_incidents(raw_frame(good_row(1), good_row(2, district=district)), JANUARY)
    assert only_reason(result) == f"district: not a known district code ('{district}')"


def test_unpadded_district_is_padded_and_accepted():
    result = validate_incidents(raw_frame(good_row(1, district="6"), good_row(2)), JANUARY)
    assert result.clean["district"].tolist() == ["006", "001"]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("latitude", "40.1"),
        ("longitude", "-88.5"),
        ("x_coordinate", "0"),
        ("y_coordinate", "2100000"),
    ],
)
def test_coordinates_outside_chicago_are_quarantined(column, value):
    result = validate_incidents(raw_frame(good_row(1), good_row(2, **{column: value})), JANUARY)
    assert only_reason(result) == f"{column}: outside Chicago ({float(value)})"


def test_missing_coordinates_are_allowed():
    no_position = {c: None for c in ("x_coordinate", "y_coordinate", "latitude", "longitude")}
    result = validate_incidents(raw_frame(good_row(1, **no_position)), JANUARY)
    assert len(result.clean) == 1 and len(result.quarantine) == 0


def test_every_reason_of_a_row_is_listed_in_column_order():
    bad = good_row(2, district="099", latitude="40.1", arrest=None, date="2023-12-31T10:00:00")
    result = validate_incidents(raw_frame(good_row(1), bad), JANUARY)
    assert only_reason(result) == (
        "date: outside window [2024-01-01 00:00:00, 2024-02-01 00:00:00) (2023-12-31 10:00:00); "
        "arrest: missing; district: not a known district code ('099'); "
        "latitude: outside Chicago (40.1)"
    )
    assert result.quarantine.loc[0, "id"] == 2  # values kept as far as parseable
    assert result.quarantine.loc[0, "district"] == "099"
    assert sum(result.reasons.values()) == 4


def test_window_start_is_inclusive_and_end_exclusive():
    rows = [
        good_row(1, date="2023-12-31T23:59:59.999"),
        good_row(2, date="2024-01-01T00:00:00.000"),
        good_row(3, date="2024-01-31T23:59:59.999"),
        good_row(4, date="2024-02-01T00:00:00.000"),
    ]
    result = validate_incidents(raw_frame(*rows), JANUARY)
    assert result.clean["id"].tolist() == [2, 3]
    assert result.quarantine["id"].tolist() == [1, 4]
    assert result.quarantine[REASON_COLUMN].str.startswith("date: outside window").all()


def test_outputs_accept_new_columns_without_warnings():
    result = validate_incidents(raw_frame(good_row(1), good_row(2, district="099")), JANUARY)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result.clean["extra"] = 1
        result.quarantine["extra"] = 1
    assert result.clean.index.tolist() == [0] and result.quarantine.index.tolist() == [0]


def test_no_window_means_no_date_range_rule():
    result = validate_incidents(raw_frame(good_row(1, date="2001-01-01T00:00:00")), None)
    assert len(result.clean) == 1


def test_timezone_aware_window_is_read_in_chicago_time():
    # 2024-01-01 06:00 UTC is midnight in Chicago (CST, UTC-6).
    utc = ZoneInfo("UTC")
    window = (datetime(2024, 1, 1, 6, tzinfo=utc), datetime(2024, 2, 1, 6, tzinfo=utc))
    rows = [good_row(1, date="2024-01-01T00:00:00"), good_row(2, date="2023-12-31T23:00:00")]
    result = validate_incidents(raw_frame(*rows), window)
    assert result.clean["id"].tolist() == [1]


def test_duplicate_ids_keep_the_latest_update_instead_of_quarantining():
    rows = [
        good_row(7, arrest="false", updated_on="2024-01-20T00:00:00"),
        good_row(8),
        good_row(7, arrest="true", updated_on="2024-03-02T00:00:00"),  # arrest recorded later
        good_row(7, arrest="false", updated_on="2024-02-01T00:00:00"),
        good_row(9, arrest="true", updated_on=None),
        good_row(9, arrest="false", updated_on="2024-01-02T00:00:00"),
        good_row(10, case_number="first"),
        good_row(10, case_number="second"),  # same updated_on: the later row wins
    ]
    result = validate_incidents(raw_frame(*rows), JANUARY)
    assert len(result.quarantine) == 0
    assert result.superseded == 4
    clean = result.clean.set_index("id")
    assert sorted(clean.index) == [7, 8, 9, 10]
    assert bool(clean.loc[7, "arrest"]) is True
    assert bool(clean.loc[9, "arrest"]) is False  # an undated version loses
    assert clean.loc[10, "case_number"] == "second"


def test_a_bad_newest_version_is_quarantined_not_replaced_by_a_stale_one():
    rows = [
        good_row(7, updated_on="2024-01-20T00:00:00"),
        good_row(7, district="099", updated_on="2024-01-25T00:00:00"),
    ]
    result = validate_incidents(raw_frame(*rows), JANUARY)
    assert len(result.clean) == 0 and result.superseded == 1
    assert only_reason(result).startswith("district:")


def test_canonical_and_export_inputs_give_the_same_result():
    rows = [good_row(1), good_row(2, district="099"), good_row(3, latitude=None)]
    from_strings = validate_incidents(raw_frame(*rows), JANUARY)
    from_canonical = validate_incidents(to_canonical(raw_frame(*rows)), JANUARY)
    export = raw_frame(*rows).rename(columns=lambda c: c.replace("_", " ").title())
    export["Date"] = "01/15/2024 01:45:00 PM"
    from_export = validate_incidents(export, JANUARY)
    for other in (from_canonical, from_export):
        pd.testing.assert_frame_equal(other.clean, from_strings.clean)
        pd.testing.assert_frame_equal(other.quarantine, from_strings.quarantine)


def test_vectorized_rules_agree_with_the_pandera_schema():
    rows = [
        good_row(1),
        good_row(2, district="099"),
        good_row(3, latitude="40.1", x_coordinate="5"),
        good_row(4, date="2024-02-01T00:00:00"),
        good_row(5, iucr=None, beat=None),
        good_row(6, arrest=None),
        good_row(7, longitude="-87.0"),
        good_row(8, y_coordinate="1700000", domestic=None),
        good_row(9, primary_type=None, district=None),
    ]
    canonical = to_canonical(raw_frame(*rows))
    with pytest.raises(pa.errors.SchemaErrors) as caught:
        incident_schema(JANUARY).validate(canonical, lazy=True)
    cases = caught.value.failure_cases.dropna(subset=["index"])
    from_pandera = {
        (int(canonical.loc[int(i), "id"]), c)
        for i, c in zip(cases["index"], cases["column"], strict=True)
    }

    result = validate_incidents(canonical, JANUARY)
    ours = {
        (int(row_id), part.split(":")[0])
        for row_id, text in zip(
            result.quarantine["id"], result.quarantine[REASON_COLUMN], strict=True
        )
        for part in text.split("; ")
    }
    assert ours == from_pandera
    assert len(ours) == 12


def test_pandera_certifies_the_clean_rows(monkeypatch):
    # If the vectorized rules missed a rule, the contract check must fail loudly.
    monkeypatch.setattr(validate_module, "_row_failures", lambda frame, window: [])
    with pytest.raises(pa.errors.SchemaErrors):
        validate_incidents(raw_frame(good_row(1), good_row(2, district="099")), JANUARY)


def test_contract_check_samples_large_batches(monkeypatch):
    seen: list[dict[str, Any]] = []
    original = pa.DataFrameSchema.validate

    def spy(self: pa.DataFrameSchema, frame: pd.DataFrame, **kwargs: Any) -> pd.DataFrame:
        seen.append(kwargs)
        return original(self, frame, **kwargs)

    monkeypatch.setattr(pa.DataFrameSchema, "validate", spy)
    rows = [good_row(i) for i in range(1, 21)]
    assert len(validate_incidents(raw_frame(*rows), JANUARY, contract_rows=5).clean) == 20
    assert len(validate_incidents(raw_frame(*rows), JANUARY, contract_rows=50).clean) == 20
    assert seen[0].get("sample") == 5 and seen[1].get("sample") is None


def test_empty_input():
    result = validate_incidents(raw_frame(), JANUARY)
    assert len(result.clean) == 0 and len(result.quarantine) == 0 and result.bad_share == 0.0
    check_bad_share(result, 0.0)


def test_combine_sums_batches():
    first = validate_incidents(raw_frame(good_row(1), good_row(2, district="099")), JANUARY)
    second = validate_incidents(raw_frame(good_row(3), good_row(3), good_row(4, iucr=None)), None)
    both = ValidationResult.combine([first, second])
    assert both.clean["id"].tolist() == [1, 3]
    assert both.quarantine["id"].tolist() == [2, 4]
    assert both.reasons == {"district: not a known district code": 1, "iucr: missing": 1}
    assert both.superseded == 1 and both.bad_share == 0.5
    assert len(ValidationResult.combine([]).clean) == 0


def _mixed_result() -> ValidationResult:
    rows = [good_row(i) for i in range(1, 17)]
    rows += [good_row(i, district="099") for i in range(101, 104)]
    rows += [good_row(200, latitude="40.0")]
    return validate_incidents(raw_frame(*rows), JANUARY)


def test_bad_share_at_or_below_threshold_passes():
    result = _mixed_result()
    assert result.bad_share == pytest.approx(0.2)
    check_bad_share(result, 0.2)
    check_bad_share(result, 0.5)


def test_bad_share_above_threshold_names_share_threshold_reasons_and_ids():
    with pytest.raises(ValidationFailed) as caught:
        check_bad_share(_mixed_result(), 0.05)
    message = str(caught.value)
    assert "20.00% of 20 rows" in message
    assert "5.00% threshold" in message
    assert "district: not a known district code (3 rows, e.g. ids 101, 102, 103)" in message
    assert "latitude: outside Chicago (1 rows, e.g. ids 200)" in message
    # Most frequent reason first.
    assert message.index("district:") < message.index("latitude:")


@pytest.mark.real_data
def test_real_month_is_almost_entirely_clean():
    path = REAL_DATA / "crimes_2025-10-18_to_2025-11-03_api_jean-carlos-l.csv"
    if not path.is_file():
        pytest.skip(f"real data not available at {REAL_DATA}")
    raw = pd.read_csv(path, dtype=str)
    window = (datetime(2025, 10, 19), datetime(2025, 11, 3))
    result = validate_incidents(raw, window)
    # The pull holds a partial day on each side of the window and nothing else wrong.
    assert set(result.reasons) == {
        "date: outside window [2025-10-19 00:00:00, 2025-11-03 00:00:00)"
    }
    assert result.reasons[next(iter(result.reasons))] == len(result.quarantine)
    assert len(result.clean) > 9500
