"""Boundary layers: Socrata GeoJSON -> one GeoDataFrame shape in EPSG:3435 -> the lake and back."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from crimeflow.domain.enrich import StationIndex, state_plane_xy
from crimeflow.domain.geography import (
    COMMUNITY_AREAS,
    POLICE_DISTRICTS,
    PROJECTED_CRS,
    area_counts,
    boundaries_from_frame,
    boundaries_from_geojson,
    boundaries_to_frame,
    check_layers,
    fill_missing,
    layer_named,
    locate,
    nearest_station,
    stations_layer,
)
from crimeflow.stores.boundaries import read_boundaries, write_boundaries
from crimeflow.stores.lake import Lake


def _square(x: float, y: float, size: float = 0.01) -> dict:
    """A GeoJSON polygon (lon/lat) with its south-west corner at (x, y)."""
    ring = [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]
    return {"type": "Polygon", "coordinates": [ring]}


def _collection(*features: tuple[dict, dict]) -> dict:
    """A FeatureCollection of (properties, geometry) pairs."""
    return {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": p, "geometry": g} for p, g in features],
    }


def test_real_layers_parse_with_every_area(real_boundaries: dict) -> None:
    """The portal's files give 77 community areas (1..77) and 23 districts, in EPSG:3435."""
    areas = real_boundaries["community_areas"]
    districts = real_boundaries["police_districts"]
    assert sorted(areas["community_area"].tolist()) == list(range(1, 78))
    # 25 features; district 31 (the airports) is three of them, merged into one row.
    assert len(districts) == 23 and districts["district"].is_unique
    assert districts.loc[districts["district"] == 31].geometry.item().geom_type == "MultiPolygon"
    assert areas.crs == PROJECTED_CRS and districts.crs == PROJECTED_CRS
    # State-plane feet: Chicago's x runs about 1.09M-1.21M, y about 1.81M-1.96M.
    minx, miny, maxx, maxy = areas.total_bounds
    assert 1.0e6 < minx < maxx < 1.3e6 and 1.7e6 < miny < maxy < 2.0e6
    loop = areas.loc[areas["community_area"] == 32, "name"].item()
    assert loop == "LOOP"


def test_ids_come_from_the_first_present_property() -> None:
    """`area_numbe` is preferred; `area_num_1` is the fallback; names are stripped."""
    layer = boundaries_from_geojson(
        _collection(
            ({"area_numbe": "8", "community": " NEAR NORTH SIDE "}, _square(-87.63, 41.89)),
            ({"area_num_1": "32.0", "community": "LOOP"}, _square(-87.63, 41.87)),
        ),
        COMMUNITY_AREAS,
    )
    assert layer["community_area"].tolist() == [8, 32]
    assert layer["name"].tolist() == ["NEAR NORTH SIDE", "LOOP"]


def test_a_feature_without_an_id_is_named_in_the_error() -> None:
    """A broken feature fails with the layer, its position and the keys it has."""
    broken = _collection(
        ({"dist_num": "1"}, _square(-87.6, 41.8)), ({"x": 1}, _square(-87.7, 41.8))
    )
    with pytest.raises(ValueError, match=r"police_districts feature 1: .*dist_num.*\['x'\]"):
        boundaries_from_geojson(json.dumps(broken), POLICE_DISTRICTS)
    with pytest.raises(ValueError, match="no features"):
        boundaries_from_geojson(_collection(), POLICE_DISTRICTS)
    with pytest.raises(ValueError, match="unknown boundary layer 'wards'"):
        layer_named("wards")


def test_lake_round_trip_keeps_ids_names_and_shapes(tmp_path: Path) -> None:
    """Written and read back through the lake, a layer is the same, and a rewrite is a no-op."""
    layer = boundaries_from_geojson(
        _collection(
            ({"dist_num": "2", "dist_label": "2ND"}, _square(-87.62, 41.80)),
            ({"dist_num": "1", "dist_label": "1ST"}, _square(-87.63, 41.87)),
        ),
        POLICE_DISTRICTS,
    )
    assert layer["district"].tolist() == [1, 2]
    lake = Lake(str(tmp_path / "lake"))
    assert read_boundaries(lake, POLICE_DISTRICTS) is None
    assert write_boundaries(lake, POLICE_DISTRICTS, layer).changed
    assert not write_boundaries(lake, POLICE_DISTRICTS, layer).changed
    back = read_boundaries(lake, POLICE_DISTRICTS)
    assert back is not None and back.crs == PROJECTED_CRS
    assert back["district"].tolist() == [1, 2] and back["name"].tolist() == ["1ST", "2ND"]
    assert all(shapely.equals(back.geometry.to_numpy(), layer.geometry.to_numpy()))
    same = boundaries_from_frame(boundaries_to_frame(layer, POLICE_DISTRICTS), POLICE_DISTRICTS)
    assert same.geometry.area.round(3).tolist() == layer.geometry.area.round(3).tolist()


