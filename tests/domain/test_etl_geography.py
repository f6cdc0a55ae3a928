"""A month's geography in the ETL: areas filled before validation, counted over clean rows."""

from __future__ import annotations

import pandas as pd
import pytest

from crimeflow.domain.enrich import StationIndex, enrich
from crimeflow.domain.etl_run import check_staged, month_counts, stage_month
from crimeflow.domain.etl_summary import EtlRunSummary, summary_markdown
from crimeflow.domain.geography import LAYERS, boundaries_from_geojson
from crimeflow.standins.boundaries import generated_boundaries
from crimeflow.standins.generate import generate_incidents, to_soda_strings
from crimeflow.stores.files import normalize_stations, read_stations_file


@pytest.fixture(scope="module")
def boundaries() -> dict:
    """The stand-in's generated layers (they cover the generator's points)."""
    return {n: boundaries_from_geojson(g, LAYERS[n]) for n, g in generated_boundaries().items()}


@pytest.fixture(scope="module")
def march() -> pd.DataFrame:
    """300 generated March incidents as SODA text; rows 0-4 lose their district, 5-9 their
    community area, and row 10 loses its district and its point (nothing to fill it from)."""
    rows = to_soda_strings(generate_incidents("2018-03", "2018-03", rows_per_month=300, seed=9))
    rows = rows[rows["x_coordinate"].notna()].reset_index(drop=True)
    rows.loc[0:4, "district"] = None
    rows.loc[5:9, "community_area"] = None
    rows.loc[10, ["district", "x_coordinate", "y_coordinate", "latitude", "longitude"]] = None
    return rows


def test_missing_districts_are_filled_not_quarantined(
    march: pd.DataFrame, boundaries: dict
) -> None:
    """Filled rows pass validation; the one without a point is quarantined; raw stays as sent."""
    stations = StationIndex(normalize_stations(read_stations_file()))
    staged = stage_month("2018-03", None, march)
    checked = check_staged(staged, stations, 0.05, boundaries)
    clean = checked.validation.clean
    assert len(checked.validation.quarantine) == 1
    assert checked.validation.quarantine["id"].tolist() == [int(march.loc[10, "id"])]
    assert checked.geography["district_filled"] == 5
    assert checked.geography["community_area_filled"] == 5
    assert clean["district"].notna().all() and clean["community_area"].notna().all()
    assert staged.raw["district"].isna().sum() == 6  # the raw zone keeps what the source sent
    # Without boundaries the five would be quarantined too, and nothing is counted.
    bare = check_staged(staged, stations, 0.05)
    assert len(bare.validation.quarantine) == 6 and bare.geography == {}
    # The geopandas station join gives the serving path's numbers.
    served = enrich(clean, stations)
    pd.testing.assert_series_equal(
        checked.features["station_distance_m"], served["station_distance_m"]
    )
    counts = month_counts(checked, {})
    assert (counts.district_filled, counts.community_area_filled) == (5, 5)
    text = summary_markdown(
        EtlRunSummary("r", [counts], {}, 0, ["2018-03"], {}, "file:///lake", "m.json")
    )
    assert "district: 5 filled" in text and "community area: 5 filled" in text
