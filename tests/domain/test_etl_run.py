"""One ETL run's months in memory: incoming rows, staging, validation, the summary's counts."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from crimeflow.domain.enrich import StationIndex
from crimeflow.domain.etl_run import (
    check_months,
    incoming_by_month,
    manifest_key,
    run_summary,
    stage_month,
)
from crimeflow.domain.ingest import as_raw_strings
from crimeflow.domain.validate import ValidationFailed
from crimeflow.standins.generate import add_bad_rows, generate_incidents, to_soda_strings
from crimeflow.stores.files import normalize_stations, read_stations_file


@pytest.fixture(scope="module")
def march() -> pd.DataFrame:
    """200 generated March 2018 incidents as a SODA page gives them (all strings)."""
    return to_soda_strings(generate_incidents("2018-03", "2018-03", rows_per_month=200, seed=4))


@pytest.fixture(scope="module")
def stations() -> StationIndex:
    return StationIndex(normalize_stations(read_stations_file()))


def test_incoming_rows_are_raw_text_and_late_rows_go_to_months_not_pulled():
    pulled = {"2018-03": pd.DataFrame([{"id": "1", "arrest": True}])}
    late = pd.DataFrame(
        [
            {"id": "2", "date": "2018-01-05T10:00:00.000", "arrest": False},
            {"id": "3", "date": "2018-03-05T10:00:00.000", "arrest": True},  # pulled again
        ]
    )
    incoming = incoming_by_month(pulled, late, ["2018-01", "2018-02", "2018-03"])
    assert incoming["2018-03"]["id"].tolist() == ["1"]
    assert incoming["2018-03"].loc[0, "arrest"] == "true"
    assert incoming["2018-01"]["id"].tolist() == ["2"]
    assert set(incoming) == {"2018-01", "2018-03"}  # a month without late rows stays out
    assert incoming_by_month(pulled, None, ["2018-01"]).keys() == {"2018-03"}


def test_stage_month_counts_new_and_updated_ids():
    old = as_raw_strings(pd.DataFrame([{"id": "1", "updated_on": "2018-03-02T00:00:00.000"}]))
    rows = as_raw_strings(
        pd.DataFrame(
            [
                {"id": "1", "updated_on": "2018-03-09T00:00:00.000"},
                {"id": "2", "updated_on": "2018-03-09T00:00:00.000"},
            ]
        )
    )
    staged = stage_month("2018-03", old, rows)
    assert (staged.month, staged.pulled, staged.new_ids, staged.updated_ids) == ("2018-03", 2, 1, 1)
    assert sorted(staged.raw["id"]) == ["1", "2"]
    assert stage_month("2018-03", None, rows).new_ids == 2


def test_check_months_validates_enriches_and_stops_on_too_many_bad_rows(march, stations):
    staged = [stage_month("2018-03", None, as_raw_strings(march))]
    [checked] = check_months(staged, stations, max_bad_share=0.05)
    assert len(checked.validation.clean) == 200 and checked.validation.quarantine.empty
    assert "station_distance_m" in checked.features.columns
    dirty = [stage_month("2018-03", None, as_raw_strings(add_bad_rows(march, 0.2, seed=1)))]
    with pytest.raises(ValidationFailed):
        check_months(dirty, stations, max_bad_share=0.05)


def test_run_summary_counts_each_month_and_flags_changes(march, stations):
    [checked] = check_months([stage_month("2018-03", None, as_raw_strings(march))], stations, 0.05)
    written = {
        "2018-03": {"clean": SimpleNamespace(changed=False), "raw": SimpleNamespace(changed=True)}
    }
    summary = run_summary("r1", "/lake", [checked], written, None, ["2018-03"], {"write": 1.0})
    [counts] = summary.months
    assert (counts.month, counts.pulled, counts.raw, counts.clean, counts.changed) == (
        "2018-03",
        200,
        200,
        200,
        True,
    )
    assert counts.arrest_rate == pytest.approx(checked.validation.clean["arrest"].mean())
    assert summary.late_updates_pulled == 0 and summary.manifest_key == manifest_key("r1")
    assert manifest_key("r1") == "manifests/runs/r1.json"