# --- point-in-polygon -------------------------------------------------------------------------


def _grid(layer_column: str, ids: tuple[int, int]) -> gpd.GeoDataFrame:
    """Two EPSG:3435 squares side by side: x 0-100 is ids[0], x 100-200 is ids[1] (y 0-100)."""
    return gpd.GeoDataFrame(
        {layer_column: pd.array(list(ids), dtype="Int64"), "name": ["west", "east"]},
        geometry=[shapely.box(0, 0, 100, 100), shapely.box(100, 0, 200, 100)],
        crs=PROJECTED_CRS,
    )


def test_locate_finds_the_polygon_and_leaves_outside_points_missing() -> None:
    """Inside -> that id; outside every polygon or NaN -> <NA>; a shared edge -> the lower id."""
    areas = _grid("community_area", (7, 3))
    x = np.array([50.0, 150.0, 500.0, np.nan, 100.0])
    y = np.array([50.0, 50.0, 50.0, 50.0, 50.0])
    located = locate(x, y, areas, COMMUNITY_AREAS)
    assert located.dtype == "Int64"
    assert located.tolist()[:2] == [7, 3]
    assert located.isna().tolist()[2:4] == [True, True]
    # On the shared edge the point touches both squares: the lower id, every time.
    assert located.iloc[4] == 3


def _incidents(**columns: list) -> pd.DataFrame:
    """Raw-string incidents at EPSG:3435 points (x_coordinate/y_coordinate), other fields given."""
    return pd.DataFrame(columns)


def test_missing_ids_are_filled_and_disagreements_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blank ids take the located id (districts zero-padded); a wrong id is flagged, not changed."""
    import crimeflow.domain.geography as geography

    # The grid lives near the origin, outside the Chicago box state_plane_xy enforces.
    monkeypatch.setattr(
        geography,
        "state_plane_xy",
        lambda f: (f["x"].to_numpy(dtype="float64"), f["y"].to_numpy(dtype="float64")),
    )
    raw = _incidents(
        x=[50.0, 150.0, 150.0, 50.0, np.nan],
        y=[50.0, 50.0, 50.0, 50.0, 50.0],
        community_area=["", "3", "7", None, ""],
        district=["006", None, "006", "", None],
    )
    boundaries = {
        "community_areas": _grid("community_area", (7, 3)),
        "police_districts": _grid("district", (6, 31)),
    }
    checks = check_layers(raw, boundaries)
    assert area_counts(checks) == {
        "community_area_filled": 2,
        "community_area_disagrees": 1,
        "community_area_on_edge": 0,
        "district_filled": 2,
        "district_disagrees": 1,
        "district_on_edge": 0,
    }
    assert checks[0].filled.tolist() == [True, False, False, True, False]
    assert checks[0].disagrees.tolist() == [False, False, True, False, False]
    filled = fill_missing(raw, checks)
    assert filled["community_area"].tolist()[:4] == ["7", "3", "7", "7"]
    assert filled["district"].tolist()[:4] == ["006", "031", "006", "006"]
    # No coordinates: nothing to fill from, the gap stays.
    assert filled["community_area"].iloc[4] == ""
    assert pd.isna(filled["district"].iloc[4])
    # Counting over kept rows only (the ETL keeps the clean ones).
    keep = np.array([True, False, False, False, True])
    assert area_counts(checks, keep)["community_area_filled"] == 1
    assert area_counts(checks, keep)["district_disagrees"] == 0
    # An integer column stays integer.
    typed = raw.assign(community_area=pd.array([None, 3, 7, None, None], dtype="Int64"))
    out = fill_missing(typed, check_layers(typed, boundaries))
    assert out["community_area"].dtype == "Int64"
    assert out["community_area"].tolist()[:4] == [7, 3, 7, 7]


def test_a_point_just_over_the_edge_is_not_a_disagreement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reported 7 (x 0-100 ft) at x = 120 ft (6 m over) is on the edge; at x = 200 ft, disagrees."""
    import crimeflow.domain.geography as geography

    monkeypatch.setattr(
        geography,
        "state_plane_xy",
        lambda f: (f["x"].to_numpy(dtype="float64"), f["y"].to_numpy(dtype="float64")),
    )
    assert geography.EDGE_TOLERANCE_M == 10.0
    rows = _incidents(x=[120.0, 180.0, 150.0], y=[50.0] * 3, community_area=["7", "7", "99"])
    [check] = check_layers(rows, {"community_areas": _grid("community_area", (7, 3))})
    assert check.located.tolist() == [3, 3, 3]
    assert check.on_edge.tolist() == [True, False, False]
    # 80 ft = 24 m over the edge: a disagreement; an id the layer does not know is one too.
    assert check.disagrees.tolist() == [False, True, True]


