"""The ETL's geography: boundary layers pulled over HTTP, areas filled and flagged, stored copy."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from crimeflow.contract.settings import Settings
from crimeflow.domain.geography import COMMUNITY_AREAS, POLICE_DISTRICTS
from crimeflow.standins.generate import generate_incidents
from crimeflow.standins.soda import StandinServer
from crimeflow.stores.boundaries import read_boundaries
from crimeflow.stores.lake import CLEAN_CRIMES, RAW_CRIMES, Lake
from flows.etl import monthly_etl

BLANKED = 40


@pytest.fixture(scope="module")
def incidents() -> pd.DataFrame:
    """One generated month; 40 rows with a point lose their community area, 40 their district."""
    frame = generate_incidents("2024-03", "2024-03", rows_per_month=1_500, seed=5)
    with_point = np.flatnonzero(frame["x_coordinate"].notna().to_numpy())
    frame["community_area"] = frame["community_area"].astype("Int64")
    frame.loc[frame.index[with_point[:BLANKED]], "community_area"] = pd.NA
    frame["district"] = frame["district"].astype("string")
    frame.loc[frame.index[with_point[BLANKED : 2 * BLANKED]], "district"] = pd.NA
    return frame


def test_areas_are_filled_and_flagged_and_layers_stored(
    incidents: pd.DataFrame, configure: Callable[..., Settings]
) -> None:
    """Blank areas come back from the point; the raw zone keeps the blanks; layers are stored."""
    with StandinServer(incidents) as server:
        settings = configure(socrata_url=server.url)
        summary = monthly_etl(month="2024-03")
    [month] = summary["months"]
    lake = Lake.from_settings(settings)
    clean = lake.read(CLEAN_CRIMES, "2024-03")
    raw = lake.read(RAW_CRIMES, "2024-03")
    # Without filling, the 40 rows missing their district would be quarantined (required field).
    assert month["district_filled"] == BLANKED
    assert month["community_area_filled"] == BLANKED
    assert clean["district"].notna().all()
    assert clean["community_area"].isna().sum() == 0
    assert (raw["district"].isna() | (raw["district"] == "")).sum() == BLANKED
    # The generated layers roughly follow the generator's beats: some rows disagree, most not.
    assert 0 < month["district_disagrees"] < 0.1 * month["clean"]
    for layer in (POLICE_DISTRICTS, COMMUNITY_AREAS):
        stored = read_boundaries(lake, layer)
        assert stored is not None and len(stored) > 20


def test_an_unreachable_layer_falls_back_to_the_stored_copy(
    incidents: pd.DataFrame, configure: Callable[..., Settings]
) -> None:
    """A second run whose boundary ids answer 404 uses the layers the first run stored."""
    with StandinServer(incidents) as server:
        configure(socrata_url=server.url)
        first = monthly_etl(month="2024-03")
        configure(
            socrata_url=server.url,
            socrata_districts_dataset="gone-0001",
            socrata_community_areas_dataset="gone-0002",
            socrata_max_retries=0,
        )
        second = monthly_etl(month="2024-03")
    geo = ("district_filled", "district_disagrees", "community_area_filled")
    assert [second["months"][0][k] for k in geo] == [first["months"][0][k] for k in geo]
