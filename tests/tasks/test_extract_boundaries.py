"""extract-boundaries: the portal's layers, else the lake's stored copy, else left out."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from crimeflow.contract.settings import SocrataSettings
from crimeflow.domain.geography import POLICE_DISTRICTS
from crimeflow.standins.generate import generate_incidents
from crimeflow.standins.soda import StandinServer
from crimeflow.stores.boundaries import write_boundaries
from crimeflow.stores.lake import Lake
from tasks.extract import extract_boundaries


@pytest.fixture(scope="module")
def crimes() -> pd.DataFrame:
    """A small generated month for the stand-in to serve."""
    return generate_incidents("2024-01", "2024-01", rows_per_month=50, seed=1)


def test_layers_come_from_the_portal_then_from_the_stored_copy(
    crimes: pd.DataFrame, tmp_path: Path
) -> None:
    """Both layers over HTTP; with wrong ids the stored district layer is used, areas skipped."""
    lake = Lake(str(tmp_path / "lake"))
    with StandinServer(crimes) as server:
        soda = SocrataSettings(url=server.url, max_retries=0)
        pulled = extract_boundaries.fn(soda, lake)
        assert sorted(pulled) == ["community_areas", "police_districts"]
        write_boundaries(lake, POLICE_DISTRICTS, pulled["police_districts"])
        broken = soda.model_copy(
            update={"districts_dataset": "gone-0001", "community_areas_dataset": "gone-0002"}
        )
        fallback = extract_boundaries.fn(broken, lake)
    assert list(fallback) == ["police_districts"]
    assert fallback["police_districts"]["district"].tolist() == (
        pulled["police_districts"]["district"].tolist()
    )


def test_empty_dataset_ids_turn_the_layers_off(tmp_path: Path) -> None:
    """No request is made (the URL points nowhere) and no layer comes back."""
    soda = SocrataSettings(
        url="http://127.0.0.1:9", districts_dataset="", community_areas_dataset="", max_retries=0
    )
    assert extract_boundaries.fn(soda, Lake(str(tmp_path / "lake"))) == {}
