"""Prefect tasks that read the boundary layers the ETL pulled into the lake."""

from __future__ import annotations

import geopandas as gpd
from prefect import get_run_logger

from crimeflow.domain.geography import COMMUNITY_AREAS
from crimeflow.stores.boundaries import read_boundaries
from crimeflow.stores.lake import Lake
from tasks import step


@step
def load_community_areas(lake: Lake, when_missing: str) -> gpd.GeoDataFrame | None:
    """The community-area shapes from the lake, or None with `when_missing` logged as a warning."""
    areas = read_boundaries(lake, COMMUNITY_AREAS)
    if areas is None:
        # A lake filled before boundaries were pulled has none: maps are left out, not fatal.
        get_run_logger().warning(when_missing)
    return areas
