"""Boundary GeoJSON for the SODA stand-in: the real files when given a folder, else generated.

The generated layers cover the generator's coordinates: a Voronoi cell around each beat's
centre (from the generator profile) takes the beat's district and its most frequent community
area, and cells are merged per id. Generated incidents are drawn around their beat's centre, so
most of them fall inside the district and area they report, and a few (the ones drawn near an
edge) do not, like the real feed. The real files (../shared/data/real/geo/) are used by tests
and by `crimeflow soda serve --boundaries DIR`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import shapely

from crimeflow.domain.geography import (
    COMMUNITY_AREAS,
    GEOGRAPHIC_CRS,
    LAYERS,
    POLICE_DISTRICTS,
    PROJECTED_CRS,
)
from crimeflow.standins.generate import load_profile

# Feet of margin around the beats' point boxes, so clipped draws at a box edge stay covered.
_MARGIN_FT = 5_000.0


def _beat_cells(profile: Mapping[str, Any]) -> gpd.GeoDataFrame:
    """One Voronoi cell (EPSG:3435) per beat, with the beat's district and main community area."""
    beats = [profile["beats"][code] for code in profile["beat_order"]]
    centres = shapely.multipoints([(b["x"][0], b["y"][0]) for b in beats])
    low_x = min(b["x"][2] for b in beats) - _MARGIN_FT
    low_y = min(b["y"][2] for b in beats) - _MARGIN_FT
    high_x = max(b["x"][3] for b in beats) + _MARGIN_FT
    high_y = max(b["y"][3] for b in beats) + _MARGIN_FT
    envelope = shapely.box(low_x, low_y, high_x, high_y)
    # ordered=True: cell i belongs to beat i.
    cells = shapely.get_parts(shapely.voronoi_polygons(centres, extend_to=envelope, ordered=True))
    clipped = shapely.intersection(cells, envelope)
    return gpd.GeoDataFrame(
        {
            "district": [int(b["district"]) for b in beats],
            "community_area": [max(b["community_areas"], key=lambda a: a[1])[0] for b in beats],
        },
        geometry=clipped,
        crs=PROJECTED_CRS,
    )


def _collection(cells: gpd.GeoDataFrame, column: str, id_key: str, name_key: str) -> dict:
    """Cells merged per `column` id, as a GeoJSON FeatureCollection in EPSG:4326."""
    merged = cells.dissolve(by=column, as_index=False).to_crs(GEOGRAPHIC_CRS)
    features = [
        {
            "type": "Feature",
            "properties": {id_key: str(int(row[column])), name_key: f"{column} {int(row[column])}"},
            "geometry": shapely.geometry.mapping(row.geometry),
        }
        for _, row in merged.iterrows()
    ]
    return {"type": "FeatureCollection", "features": features}


def generated_boundaries(profile: Mapping[str, Any] | None = None) -> dict[str, bytes]:
    """Police districts and community areas covering the generator's beats, by layer name."""
    cells = _beat_cells(profile if profile is not None else load_profile())
    layers = {
        POLICE_DISTRICTS.name: _collection(cells, "district", "dist_num", "dist_label"),
        COMMUNITY_AREAS.name: _collection(cells, "community_area", "area_numbe", "community"),
    }
    return {name: json.dumps(layer).encode() for name, layer in layers.items()}


def boundaries_from_folder(folder: str | Path) -> dict[str, bytes]:
    """The real layers from `folder` (police_districts.geojson, community_areas.geojson)."""
    root = Path(folder)
    missing = [name for name in LAYERS if not (root / f"{name}.geojson").is_file()]
    if missing:
        raise FileNotFoundError(
            f"boundary folder {root} lacks {', '.join(f'{n}.geojson' for n in missing)}"
        )
    return {name: (root / f"{name}.geojson").read_bytes() for name in LAYERS}
