"""The issue's acceptance run, as a user types it: `crimeflow soda serve` + `crimeflow etl`."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import requests

from crimeflow.contract.schema import to_canonical
from crimeflow.contract.settings import child_environment
from crimeflow.stores.lake import CLEAN_CRIMES, FEATURES, QUARANTINE_CRIMES, RAW_CRIMES, Lake

pytestmark = [pytest.mark.e2e, pytest.mark.real_data, pytest.mark.slow]

CRIMEFLOW = str(Path(sys.executable).with_name("crimeflow"))
FILE_2018 = "crimes_2018-01_to_2018-10_chicagocrimedata-datastore.csv.gz"
ZONES = (RAW_CRIMES, CLEAN_CRIMES, QUARANTINE_CRIMES, FEATURES)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(url: str, process: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the stand-in exited early"
        try:
            if requests.get(f"{url}/resource/z8bn-74gv.json", timeout=2).ok:
                return
        except requests.ConnectionError:
            time.sleep(0.5)
    raise TimeoutError(f"stand-in at {url} did not answer within {timeout_s} s")


def test_etl_of_march_2018_through_the_standin_is_complete_and_idempotent(real_data_dir, tmp_path):
    source = real_data_dir / FILE_2018
    url = f"http://127.0.0.1:{free_port()}"
    env = child_environment(
        {
            "CRIMEFLOW_HOME": str(tmp_path / "home"),
            "CRIMEFLOW_SOCRATA_URL": url,
            "PREFECT_HOME": str(tmp_path / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
    )
    port = url.rsplit(":", 1)[1]
    serve = [CRIMEFLOW, "soda", "serve", "--crimes", str(source), "--port", port]
    serve += ["--boundaries", str(real_data_dir / "geo")]  # the portal's layers, not generated
    server = subprocess.Popen(serve, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_serving(url, server)
        etl = [CRIMEFLOW, "etl", "--month", "2018-03"]
        first = subprocess.run(etl, env=env, capture_output=True, text=True, timeout=600)
        assert first.returncode == 0, first.stderr[-3000:]
        lake = Lake(str(tmp_path / "home" / "lake"))
        hashes = {zone: lake.content_hash(zone, "2018-03") for zone in ZONES}
        second = subprocess.run(etl, env=env, capture_output=True, text=True, timeout=600)
        assert second.returncode == 0, second.stderr[-3000:]
    finally:
        server.terminate()
        server.wait(timeout=30)

    frame = to_canonical(pd.read_csv(source, dtype=str))
    source_rows = int((frame["date"].dt.strftime("%Y-%m") == "2018-03").sum())
    assert source_rows == 21_074
    clean = lake.read(CLEAN_CRIMES, "2018-03")
    quarantined = lake.read(QUARANTINE_CRIMES, "2018-03")
    assert len(clean) == source_rows - len(quarantined)
    assert len(lake.read(FEATURES, "2018-03")) == len(clean)
    assert "2018-03: pulled 21,074" in first.stdout
    assert "changed=False" in second.stdout
    assert {zone: lake.content_hash(zone, "2018-03") for zone in ZONES} == hashes
