"""Chicago's police districts and community areas as GeoDataFrames, and their lake form.

Socrata serves each boundary set as GeoJSON in EPSG:4326 with its own property names
(`dist_num` for districts, `area_numbe` for community areas). Everything else in crimeflow sees
one shape per layer: a GeoDataFrame in EPSG:3435 (Illinois State Plane East, US feet, the CRS of
the incidents' `x_coordinate`/`y_coordinate`) with the layer's integer id column (named like the
incident column it matches: `district`, `community_area`), a `name`, and the geometry.

The lake keeps a layer as a plain frame (`id`, `name`, hex WKB geometry in EPSG:3435), so it goes
through the same atomic, idempotent Parquet writes as every other partition.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import pandas as pd
import shapely

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
