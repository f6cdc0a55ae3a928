"""`crimeflow doctor` on real local services: what passes, what fails, the setting to change.

The healthy case with every service up, Prefect and an MLflow tracking server included, runs
beside `crimeflow up` in tests/e2e/test_up.py.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from crimeflow.cli.doctor import checks, diagnose, run_checks
from crimeflow.cli.processes import free_port
from crimeflow.contract.redact import MASK
from crimeflow.contract.settings import Settings, child_environment
from crimeflow.standins.generate import generate_incidents
from crimeflow.standins.soda import StandinServer

CRIMEFLOW = str(Path(sys.executable).with_name("crimeflow"))
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def soda_url() -> Iterator[str]:
    """The SODA stand-in with one small generated month."""
    with StandinServer(generate_incidents("2024-01", "2024-01", rows_per_month=50, seed=1)) as soda:
        yield soda.url


@pytest.fixture
def redis_url() -> str:
    """The local Redis (skips when it is not running)."""
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        pytest.skip(f"no Redis at {REDIS_URL}: {error}")
    return REDIS_URL


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a hung service)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield server.getsockname()[1]


def statuses(settings: Settings) -> dict[str, str]:
    """Each check's name and status."""
    found = checks(settings)
    return {c.name: r.status for c, r in zip(found, run_checks(found), strict=True)}


def test_local_services_pass(registry_settings, soda_url, redis_url, tmp_path):
    settings = registry_settings.replace(
        socrata_url=soda_url,
        redis_url=SecretStr(redis_url),
        prefect_api_url=f"http://127.0.0.1:{free_port()}/api",
    )
    lines: list[str] = []
    assert diagnose(settings, lines.append) is False  # Prefect is not running here
    by_name = {line.split()[1]: line for line in lines}
    assert lines[0].startswith("FAIL  Prefect API")
    for name in ("MLflow", "lake", "prediction", "Redis", "Socrata"):
        assert by_name[name].startswith("OK "), lines
    assert "model 'chicago-arrest' registered" in by_name["MLflow"]


def test_an_s3_lake_passes_when_its_bucket_answers(s3_settings):
    assert statuses(s3_settings)["lake"] == "OK"
    missing = s3_settings.replace(lake_url="s3://no-such-bucket-here/lake")
    assert statuses(missing)["lake"] == "FAIL"


def test_a_lake_that_is_a_file_fails_and_a_new_folder_passes(tmp_path):
    lake = tmp_path / "lake"
    lake.write_text("not a folder")
    settings = Settings(home=tmp_path / "home", lake_url=str(lake), _env_file=None)
    assert statuses(settings)["lake"] == "FAIL"
    fresh = settings.replace(lake_url=str(tmp_path / "new" / "lake"))
    assert statuses(fresh)["lake"] == "OK"
    assert not (tmp_path / "new").exists()  # the doctor creates nothing


def test_a_broken_configuration_names_every_setting_in_bounded_time(tmp_path, silent_port):
    closed = free_port()
    hung = f"127.0.0.1:{silent_port}"
    env = {k: v for k, v in child_environment({}).items() if not k.startswith("CRIMEFLOW_")}
    env.update(
        CRIMEFLOW_HOME=str(tmp_path / "home"),
        # Hung services (they accept and never answer) and closed ports; passwords to mask.
        CRIMEFLOW_PREFECT_API_URL=f"http://{hung}/api",
        CRIMEFLOW_MLFLOW_TRACKING_URI=f"http://mlflow:pw-mlflow@{hung}",
        CRIMEFLOW_LAKE_URL="s3://lake/crimes",
        CRIMEFLOW_S3_ENDPOINT_URL=f"http://127.0.0.1:{closed}",
        CRIMEFLOW_S3_ACCESS_KEY_ID="key",
        CRIMEFLOW_S3_SECRET_ACCESS_KEY="pw-s3",
        CRIMEFLOW_PREDICTION_LOG_URL=f"postgresql+psycopg://log:pw-log@127.0.0.1:{closed}/log",
        CRIMEFLOW_REDIS_URL=f"redis://:pw-redis@{hung}/0",
        CRIMEFLOW_SOCRATA_URL=f"http://{hung}",
    )
    began = time.monotonic()
    done = subprocess.run(
        [CRIMEFLOW, "doctor"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    elapsed = time.monotonic() - began
    assert done.returncode == 1, done.stdout + done.stderr
    assert elapsed < 15, elapsed
    lines = done.stdout.strip().splitlines()
    settings = {
        "Prefect API": "CRIMEFLOW_PREFECT_API_URL",
        "MLflow": "CRIMEFLOW_MLFLOW_TRACKING_URI",
        "lake": "CRIMEFLOW_LAKE_URL",
        "prediction log": "CRIMEFLOW_PREDICTION_LOG_URL",
        "Redis": "CRIMEFLOW_REDIS_URL",
        "Socrata": "CRIMEFLOW_SOCRATA_URL",
    }
    assert len(lines) == len(settings), done.stdout
    for line, (name, setting) in zip(lines, settings.items(), strict=True):
        assert re.match(rf"FAIL +{name} ", line), line
        assert f"set {setting}" in line, line
    assert "pw-" not in done.stdout + done.stderr
    assert f"http://mlflow:{MASK}@{hung}" in done.stdout
