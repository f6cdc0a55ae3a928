"""Shared fixtures: the real-data folder and an S3-compatible moto server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crimeflow.contract.settings import Settings
from tests.production import POSTGRES_ADMIN_DSN, postgres_database

REAL_DATA_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
# Ten full months of 2018 in the Socrata export format (../shared/data/real/SOURCES.md, file 1).
FILE_2018 = "crimes_2018-01_to_2018-10_chicagocrimedata-datastore.csv.gz"
S3_BUCKET = "crimeflow-test"
S3_VERSIONED_BUCKET = "crimeflow-test-versioned"
S3_CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, modules marked `minutes` go first (each module's tests stay together).

    Collected last, a 3-minute module left one worker busy for minutes after the other had
    run out of tests. Without xdist the order is left alone.
    """
    if not config.getoption("numprocesses", default=None):
        return
    heavy = {item.module for item in items if item.get_closest_marker("minutes")}
    items.sort(key=lambda item: item.module not in heavy)  # stable: the rest keep their order


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """../shared/data/real (real Chicago files); skips the test when the folder is absent."""
    if not REAL_DATA_DIR.is_dir():
        pytest.skip(f"real data not available at {REAL_DATA_DIR}")
    return REAL_DATA_DIR.resolve()


@pytest.fixture(scope="session")
def real_boundaries(real_data_dir: Path) -> dict[str, Any]:
    """The real police districts and community areas as GeoDataFrames (EPSG:3435), by layer."""
    from crimeflow.domain.geography import LAYERS, boundaries_from_geojson

    return {
        name: boundaries_from_geojson(
            (real_data_dir / "geo" / f"{name}.geojson").read_bytes(), layer
        )
        for name, layer in LAYERS.items()
    }


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of a moto S3 server on 127.0.0.1 (a free port), running for the whole session."""
    moto_server = pytest.importorskip("moto.server")
    # The server logs every request through werkzeug; that would bury real failure output.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_client(s3_endpoint: str) -> Any:
    """A boto3 S3 client for the moto server (to inspect or tamper with objects directly)."""
    boto3 = pytest.importorskip("boto3")
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **S3_CREDENTIALS)


def _s3_lake_settings(endpoint: str, client: Any, home: Path, bucket: str) -> Settings:
    """Settings whose lake is a fresh prefix of `bucket` on the moto server."""
    # Created per test, not per session: a `mock_aws()` elsewhere in the process resets moto's
    # in-memory backends, bucket included (re-creating an owned bucket is a no-op in us-east-1).
    client.create_bucket(Bucket=bucket)
    return Settings(
        home=home,
        lake_url=f"s3://{bucket}/{uuid.uuid4().hex}",
        s3_endpoint_url=endpoint,
        s3_access_key_id=S3_CREDENTIALS["aws_access_key_id"],
        s3_secret_access_key=S3_CREDENTIALS["aws_secret_access_key"],
    )


@pytest.fixture
def s3_settings(s3_endpoint: str, s3_client: Any, tmp_path: Path) -> Settings:
    """Settings whose lake is a fresh `s3://crimeflow-test/<uuid>` prefix on the moto server."""
    return _s3_lake_settings(s3_endpoint, s3_client, tmp_path / "home", S3_BUCKET)


@pytest.fixture
def s3_versioned_settings(s3_endpoint: str, s3_client: Any, tmp_path: Path) -> Settings:
    """Like `s3_settings`, in a versioned bucket: tests can prove an object was not rewritten."""
    # Kept apart from the plain bucket: moto lists prefixes that hold only delete markers
    # (deleted temp objects) as folders in versioned buckets, which real S3 does not.
    settings = _s3_lake_settings(s3_endpoint, s3_client, tmp_path / "home", S3_VERSIONED_BUCKET)
    s3_client.put_bucket_versioning(
        Bucket=S3_VERSIONED_BUCKET, VersioningConfiguration={"Status": "Enabled"}
    )
    return settings


# --- a throwaway PostgreSQL database ----------------------------------------------------------


@contextlib.contextmanager
def fresh_postgres_database(prefix: str) -> Iterator[str]:
    """SQLAlchemy URL of a new database on 127.0.0.1, dropped afterwards (skips if unreachable)."""
    psycopg = pytest.importorskip("psycopg")
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(postgres_database(prefix))
        except psycopg.OperationalError as error:
            pytest.skip(f"PostgreSQL is not reachable ({POSTGRES_ADMIN_DSN}): {error}")
        yield url


# --- a real MLflow registry with a trained champion ------------------------------------------


def register_model(settings: Settings, *, seed: int = 5, aliases: tuple[str, ...] = ()) -> str:
    """Train a small logistic-regression model on generated data and register it; its version."""
    import mlflow

    from crimeflow.domain.model import SKOPS_TRUSTED_TYPES, ModelConfig, time_split, train_model
    from crimeflow.standins.generate import generate_incidents
    from crimeflow.stores.registry import (
        ensure_experiment,
        mlflow_client,
        record_content_hash,
        set_alias,
    )

    frame = generate_incidents("2024-01", "2024-03", rows_per_month=1500, seed=seed)
    train, valid, _ = time_split(frame, 1, 0)
    config = ModelConfig(classifier="logistic_regression", n_jobs=1)
    trained = train_model(train, valid, config)
    client = mlflow_client(settings)
    with mlflow.start_run(experiment_id=ensure_experiment(client, settings)):
        mlflow.log_metrics({"holdout.model.roc_auc": trained.validation["roc_auc"]})
        info = mlflow.sklearn.log_model(
            trained.estimator,
            name="model",
            serialization_format="skops",
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
            registered_model_name=settings.model_name,
        )
    version = str(info.registered_model_version)
    record_content_hash(client, settings, version)
    for alias in aliases:
        set_alias(client, settings.model_name, alias, version)
    return version


@pytest.fixture(scope="session")
def registry_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CRIMEFLOW_HOME whose embedded MLflow registry has `chicago-arrest` v1 as champion.

    Session-scoped because training and logging take seconds; tests that move aliases or add
    versions must copy it first (`registry_settings` does).
    """
    home = tmp_path_factory.mktemp("registry") / "home"
    register_model(Settings(home=home, _env_file=None), aliases=("champion", "challenger"))
    return home


@pytest.fixture
def registry_settings(registry_home: Path, tmp_path: Path) -> Settings:
    """Settings on a private copy of `registry_home` (champion v1), safe to change."""
    import shutil

    home = tmp_path / "home"
    shutil.copytree(registry_home, home)
    # The artifact root is absolute inside the copied database; keep serving the originals.
    return Settings(
        home=home,
        mlflow_artifact_root=(registry_home / "mlartifacts").resolve().as_uri(),
        _env_file=None,
    )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of a fresh PostgreSQL database, dropped after the session."""
    with fresh_postgres_database("crimeflow_test") as url:
        yield url
