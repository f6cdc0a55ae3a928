"""Pure ETL bookkeeping: month planning, late-update windows, raw upserts, state."""

from datetime import date, datetime

import pandas as pd
import pytest

from crimeflow.domain.ingest import (
    EtlState,
    as_raw_strings,
    late_update_window,
    max_updated_on,
    plan_months,
    rows_by_month,
    upsert_counts,
    upsert_raw,
)


def raw(rows):
    return as_raw_strings(pd.DataFrame(rows))


def test_plan_explicit_month_backfill_and_next_month():
    today = date(2026, 11, 23)
    assert plan_months("2018-03", [], today, 12) == ["2018-03"]
    backfill = plan_months(None, [], today, 12)
    assert backfill[0] == "2025-11" and backfill[-1] == "2026-10" and len(backfill) == 12
    assert plan_months(None, ["2026-09"], today, 12) == ["2026-10"]


def test_plan_rejects_malformed_month():
    with pytest.raises(ValueError, match="YYYY-MM"):
        plan_months("2018-13", [], date(2026, 1, 1), 12)


def test_late_update_window_covers_only_months_not_pulled_in_full():
    assert late_update_window([], ["2018-03"]) is None
    assert late_update_window(["2018-03"], ["2018-03"]) is None
    start, end = late_update_window(["2018-01", "2018-02", "2018-03"], ["2018-03"])
    assert (start, end) == (datetime(2018, 1, 1), datetime(2018, 3, 1))


def test_as_raw_strings_keeps_codes_and_lowercases_json_booleans():
    frame = raw([{"id": "1", "beat": "0614", "arrest": True, "domestic": False}])
    assert frame.loc[0, "beat"] == "0614"
    assert frame.loc[0, "arrest"] == "true"
    assert frame.loc[0, "domestic"] == "false"
    assert pd.isna(frame.loc[0, "latitude"])  # missing contract columns are added, empty


def test_as_raw_strings_lowercases_numpy_booleans_from_a_json_page():
    page = pd.DataFrame.from_records([{"id": "1", "arrest": True}, {"id": "2", "arrest": False}])
    assert page["arrest"].dtype == bool  # what pandas makes of a JSON page's booleans
    assert as_raw_strings(page)["arrest"].tolist() == ["true", "false"]


def test_upsert_latest_updated_on_wins_and_ids_stay_unique():
    existing = raw(
        [
            {"id": "1", "arrest": "false", "updated_on": "2018-03-02T00:00:00.000"},
            {"id": "2", "arrest": "false", "updated_on": "2018-03-05T00:00:00.000"},
        ]
    )
    incoming = raw(
        [
            {"id": "1", "arrest": "true", "updated_on": "2018-04-20T00:00:00.000"},  # late arrest
            {"id": "2", "arrest": "true", "updated_on": "2018-03-01T00:00:00.000"},  # stale copy
            {"id": "3", "arrest": "false", "updated_on": "2018-03-09T00:00:00.000"},
        ]
    )
    assert upsert_counts(existing, upsert_raw(existing, incoming)) == (1, 1)  # id 3; id 1
    merged = upsert_raw(existing, incoming).set_index("id")
    assert list(merged.index) == ["1", "2", "3"]
    assert merged.loc["1", "arrest"] == "true"
    assert merged.loc["2", "arrest"] == "false"


def test_upsert_is_idempotent():
    rows = raw([{"id": str(i), "updated_on": "2018-03-02T00:00:00.000"} for i in range(5)])
    once = upsert_raw(None, rows)
    pd.testing.assert_frame_equal(upsert_raw(once, rows), once)


def test_rows_by_month_keeps_only_requested_months():
    frame = raw(
        [
            {"id": "1", "date": "2018-01-05T00:00:00.000"},
            {"id": "2", "date": "2018-02-05T00:00:00.000"},
            {"id": "3", "date": "2017-12-05T00:00:00.000"},
        ]
    )
    split = rows_by_month(frame, ["2018-01", "2018-02"])
    assert {m: f["id"].tolist() for m, f in split.items()} == {"2018-01": ["1"], "2018-02": ["2"]}


def test_state_advances_watermark_and_months():
    state = EtlState(watermark="2018-05-01T00:00:00", months=["2018-01"])
    frame = raw([{"id": "1", "updated_on": "2018-06-01T10:00:00.000"}])
    new = state.advanced("run-1", ["2018-02"], max_updated_on([frame]), datetime(2026, 1, 1))
    assert new.watermark == "2018-06-01T10:00:00"
    assert new.months == ["2018-01", "2018-02"]
    assert EtlState.from_json(new.to_json()) == new
    older = new.advanced("run-2", [], datetime(2018, 1, 1), datetime(2026, 1, 2))
    assert older.watermark == "2018-06-01T10:00:00"  # never moves backwards
