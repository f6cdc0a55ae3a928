"""Boundary layers: Socrata GeoJSON -> one GeoDataFrame shape in EPSG:3435 -> the lake and back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import shapely

from crimeflow.domain.geography import (
    COMMUNITY_AREAS,
    POLICE_DISTRICTS,
    PROJECTED_CRS,
    boundaries_from_frame,
    boundaries_from_geojson,
    boundaries_to_frame,
    layer_named,
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
