"""Boundary layers (police districts, community areas) in the lake, as GeoDataFrames.

The ETL writes each layer it pulled from Socrata under `raw/boundaries/<layer>`; training,
the audit and the analyst's report read them back here. A lake without a layer gives None, and
callers say what they skip without it.
"""

from __future__ import annotations

import geopandas as gpd

from crimeflow.domain.geography import (
    BoundaryLayer,
    boundaries_from_frame,
    boundaries_to_frame,
)
from crimeflow.stores.lake import Lake, WriteResult

RAW_BOUNDARIES = "raw/boundaries"


def boundaries_zone(layer: BoundaryLayer) -> str:
    """The lake zone that holds `layer` (e.g. raw/boundaries/community_areas)."""
    return f"{RAW_BOUNDARIES}/{layer.name}"


def write_boundaries(lake: Lake, layer: BoundaryLayer, boundaries: gpd.GeoDataFrame) -> WriteResult:
    """Store a layer atomically; an unchanged layer is not rewritten."""
    return lake.write(boundaries_zone(layer), boundaries_to_frame(boundaries, layer))


def read_boundaries(lake: Lake, layer: BoundaryLayer) -> gpd.GeoDataFrame | None:
    """The stored layer in EPSG:3435, or None when the lake has none."""
    frame = lake.read(boundaries_zone(layer))
    return None if frame is None else boundaries_from_frame(frame, layer)
