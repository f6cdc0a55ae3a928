"""Prefect tasks of the Socrata pull: the network edge, logging progress to the run."""

from __future__ import annotations

import logging
from typing import Any

import geopandas as gpd
import pandas as pd
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

from crimeflow.contract.schema import SODA_COLUMNS
from crimeflow.contract.settings import SocrataSettings
from crimeflow.domain.etl_run import LateUpdates, late_rows_by_month
from crimeflow.domain.geography import (
    COMMUNITY_AREAS,
    POLICE_DISTRICTS,
    BoundaryLayer,
    boundaries_from_geojson,
)
from crimeflow.domain.ingest import EtlState
from crimeflow.stores.boundaries import read_boundaries
from crimeflow.stores.etl_run import late_updates_where
from crimeflow.stores.files import STATION_COLUMNS
from crimeflow.stores.lake import Lake
from crimeflow.stores.socrata import ProgressCallback, SodaError, SodaSource
from tasks import step

_log = logging.getLogger(__name__)

Logger = logging.Logger | logging.LoggerAdapter[Any]


def _run_logger() -> Logger:
    """The Prefect run logger inside a run; the module logger when called outside one."""
    try:
        return get_run_logger()
    except MissingContextError:
        return _log


def _log_progress(logger: Logger, what: str) -> ProgressCallback:
    """An `on_progress` callback that logs 'page 3: 150,000 rows so far'."""

    def report(pages: int, rows: int) -> None:
        logger.info("%s page %d: %s rows so far", what, pages, f"{rows:,}")

    return report


# No Prefect `retries=` on these tasks: every page already retries with backoff, and a task
# retry would restart the pull from offset 0 and multiply attempts against a struggling server.
def _pull_crimes(soda: SocrataSettings, where: str) -> pd.DataFrame:
    """The crimes matching a SoQL `$where`, every contract column, as raw strings."""
    logger = _run_logger()
    logger.info("extracting crimes where %s", where)
    source = SodaSource(soda, logger=logger)
    frame = source.fetch(
        soda.crimes_dataset,
        where,
        SODA_COLUMNS,
        on_progress=_log_progress(logger, "crimes"),
    )
    logger.info("extracted %s crime rows", f"{len(frame):,}")
    return frame


@step(name="extract-crimes")
def extract_crimes(soda: SocrataSettings, where: str) -> pd.DataFrame:
    """Pull the crimes matching a SoQL `$where`, every contract column, as raw strings."""
    return _pull_crimes(soda, where)


@step(name="extract-late-updates")
def extract_late_updates(soda: SocrataSettings, state: EtlState, months: list[str]) -> LateUpdates:
    """Re-pull the rows of ingested months updated since the watermark (late arrests), by month;
    nothing on a first run. Its size follows the updates since the last run, not the lake's."""
    where = late_updates_where(state, months)
    if where is None:
        return LateUpdates(pulled=0, by_month={})
    rows = _pull_crimes(soda, where)
    return LateUpdates(pulled=len(rows), by_month=late_rows_by_month(rows, state.months, months))


@step(name="extract-stations")
def extract_stations(soda: SocrataSettings) -> pd.DataFrame:
    """Pull the police stations (the station fields only), as raw strings."""
    logger = _run_logger()
    source = SodaSource(soda, logger=logger)
    frame = source.fetch(
        soda.stations_dataset,
        None,
        STATION_COLUMNS,
        on_progress=_log_progress(logger, "stations"),
    )
    logger.info("extracted %s police stations", f"{len(frame):,}")
    return frame


def _boundary_datasets(soda: SocrataSettings) -> dict[BoundaryLayer, str]:
    """The Socrata dataset id of each boundary layer (an empty id turns the layer off)."""
    return {POLICE_DISTRICTS: soda.districts_dataset, COMMUNITY_AREAS: soda.community_areas_dataset}


@step(name="extract-boundaries")
def extract_boundaries(soda: SocrataSettings, lake: Lake) -> dict[str, gpd.GeoDataFrame]:
    """Pull the police-district and community-area layers (GeoJSON) as EPSG:3435 GeoDataFrames.

    A layer the portal cannot give now (unreachable, or a broken answer) comes from the lake's
    last stored copy; a layer it never gave is left out, and the run neither fills nor flags
    that column (logged as a warning, the run goes on: the areas are not required fields).
    """
    logger = _run_logger()
    source = SodaSource(soda, logger=logger)
    layers: dict[str, gpd.GeoDataFrame] = {}
    for layer, dataset in _boundary_datasets(soda).items():
        if not dataset:
            logger.info("%s: no dataset id set, not used", layer.name)
            continue
        try:
            layers[layer.name] = boundaries_from_geojson(source.fetch_geojson(dataset), layer)
            logger.info(
                "%s: %d shapes from dataset %s", layer.name, len(layers[layer.name]), dataset
            )
            continue
        except (SodaError, ValueError) as error:
            problem = str(error)
        stored = read_boundaries(lake, layer)
        if stored is None:
            logger.warning(
                "%s: %s; no stored copy, %s is not checked", layer.name, problem, layer.id_column
            )
            continue
        logger.warning("%s: %s; using the lake's stored copy", layer.name, problem)
        layers[layer.name] = stored
    return layers
