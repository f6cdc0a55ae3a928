"""One month of an ETL run: late rows by month, staging, validation, the summary's counts."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace

import pandas as pd
import pytest

from crimeflow.domain.enrich import StationIndex
from crimeflow.domain.etl_run import (
    MonthTooSmall,
    check_staged,
    late_rows_by_month,
    manifest_key,
    month_outcome,
    months_to_run,
    newest_update,
    run_summary,
    stage_month,
    volume_history_months,
    volume_verdict,
)
from crimeflow.domain.ingest import as_raw_strings
from crimeflow.domain.validate import ValidationFailed, ValidationResult
from crimeflow.standins.generate import add_bad_rows, generate_incidents, to_soda_strings
from crimeflow.stores.files import normalize_stations, read_stations_file


@pytest.fixture(scope="module")
def march() -> pd.DataFrame:
    """200 generated March 2018 incidents as a SODA page gives them (all strings)."""
    return to_soda_strings(generate_incidents("2018-03", "2018-03", rows_per_month=200, seed=4))


@pytest.fixture(scope="module")
def stations() -> StationIndex:
    return StationIndex(normalize_stations(read_stations_file()))


def test_late_rows_go_to_ingested_months_not_pulled_and_every_month_runs_once_in_order():
    late = pd.DataFrame(
        [
            {"id": "2", "date": "2018-01-05T10:00:00.000", "arrest": False},
            {"id": "3", "date": "2018-03-05T10:00:00.000", "arrest": True},  # pulled again
            {"id": "4", "date": "2017-12-05T10:00:00.000", "arrest": True},  # not in the lake
        ]
    )
    by_month = late_rows_by_month(late, ["2018-01", "2018-02", "2018-03"], ["2018-03"])
    assert list(by_month) == ["2018-01"]  # a month without late rows stays out
    assert by_month["2018-01"]["id"].tolist() == ["2"]
    assert late_rows_by_month(None, ["2018-01"], ["2018-03"]) == {}
    assert late_rows_by_month(late.head(0), ["2018-01"], ["2018-03"]) == {}
    assert months_to_run(["2018-03", "2018-02"], by_month) == ["2018-01", "2018-02", "2018-03"]


def test_stage_month_stores_raw_text_and_counts_new_and_updated_ids():
    old = as_raw_strings(pd.DataFrame([{"id": "1", "updated_on": "2018-03-02T00:00:00.000"}]))
    rows = pd.DataFrame(
        [
            {"id": "1", "updated_on": "2018-03-09T00:00:00.000", "arrest": True},
            {"id": "2", "updated_on": "2018-03-09T00:00:00.000", "arrest": False},
        ]
    )
    staged = stage_month("2018-03", old, rows)
    assert (staged.month, staged.pulled, staged.new_ids, staged.updated_ids) == ("2018-03", 2, 1, 1)
    assert sorted(staged.raw["id"]) == ["1", "2"]
    assert staged.raw.set_index("id").loc["1", "arrest"] == "true"  # SODA JSON bool as text
    assert stage_month("2018-03", None, rows).new_ids == 2


def test_check_staged_validates_enriches_and_stops_on_too_many_bad_rows(march, stations):
    checked = check_staged(stage_month("2018-03", None, march), stations, max_bad_share=0.05)
    assert len(checked.validation.clean) == 200 and checked.validation.quarantine.empty
    assert "station_distance_m" in checked.features.columns
    dirty = stage_month("2018-03", None, add_bad_rows(march, 0.2, seed=1))
    with pytest.raises(ValidationFailed, match=r"above the 5\.00% threshold"):
        check_staged(dirty, stations, max_bad_share=0.05)


def test_run_summary_counts_each_month_and_flags_changes(march, stations):
    checked = check_staged(stage_month("2018-03", None, march), stations, 0.05)
    written = {"clean": SimpleNamespace(changed=False), "raw": SimpleNamespace(changed=True)}
    outcome = month_outcome(checked, written)
    summary = run_summary("r1", "/lake", [outcome], 0, ["2018-03"], {"write": 1.0})
    [counts] = summary.months
    assert (counts.month, counts.pulled, counts.raw, counts.clean, counts.changed) == (
        "2018-03",
        200,
        200,
        200,
        True,
    )
    assert counts.arrest_rate == pytest.approx(checked.validation.clean["arrest"].mean())
    assert outcome.daily["incidents"].sum() == 200
    assert outcome.newest_update == pd.to_datetime(march["updated_on"]).max()
    assert summary.late_updates_pulled == 0 and summary.manifest_key == manifest_key("r1")
    assert manifest_key("r1") == "manifests/runs/r1.json"


def test_reasons_and_newest_update_add_up_over_months_as_one_combined_result(march, stations):
    months = [
        check_staged(stage_month("2018-03", None, add_bad_rows(march, share, seed=s)), stations, 1)
        for share, s in ((0.05, 1), (0.1, 2))
    ]
    outcomes = [month_outcome(c, {}) for c in months]
    summary = run_summary("r1", "/lake", outcomes, 3, [], {})
    combined = ValidationResult.combine([c.validation for c in months])
    assert summary.quarantine_reasons == combined.reasons
    assert list(summary.quarantine_reasons) == list(combined.reasons)  # same order too
    assert summary.late_updates_pulled == 3
    stamps = [o.newest_update for o in outcomes]
    assert newest_update(outcomes) == max(stamps)
    assert newest_update([]) is None
    assert isinstance(max(stamps), datetime)


# --- the volume rule -----------------------------------------------------------------------------

COUNTS = {"2026-01": 24_812, "2026-02": 25_110, "2026-03": 24_977, "2025-12": 900}


def test_an_empty_past_month_fails_naming_the_month_and_the_trailing_counts():
    with pytest.raises(MonthTooSmall) as caught:
        volume_verdict("2026-05", 0, COUNTS, 0.2, current_month="2026-12")
    message = str(caught.value)
    assert message.startswith("month 2026-05 has 0 rows")
    # The three newest earlier months with data, not the older 900-row one.
    assert "2026-01: 24,812 / 2026-02: 25,110 / 2026-03: 24,977" in message
    assert "median 24,977" in message and "CRIMEFLOW_ETL_MIN_MONTH_SHARE" in message
    assert isinstance(caught.value, ValidationFailed)  # a data-quality failure like bad rows


def test_the_share_is_a_threshold_on_the_median_of_the_trailing_months():
    floor = 0.2 * 24_977
    assert volume_verdict("2026-04", int(floor) + 1, COUNTS, 0.2, "2026-12") == "ingest"
    with pytest.raises(MonthTooSmall, match="month 2026-04 has 4,995 rows"):
        volume_verdict("2026-04", int(floor), COUNTS, 0.2, "2026-12")
    # Months after the one checked do not count: 2026-02 is judged by 2025-12 and 2026-01.
    with pytest.raises(MonthTooSmall, match="2025-12: 900 / 2026-01: 24,812 \\(median 12,856"):
        volume_verdict("2026-02", 100, COUNTS, 0.2, "2026-12")


def test_empty_months_before_the_first_data_are_skipped_and_a_first_month_is_ingested():
    assert volume_verdict("2025-06", 0, COUNTS, 0.2, "2026-12") == "skip"
    assert volume_verdict("2025-06", 0, {"2025-05": 0}, 0.2, "2026-12") == "skip"
    assert volume_verdict("2025-06", 3, {}, 0.2, "2026-12") == "ingest"


def test_the_current_month_and_a_zero_share_are_exempt():
    assert volume_verdict("2026-12", 0, COUNTS, 0.2, current_month="2026-12") == "ingest"
    assert volume_verdict("2026-05", 0, COUNTS, 0.0, current_month="2026-12") == "ingest"


def test_the_history_read_is_the_newest_ingested_months_before_each_pulled_one():
    ingested = [f"2025-{m:02d}" for m in range(1, 13)]
    assert volume_history_months(ingested, ["2026-01"]) == ingested[-6:]
    assert volume_history_months(ingested, ["2025-03"]) == ingested[:2]
    assert volume_history_months([], ["2026-01"]) == []
