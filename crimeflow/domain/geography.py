"""Chicago's police districts and community areas as GeoDataFrames, and their lake form.

Socrata serves each boundary set as GeoJSON in EPSG:4326 with its own property names
(`dist_num` for districts, `area_numbe` for community areas). Everything else in crimeflow sees
one shape per layer: a GeoDataFrame in EPSG:3435 (Illinois State Plane East, US feet, the CRS of
the incidents' `x_coordinate`/`y_coordinate`) with the layer's integer id column (named like the
incident column it matches: `district`, `community_area`), a `name`, and the geometry.

The lake keeps a layer as a plain frame (`id`, `name`, hex WKB geometry in EPSG:3435), so it goes
through the same atomic, idempotent Parquet writes as every other partition.

The ETL uses the layers on incident points (pure functions below): `locate` (point-in-polygon
through `geopandas.sjoin`), `check_layers` / `fill_missing` / `area_counts` (fill a missing
`community_area` or `district` from the point, flag a reported id the point disagrees with),
and `nearest_station` (`geopandas.sjoin_nearest`, the same meters as the serving path's
`enrich.StationIndex`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from crimeflow.contract.schema import ZERO_PADDED
from crimeflow.domain.enrich import US_SURVEY_FOOT_M, state_plane_xy

# Illinois State Plane East (US feet): the incidents' x/y coordinates are in it.
PROJECTED_CRS = "EPSG:3435"
GEOGRAPHIC_CRS = "EPSG:4326"


@dataclass(frozen=True)
class BoundaryLayer:
    """A boundary data set: its incident column, the GeoJSON properties holding id and name."""

    name: str
    id_column: str
    id_properties: tuple[str, ...]
    name_properties: tuple[str, ...]


COMMUNITY_AREAS = BoundaryLayer(
    "community_areas", "community_area", ("area_numbe", "area_num_1"), ("community",)
)
POLICE_DISTRICTS = BoundaryLayer("police_districts", "district", ("dist_num",), ("dist_label",))
LAYERS: dict[str, BoundaryLayer] = {
    layer.name: layer for layer in (COMMUNITY_AREAS, POLICE_DISTRICTS)
}


def layer_named(name: str) -> BoundaryLayer:
    """The boundary layer called `name` ('community_areas' or 'police_districts')."""
    try:
        return LAYERS[name]
    except KeyError:
        raise ValueError(f"unknown boundary layer {name!r}; known: {sorted(LAYERS)}") from None


def _first_present(properties: dict[str, Any], names: tuple[str, ...], what: str) -> Any:
    """The first of `names` that `properties` holds, or a ValueError naming the feature's keys."""
    for name in names:
        if properties.get(name) not in (None, ""):
            return properties[name]
    raise ValueError(
        f"boundary feature has no {what} (looked for {names}; has {sorted(properties)})"
    )


def boundaries_from_geojson(
    data: bytes | str | dict[str, Any], layer: BoundaryLayer
) -> gpd.GeoDataFrame:
    """A GeoJSON FeatureCollection (EPSG:4326) as the layer's GeoDataFrame in EPSG:3435."""
    collection = json.loads(data) if isinstance(data, bytes | str) else data
    features = collection.get("features") or []
    if not features:
        raise ValueError(f"{layer.name}: the GeoJSON holds no features")
    ids, names, shapes = [], [], []
    for position, feature in enumerate(features):
        properties = feature.get("properties") or {}
        try:
            ids.append(int(float(_first_present(properties, layer.id_properties, "id"))))
        except ValueError as error:
            raise ValueError(f"{layer.name} feature {position}: {error}") from None
        names.append(str(properties.get(layer.name_properties[0]) or "").strip())
        shapes.append(shapely.geometry.shape(feature["geometry"]))
    frame = gpd.GeoDataFrame(
        {layer.id_column: pd.array(ids, dtype="Int64"), "name": names},
        geometry=shapes,
        crs=GEOGRAPHIC_CRS,
    )
    # District 31 (the airports) comes as three features: one row per id, so joins stay 1:1.
    merged = frame.dissolve(by=layer.id_column, as_index=False, aggfunc="first")
    merged[layer.id_column] = merged[layer.id_column].astype("Int64")
    return merged.to_crs(PROJECTED_CRS).sort_values(layer.id_column, ignore_index=True)


def boundaries_to_frame(boundaries: gpd.GeoDataFrame, layer: BoundaryLayer) -> pd.DataFrame:
    """The lake's form of a layer: `id`, `name`, `wkb` (hex WKB in EPSG:3435)."""
    projected = boundaries.to_crs(PROJECTED_CRS)
    return pd.DataFrame(
        {
            "id": projected[layer.id_column].astype("Int64").to_numpy(),
            "name": projected["name"].astype("string").to_numpy(),
            "wkb": shapely.to_wkb(projected.geometry.to_numpy(), hex=True),
        }
    )