def test_real_2018_rows_fill_and_flag(real_data_dir: Path, real_boundaries: dict) -> None:
    """On real rows, the located area mostly matches the reported one; a blanked one comes back."""
    frame = pd.read_csv(
        real_data_dir / "crimes_2018-01_to_2018-10_chicagocrimedata-datastore.csv.gz",
        dtype=str,
        nrows=5_000,
    )
    frame.columns = [c.lower().replace(" ", "_") for c in frame.columns]
    checks = check_layers(frame, real_boundaries)
    for check in checks:
        found = check.located.notna()
        assert found.mean() > 0.98
        assert check.disagrees.mean() < 0.05
    blanked = frame.assign(community_area="", district="")
    again = check_layers(blanked, real_boundaries)
    counts = area_counts(again)
    assert counts["community_area_filled"] == int(checks[0].located.notna().sum())
    filled = fill_missing(blanked, again)
    # Rows whose point lies in the polygon they report get that id back.
    agree = ~checks[0].disagrees & ~checks[0].on_edge & checks[0].located.notna().to_numpy()
    assert (filled["community_area"][agree] == frame["community_area"][agree]).all()
    agree_d = ~checks[1].disagrees & ~checks[1].on_edge & checks[1].located.notna().to_numpy()
    assert (filled["district"][agree_d] == frame["district"][agree_d]).all()


# --- nearest station: the ETL's geopandas join vs the serving path's KD-tree -----------------


def test_sjoin_nearest_agrees_with_the_serving_index() -> None:
    """Same meters and same station as StationIndex on random points, NaN kept as NaN."""
    index = StationIndex.packaged()
    stations = stations_layer(index.x, index.y, index.districts)
    rng = np.random.default_rng(7)
    x = rng.uniform(1_095_000, 1_205_000, 5_000)
    y = rng.uniform(1_815_000, 1_950_000, 5_000)
    x[::97] = np.nan
    expected, expected_district = index.nearest(x, y)
    distance, district = nearest_station(x, y, stations)
    np.testing.assert_allclose(distance, expected, rtol=0, atol=1e-6)
    assert list(district) == list(expected_district)
    assert np.isnan(distance[::97]).all() and all(d is None for d in district[::97])


def test_sjoin_nearest_agrees_on_real_2018_points(real_data_dir: Path) -> None:
    """On every real 2018 point (Jan-Oct, 222k rows) the two paths give the same distances."""
    frame = pd.read_csv(
        real_data_dir / "crimes_2018-01_to_2018-10_chicagocrimedata-datastore.csv.gz",
        usecols=["X Coordinate", "Y Coordinate", "Latitude", "Longitude"],
    )
    frame.columns = [c.lower().replace(" ", "_") for c in frame.columns]
    x, y = state_plane_xy(frame)
    index = StationIndex.packaged()
    expected, expected_district = index.nearest(x, y)
    distance, district = nearest_station(x, y, stations_layer(index.x, index.y, index.districts))
    np.testing.assert_allclose(distance, expected, rtol=0, atol=1e-6, equal_nan=True)
    assert (district == expected_district).mean() == 1.0
