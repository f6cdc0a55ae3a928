"""Boundary layers from the SODA stand-in: generated ones cover the generator, real ones pass."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests

from crimeflow.contract.settings import SocrataSettings
from crimeflow.domain.geography import (
    LAYERS,
    area_counts,
    boundaries_from_geojson,
    check_layers,
)
from crimeflow.standins.boundaries import boundaries_from_folder, generated_boundaries
from crimeflow.standins.generate import generate_incidents, write_incidents
from crimeflow.standins.soda import StandinServer, serve_forever
from crimeflow.stores.socrata import SodaError, SodaSource


@pytest.fixture(scope="module")
def incidents() -> pd.DataFrame:
    """Two generated months (10k rows)."""
    return generate_incidents("2024-01", "2024-02", rows_per_month=5_000, seed=3)


def test_generated_layers_cover_the_generator(incidents: pd.DataFrame) -> None:
    """Every generated point lies in a generated district and area; most report the same one."""
    layers = {
        name: boundaries_from_geojson(data, LAYERS[name])
        for name, data in generated_boundaries().items()
    }
    assert len(layers["police_districts"]) == 22
    checks = check_layers(incidents, layers)
    has_point = incidents["x_coordinate"].notna().to_numpy()
    for check in checks:
        assert check.located.notna().to_numpy()[has_point].all(), check.layer.name
    counts = area_counts(checks)
    # Points are drawn around their beat's centre, so a few cross into a neighbouring cell.
    assert 0 < counts["district_disagrees"] < 0.10 * len(incidents)
    assert counts["community_area_disagrees"] < 0.30 * len(incidents)


@pytest.fixture
def soda(incidents: pd.DataFrame) -> Iterator[tuple[StandinServer, SodaSource]]:
    """A stand-in serving generated boundaries, and a client pointed at it."""
    with StandinServer(incidents) as server:
        yield server, SodaSource(SocrataSettings(url=server.url, max_retries=0))


def test_standin_serves_generated_layers_to_sodapy(soda: tuple[StandinServer, SodaSource]) -> None:
    """`fetch_geojson` gets both layers through sodapy's .geojson resource."""
    _, source = soda
    defaults = SocrataSettings()
    districts = source.fetch_geojson(defaults.districts_dataset)
    areas = source.fetch_geojson(defaults.community_areas_dataset)
    assert len(boundaries_from_geojson(districts, LAYERS["police_districts"])) == 22
    assert len(boundaries_from_geojson(areas, LAYERS["community_areas"])) > 50


def test_unknown_boundary_dataset_is_named(soda: tuple[StandinServer, SodaSource]) -> None:
    """A wrong dataset id fails at once (404 is not retried) with the id and URL in the error."""
    _, source = soda
    with pytest.raises(SodaError, match=r"abcd-1234.*HTTP 404.*abcd-1234\.geojson"):
        source.fetch_geojson("abcd-1234")


def test_standin_serves_the_real_files(real_data_dir: Path, incidents: pd.DataFrame) -> None:
    """Given the real folder, the stand-in serves the portal's 77 areas and 23 districts."""
    boundaries = boundaries_from_folder(real_data_dir / "geo")
    with StandinServer(incidents, boundaries=boundaries) as server:
        source = SodaSource(SocrataSettings(url=server.url, max_retries=0))
        areas = source.fetch_geojson(SocrataSettings().community_areas_dataset)
        districts = source.fetch_geojson(SocrataSettings().districts_dataset)
    assert len(boundaries_from_geojson(areas, LAYERS["community_areas"])) == 77
    assert len(boundaries_from_geojson(districts, LAYERS["police_districts"])) == 23


def test_a_folder_without_the_files_is_refused(tmp_path: Path) -> None:
    """The error names the missing files."""
    (tmp_path / "police_districts.geojson").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"community_areas\.geojson"):
        boundaries_from_folder(tmp_path)


def test_soda_serve_with_a_boundaries_folder(
    real_data_dir: Path, incidents: pd.DataFrame, tmp_path: Path
) -> None:
    """`crimeflow soda serve --boundaries DIR`'s function serves that folder's files."""
    crimes = write_incidents(incidents.head(100), tmp_path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    stop = threading.Event()
    kwargs = {"port": port, "boundaries_dir": real_data_dir / "geo", "until": stop}
    thread = threading.Thread(target=serve_forever, args=(crimes,), kwargs=kwargs, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{port}/resource/{SocrataSettings().districts_dataset}.geojson"
        for _ in range(100):
            try:
                answer = requests.get(url, timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert answer.headers["Content-Type"].startswith("application/vnd.geo+json")
        assert answer.content == (real_data_dir / "geo" / "police_districts.geojson").read_bytes()
    finally:
        stop.set()
        thread.join(timeout=10)