def boundaries_from_frame(frame: pd.DataFrame, layer: BoundaryLayer) -> gpd.GeoDataFrame:
    """A layer read back from the lake's form (`boundaries_to_frame`)."""
    return gpd.GeoDataFrame(
        {
            layer.id_column: frame["id"].astype("Int64").to_numpy(),
            "name": frame["name"].astype(str),
        },
        geometry=shapely.from_wkb(frame["wkb"].to_numpy()),
        crs=PROJECTED_CRS,
    )


# --- point-in-polygon: locate, fill and flag (pure) ------------------------------------------


@dataclass(frozen=True)
class AreaCheck:
    """One layer checked against a frame's coordinates: masks aligned with the frame's rows.

    `located` is the id of the polygon holding each row's point (<NA> without coordinates or
    outside every polygon); `filled` marks rows whose reported id was missing and now comes
    from the coordinates; `disagrees` marks rows whose point lies in another polygon and more
    than `EDGE_TOLERANCE_M` from the one they report; `on_edge` marks rows whose point lies in
    another polygon but within that tolerance of the reported one (not a disagreement).
    """

    layer: BoundaryLayer
    located: pd.Series
    filled: np.ndarray
    disagrees: np.ndarray
    on_edge: np.ndarray


def _points(x: np.ndarray, y: np.ndarray) -> gpd.GeoDataFrame:
    """EPSG:3435 points (a NaN coordinate gives a NaN point, which matches nothing)."""
    return gpd.GeoDataFrame(geometry=gpd.points_from_xy(x, y), crs=PROJECTED_CRS)


def _join_ids(
    points: gpd.GeoDataFrame, shapes: gpd.GeoDataFrame, column: str, predicate: str
) -> pd.Series:
    """The `column` id of the shape each point matches (lowest id when several), by position."""
    joined = gpd.sjoin(points, shapes, how="left", predicate=predicate)
    joined = joined.sort_values(column, kind="stable")
    first = joined[~joined.index.duplicated(keep="first")].sort_index()
    return pd.Series(first[column].to_numpy(), dtype="Int64")


def locate(
    x: np.ndarray, y: np.ndarray, boundaries: gpd.GeoDataFrame, layer: BoundaryLayer
) -> pd.Series:
    """The id (Int64, positional index) of the `layer` polygon containing each EPSG:3435 point."""
    x = np.asarray(x, dtype="float64")
    y = np.asarray(y, dtype="float64")
    points = _points(x, y)
    shapes = boundaries.to_crs(PROJECTED_CRS)[[layer.id_column, "geometry"]]
    # `within` is the fast path (0.6 s CPU for 200k points, make bench-geo; `intersects` on
    # every point took 5-7x the wall time on the 2018 file). Only the few points it leaves,
    # e.g. exactly on an edge, go through `intersects`, where a point on a shared edge gets the
    # lower id, so the answer is stable.
    located = _join_ids(points, shapes, layer.id_column, "within")
    left = np.flatnonzero(located.isna().to_numpy() & np.isfinite(x) & np.isfinite(y))
    if left.size:
        edge = _join_ids(
            points.iloc[left].reset_index(drop=True), shapes, layer.id_column, "intersects"
        )
        located.iloc[left] = edge.to_numpy()
    return located


def reported_ids(frame: pd.DataFrame, column: str) -> pd.Series:
    """A frame's reported area ids as Int64 ('006' -> 6; blank or junk -> <NA>), positional."""
    if column not in frame.columns:
        return pd.Series(pd.NA, index=range(len(frame)), dtype="Int64")
    numbers = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64")
    whole = np.where(np.isfinite(numbers) & (numbers == np.round(numbers)), numbers, np.nan)
    return pd.Series(whole, dtype="float64").astype("Int64")


# Addresses are geocoded onto street centre lines, and the boundaries run along the same lines:
# on the 2018 file 88 % of the community-area and 99.6 % of the district mismatches lie within
# 1 m of the polygon the row reports (median 0.09 m), and the share barely grows up to 10 m.
# Those are the same place, not a disagreement (docs/model-and-data.md, scripts/geo_counts.py).
EDGE_TOLERANCE_M = 10.0


def _distance_to_reported_m(
    x: np.ndarray, y: np.ndarray, reported: np.ndarray, boundaries: gpd.GeoDataFrame, column: str
) -> np.ndarray:
    """Meters from each point to the polygon of its reported id (inf for an id not in the layer)."""
    shapes = dict(zip(boundaries[column].astype(int), boundaries.geometry, strict=True))
    polygons = np.array([shapes.get(int(r)) for r in reported], dtype=object)
    known = np.array([p is not None for p in polygons], dtype=bool)
    meters = np.full(reported.size, np.inf)
    if known.any():
        points = shapely.points(x[known], y[known])
        meters[known] = shapely.distance(points, polygons[known]) * US_SURVEY_FOOT_M
    return meters


