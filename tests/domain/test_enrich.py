"""Tests for the enrichment: nearest station (vs geopandas), units, NaN, calendar features."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from pyproj import Geod

from crimeflow.contract.schema import CHICAGO_BOUNDS, empty_canonical, to_canonical
from crimeflow.domain.enrich import (
    ENRICHED_COLUMNS,
    US_SURVEY_FOOT_M,
    StationIndex,
    add_station_distance,
    add_temporal_features,
    enrich,
    project_lonlat,
    state_plane_xy,
)

REAL_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
PACKAGED_STATIONS = (
    Path(__file__).resolve().parents[2] / "crimeflow" / "data" / "police_stations.csv"
)


@pytest.fixture(scope="module")
def index() -> StationIndex:
    return StationIndex.packaged()


@pytest.fixture(scope="module")
def stations() -> pd.DataFrame:
    return pd.read_csv(PACKAGED_STATIONS, dtype={"district": "string"})


def _real(name: str) -> Path:
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data not available at {REAL_DATA}")
    return REAL_DATA.resolve() / name


def _geopandas_nearest(
    x: np.ndarray, y: np.ndarray, stations: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """Reference answer: sjoin_nearest in EPSG:3435, distance converted to meters."""
    points = gpd.GeoDataFrame(
        {"row": np.arange(x.size)}, geometry=gpd.points_from_xy(x, y), crs="EPSG:3435"
    )
    station_points = gpd.GeoDataFrame(
        {"label": stations["district"].astype(str).str.zfill(3).to_numpy()},
        geometry=gpd.points_from_xy(stations["x_coordinate"], stations["y_coordinate"]),
        crs="EPSG:3435",
    )
    joined = gpd.sjoin_nearest(points, station_points, distance_col="feet")
    # An exact tie would give two rows for one point; random floats make that vanishingly rare.
    joined = joined.drop_duplicates("row").sort_values("row")
    assert len(joined) == x.size
    return joined["feet"].to_numpy() * US_SURVEY_FOOT_M, joined["label"].to_numpy()


def _assert_same_as_geopandas(
    index: StationIndex, stations: pd.DataFrame, x: np.ndarray, y: np.ndarray
) -> None:
    meters, labels = index.nearest(x, y)
    expected_m, expected_labels = _geopandas_nearest(x, y, stations)
    np.testing.assert_allclose(meters, expected_m, rtol=1e-6)
    # The packaged file labels headquarters 'Headquarters'; zfill leaves it untouched too.
    assert list(labels) == list(expected_labels)


def test_nearest_matches_geopandas_on_random_points(index, stations):
    rng = np.random.default_rng(7)
    x = rng.uniform(*CHICAGO_BOUNDS["x_coordinate"], size=3000)
    y = rng.uniform(*CHICAGO_BOUNDS["y_coordinate"], size=3000)
    _assert_same_as_geopandas(index, stations, x, y)


@pytest.mark.real_data
def test_nearest_matches_geopandas_on_real_incidents(index, stations):
    raw = pd.read_csv(_real("crimes_2025-10-18_to_2025-11-03_api_jean-carlos-l.csv"), dtype=str)
    incidents = to_canonical(raw).dropna(subset=["x_coordinate", "y_coordinate"])
    incidents = incidents[incidents["x_coordinate"] > 0]
    assert len(incidents) > 9000
    x = incidents["x_coordinate"].to_numpy()
    y = incidents["y_coordinate"].to_numpy()
    _assert_same_as_geopandas(index, stations, x, y)


@pytest.mark.real_data
def test_real_stations_export_builds_the_same_index(index):
    # Title Case headers, a BOM, an embedded newline and 'Headquarters' among integers.
    export = pd.read_csv(_real("police_stations.csv"), encoding="utf-8-sig")
    real = StationIndex(export)
    assert real.districts == index.districts
    np.testing.assert_allclose(real.x, index.x)
    np.testing.assert_allclose(real.y, index.y)


def test_distance_is_in_meters_for_state_plane_points():
    one_km_in_feet = 1000.0 / US_SURVEY_FOOT_M  # 3280.8333 US survey feet
    index = StationIndex.from_arrays(np.array([1_150_000.0]), np.array([1_900_000.0]), ["007"])
    meters, labels = index.nearest(
        np.array([1_150_000.0 + one_km_in_feet, 1_150_000.0]),
        np.array([1_900_000.0, 1_900_000.0 - one_km_in_feet]),
    )
    np.testing.assert_allclose(meters, [1000.0, 1000.0], rtol=1e-9)
    assert list(labels) == ["007", "007"]


def test_distance_matches_the_geodesic_for_lat_lon_points_about_1km_apart():
    geod = Geod(ellps="WGS84")
    station_lon, station_lat = -87.6500, 41.8800
    lon, lat, _ = geod.fwd(station_lon, station_lat, 45.0, 1000.0)  # 1 km north-east
    station = pd.DataFrame(
        {"district": ["12"], "latitude": [station_lat], "longitude": [station_lon]}
    )
    index = StationIndex(station)
    frame = pd.DataFrame({"latitude": [lat], "longitude": [lon]})
    meters, labels = index.nearest(*state_plane_xy(frame))
    # The State Plane scale error in Chicago is tens of ppm: well under a meter per km.
    assert meters[0] == pytest.approx(1000.0, abs=0.5)
    assert labels[0] == "012"


def test_lat_lon_rows_get_the_same_answer_as_xy_rows(index, stations):
    # The city publishes both coordinate pairs for each station; use them as incidents.
    xy_only = stations.drop(columns=["latitude", "longitude"])
    lonlat_only = stations.drop(columns=["x_coordinate", "y_coordinate"])
    from_xy = add_station_distance(xy_only, index)
    from_lonlat = add_station_distance(lonlat_only, index)
    assert from_xy["station_distance_m"].max() == pytest.approx(0.0, abs=1e-9)
    assert from_lonlat["station_distance_m"].max() < 3.0
    pd.testing.assert_series_equal(
        from_xy["nearest_station_district"], from_lonlat["nearest_station_district"]
    )


@pytest.mark.real_data
def test_lat_lon_and_xy_agree_on_real_incidents(index):
    raw = pd.read_csv(_real("crimes_2024_export_10k_paras-18.csv"), dtype=str)
    incidents = to_canonical(raw).dropna(subset=["x_coordinate", "latitude"]).head(3000)
    from_xy = add_station_distance(incidents.drop(columns=["latitude", "longitude"]), index)
    from_lonlat = add_station_distance(
        incidents.drop(columns=["x_coordinate", "y_coordinate"]), index
    )
    gap = (from_xy["station_distance_m"] - from_lonlat["station_distance_m"]).abs()
    assert gap.max() < 5.0
    # Points almost equidistant from two stations may flip; nearly all must agree.
    same = from_xy["nearest_station_district"] == from_lonlat["nearest_station_district"]
    assert same.mean() > 0.995


def test_projection_reproduces_published_station_coordinates(stations):
    x, y = project_lonlat(stations["longitude"].to_numpy(), stations["latitude"].to_numpy())
    # The city's own lat/lon -> x/y agrees with pyproj to a few hundredths of a foot.
    np.testing.assert_allclose(x, stations["x_coordinate"], atol=0.05)
    np.testing.assert_allclose(y, stations["y_coordinate"], atol=0.05)


def test_missing_or_invalid_coordinates_give_missing_distance(index):
    frame = pd.DataFrame(
        {
            "x_coordinate": [np.nan, 0.0, 0.0, 1_176_569.052, np.nan],
            "y_coordinate": [np.nan, 0.0, 0.0, 1_891_771.704, np.nan],
            "latitude": [np.nan, 41.85837259, 36.6, np.nan, 41.85837259],
            "longitude": [np.nan, -87.62735617, -91.7, np.nan, np.nan],
        }
    )
    out = add_station_distance(frame, index)
    distance = out["station_distance_m"]
    district = out["nearest_station_district"]
    # 0: nothing; 1: x/y zero but lat/lon fine -> projected; 2: both outside Chicago;
    # 3: x/y fine; 4: half a lat/lon pair.
    assert distance.isna().tolist() == [True, False, True, False, True]
    assert district.isna().tolist() == [True, False, True, False, True]
    assert district[1] == "001" and district[3] == "001"
    assert distance[1] < 3.0
    assert distance.dtype == "float64" and district.dtype == "string"


def test_nearest_accepts_all_nan_and_empty_input(index):
    meters, labels = index.nearest(np.array([np.nan, np.nan]), np.array([1.0, np.nan]))
    assert np.isnan(meters).all() and list(labels) == [None, None]
    meters, labels = index.nearest(np.array([]), np.array([]))
    assert meters.size == 0 and labels.size == 0


def test_enrich_adds_every_column_without_mutating_the_input(index, stations):
    frame = stations.assign(date=pd.Timestamp("2024-07-04 21:30"))
    before = frame.copy()
    out = enrich(frame, index)
    pd.testing.assert_frame_equal(frame, before)
    assert list(out.columns) == [*frame.columns, *ENRICHED_COLUMNS]
    assert out.loc[0, "day_part"] == "evening" and out.loc[0, "season"] == "summer"


def test_enrich_on_an_empty_canonical_frame(index):
    out = enrich(empty_canonical(), index)
    assert len(out) == 0 and set(ENRICHED_COLUMNS) <= set(out.columns)


def _calendar(*stamps: str | None) -> pd.DataFrame:
    return add_temporal_features(pd.DataFrame({"date": pd.to_datetime(list(stamps))}))


def test_day_part_boundaries():
    hours = [0, 5, 6, 11, 12, 17, 18, 23]
    out = _calendar(*[f"2024-03-05 {h:02d}:59:59" for h in hours])
    assert out["hour"].tolist() == hours
    assert out["day_part"].tolist() == [
        "night",
        "night",
        "morning",
        "morning",
        "afternoon",
        "afternoon",
        "evening",
        "evening",
    ]


def test_season_boundaries():
    months = [1, 2, 3, 5, 6, 8, 9, 11, 12]
    out = _calendar(*[f"2024-{m:02d}-01 00:00" for m in months])
    assert out["month"].tolist() == months
    assert out["season"].tolist() == [
        "winter",
        "winter",
        "spring",
        "spring",
        "summer",
        "summer",
        "fall",
        "fall",
        "winter",
    ]


def test_weekday_and_weekend():
    # 2024-06-07 is a Friday.
    out = _calendar("2024-06-07 23:59", "2024-06-08 00:00", "2024-06-09 12:00", "2024-06-10 00:00")
    assert out["weekday"].tolist() == [4, 5, 6, 0]
    assert out["is_weekend"].tolist() == [False, True, True, False]


def test_cyclical_encodings_put_neighbours_close():
    out = _calendar("2024-01-15 00:00", "2024-12-15 23:00", "2024-07-15 06:00")
    assert out.loc[0, "hour_sin"] == pytest.approx(0.0) and out.loc[0, "hour_cos"] == 1.0
    assert out.loc[2, "hour_sin"] == pytest.approx(1.0)
    # December sits next to January, July opposite it.
    jan, dec, jul = (np.array([out.loc[i, "month_sin"], out.loc[i, "month_cos"]]) for i in range(3))
    assert np.linalg.norm(jan - dec) < 0.6 < 1.9 < np.linalg.norm(jan - jul)
    # 23:00 is as close to midnight as 01:00 would be.
    assert out.loc[1, "hour_cos"] == pytest.approx(np.cos(2 * np.pi / 24))


def test_missing_date_gives_missing_calendar_features():
    out = _calendar("2024-01-01 10:00", None)
    assert out.loc[1, ["hour", "weekday", "month", "is_weekend", "season", "day_part"]].isna().all()
    assert np.isnan(out.loc[1, ["hour_sin", "hour_cos", "month_cos"]].astype(float)).all()
    assert out["hour"].dtype == "Int64" and out["is_weekend"].dtype == "boolean"
    assert out.loc[0, "day_part"] == "morning"


def test_raw_string_dates_are_parsed_like_the_schema():
    frame = pd.DataFrame({"date": ["2024-06-08T13:05:00.000", "06/08/2024 01:05:00 PM", "junk"]})
    out = add_temporal_features(frame)
    assert out["hour"].tolist()[:2] == [13, 13]
    assert pd.isna(out.loc[2, "hour"])


def test_index_pickles_without_the_tree(index):
    index.nearest(np.array([1_170_000.0]), np.array([1_900_000.0]))  # build the tree
    state = index.__getstate__()
    assert set(state) == {"x", "y", "districts"}
    restored = pickle.loads(pickle.dumps(index))
    rng = np.random.default_rng(3)
    x = rng.uniform(*CHICAGO_BOUNDS["x_coordinate"], size=200)
    y = rng.uniform(*CHICAGO_BOUNDS["y_coordinate"], size=200)
    for before, after in zip(index.nearest(x, y), restored.nearest(x, y), strict=True):
        np.testing.assert_array_equal(before, after)


def test_index_survives_skops_with_one_trusted_type(index):
    sio = pytest.importorskip("skops.io")
    blob = sio.dumps(index)
    assert sio.get_untrusted_types(data=blob) == ["crimeflow.domain.enrich.StationIndex"]
    restored = sio.loads(blob, trusted=["crimeflow.domain.enrich.StationIndex"])
    assert restored.districts == index.districts
    assert restored.nearest(np.array([1_176_569.052]), np.array([1_891_771.704]))[1][0] == "001"


def test_one_row_enrichment_is_fast(index):
    row = pd.DataFrame(
        {"date": [pd.Timestamp("2024-05-01 12:00")], "latitude": [41.9], "longitude": [-87.7]}
    )
    enrich(row, index)  # warm caches (transformer, tree)
    timings = []
    for _ in range(15):
        start = time.perf_counter()
        enrich(row, index)
        timings.append(time.perf_counter() - start)
    # Serving enriches one row per request; a generous bound that still catches a rebuild
    # of the transformer (~100 ms) or the tree on every call.
    assert float(np.median(timings)) < 0.05