def check_areas(
    frame: pd.DataFrame,
    x: np.ndarray,
    y: np.ndarray,
    boundaries: gpd.GeoDataFrame,
    layer: BoundaryLayer,
) -> AreaCheck:
    """Locate each row's point in `layer` and compare with the id the row reports."""
    located = locate(x, y, boundaries, layer)
    reported = reported_ids(frame, layer.id_column)
    found = located.notna().to_numpy()
    has = reported.notna().to_numpy()
    differs = (reported.fillna(-1).to_numpy() != located.fillna(-1).to_numpy()) & found & has
    rows = np.flatnonzero(differs)
    near = np.zeros(differs.size, dtype=bool)
    if rows.size:
        shapes = boundaries.to_crs(PROJECTED_CRS)
        meters = _distance_to_reported_m(
            np.asarray(x, dtype="float64")[rows],
            np.asarray(y, dtype="float64")[rows],
            reported.to_numpy()[rows],
            shapes,
            layer.id_column,
        )
        near[rows[meters <= EDGE_TOLERANCE_M]] = True
    return AreaCheck(layer, located, found & ~has, differs & ~near, near)


def _as_column_values(located: pd.Series, like: pd.Series, column: str) -> pd.Series:
    """Located ids written the way `like` (the frame's column) holds its values."""
    if pd.api.types.is_numeric_dtype(like.dtype):
        return located.astype(like.dtype)
    # Text columns: the feed's form, zero-padded where Socrata pads ('6' -> '006' for district).
    width = ZERO_PADDED.get(column, 0)
    return located.astype("string").str.zfill(width) if width else located.astype("string")


def fill_missing(frame: pd.DataFrame, checks: list[AreaCheck]) -> pd.DataFrame:
    """A copy of `frame` whose missing area ids are filled from the checks' located ids."""
    out = frame.copy()
    for check in checks:
        column = check.layer.id_column
        if not check.filled.any():
            continue
        if column not in out.columns:
            out[column] = pd.Series(pd.NA, index=out.index, dtype="string")
        values = _as_column_values(check.located, out[column], column)
        values.index = out.index
        fill = pd.Series(check.filled, index=out.index)
        out[column] = out[column].astype(values.dtype).mask(fill, values)
    return out


def check_layers(
    frame: pd.DataFrame, boundaries: Mapping[str, gpd.GeoDataFrame]
) -> list[AreaCheck]:
    """Every given layer checked against the frame's points (x/y, else projected lat/lon)."""
    x, y = state_plane_xy(frame)
    return [
        check_areas(frame, x, y, shapes, layer_named(name)) for name, shapes in boundaries.items()
    ]


def area_counts(checks: list[AreaCheck], keep: np.ndarray | None = None) -> dict[str, int]:
    """Filled and disagreeing rows per layer ('community_area_filled', ...), over `keep` rows."""
    counts: dict[str, int] = {}
    for check in checks:
        mask = np.ones(check.filled.size, dtype=bool) if keep is None else keep
        column = check.layer.id_column
        counts[f"{column}_filled"] = int((check.filled & mask).sum())
        counts[f"{column}_disagrees"] = int((check.disagrees & mask).sum())
        counts[f"{column}_on_edge"] = int((check.on_edge & mask).sum())
    return counts


# --- nearest police station through geopandas (the ETL's path) -------------------------------


def stations_layer(x: np.ndarray, y: np.ndarray, districts: Sequence[str]) -> gpd.GeoDataFrame:
    """Police stations as EPSG:3435 points with their district label (`StationIndex` arrays)."""
    return gpd.GeoDataFrame(
        {"station_district": pd.array(list(districts), dtype="string")},
        geometry=gpd.points_from_xy(x, y),
        crs=PROJECTED_CRS,
    )


def nearest_station(
    x: np.ndarray, y: np.ndarray, stations: gpd.GeoDataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """Meters to, and district of, the nearest station (`sjoin_nearest`); NaN in -> NaN/None."""
    x = np.asarray(x, dtype="float64")
    y = np.asarray(y, dtype="float64")
    distance = np.full(x.size, np.nan)
    district = np.full(x.size, None, dtype=object)
    ok = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    if ok.size == 0:
        return distance, district
    points = gpd.GeoDataFrame(geometry=gpd.points_from_xy(x[ok], y[ok]), crs=PROJECTED_CRS)
    joined = gpd.sjoin_nearest(points, stations, how="left", distance_col="feet")
    # Equidistant stations give several rows per point; the first (lowest station row) wins.
    joined = joined[~joined.index.duplicated(keep="first")].sort_index()
    distance[ok] = joined["feet"].to_numpy(dtype="float64") * US_SURVEY_FOOT_M
    district[ok] = joined["station_district"].to_numpy(dtype=object)
    return distance, district


def nearest_station_features(
    frame: pd.DataFrame, stations: gpd.GeoDataFrame
) -> dict[str, pd.Series]:
    """The station columns of `enrich.station_features`, computed with `sjoin_nearest`."""
    x, y = state_plane_xy(frame)
    distance, district = nearest_station(x, y, stations)
    return {
        "station_distance_m": pd.Series(distance, index=frame.index, dtype="float64"),
        "nearest_station_district": pd.Series(district, index=frame.index, dtype="string"),
    }
