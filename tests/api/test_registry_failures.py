"""The API when the registry or the log fails: masked reasons, generic log errors, and a newer
champion that fails to load while the old one keeps serving (ready, with the detail)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from litestar.testing import TestClient

from api.app import LOG_UNAVAILABLE, create_app
from api.model_service import ModelHolder, in_daemon_thread
from crimeflow.contract.settings import Settings
from crimeflow.stores.registry import CHAMPION, CONTENT_HASH_TAG, mlflow_client, set_alias
from tests.api.test_app import API_KEY, OTHER, copy_home
from tests.conftest import register_model
from tests.stores.test_model_integrity import closed_port

ADMIN = {"X-API-Key": API_KEY}


def wait_logged(capsys: pytest.CaptureFixture[str]) -> str:
    """What the API logged so far (its lines are written by a background thread)."""
    time.sleep(0.3)
    return capsys.readouterr().err


def test_credentials_never_reach_bodies_or_logs(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Trust auth on the test server ignores the password; the clients still carry it.
    log_url = postgres_url.replace("://postgres@", "://postgres:dbpa55word@")
    settings = Settings(
        home=tmp_path / "home",
        mlflow_tracking_uri=f"http://ops:mlpa55word@127.0.0.1:{closed_port()}",
        prediction_log_url=log_url,
        api_key=API_KEY,
        _env_file=None,
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        answers = [
            ready,
            client.get("/model"),
            client.post("/predict", json=OTHER),
            client.post("/predict/batch", json=[OTHER]),
            client.post("/admin/reload", headers=ADMIN),
        ]
    assert [r.status_code for r in answers] == [503] * 5
    detail = ready.json()["detail"]
    assert "unreachable" in detail and "CRIMEFLOW_MLFLOW_TRACKING_URI" in detail
    assert "ops:********@127.0.0.1" in detail  # the URL is still named, masked
    logged = wait_logged(capsys)
    assert "serving without a model" in logged
    for text in [r.text for r in answers] + [logged]:
        assert "mlpa55word" not in text and "dbpa55word" not in text


def test_a_log_database_error_reaches_clients_as_a_generic_reason(
    registry_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = copy_home(registry_home, tmp_path / "home")
    with TestClient(create_app(settings)) as client:
        assert client.post("/predict", json=OTHER).status_code == 200
        database = settings.prediction_log.url.removeprefix("sqlite:///")
        with sqlite3.connect(database) as connection:
            connection.execute("DROP TABLE predictions")
        response = client.post("/predict", json=OTHER)
    assert response.status_code == 503
    assert response.json()["detail"] == LOG_UNAVAILABLE  # nothing of the driver's message
    assert "no such table" in wait_logged(capsys)  # the detail is in the server log


@pytest.fixture
def broken_v2(registry_home: Path, tmp_path: Path) -> Settings:
    """A registry copy: v1 champion, v2 registered without its integrity record."""
    settings = copy_home(registry_home, tmp_path / "home")
    version = register_model(settings, seed=7)
    client = mlflow_client(settings)
    client.delete_model_version_tag(settings.model_name, version, CONTENT_HASH_TAG)
    return settings


def test_a_champion_that_fails_to_load_is_reported_while_the_old_one_serves(
    broken_v2: Settings,
) -> None:
    with TestClient(create_app(broken_v2)) as client:
        assert client.get("/ready").json()["detail"] is None
        set_alias(mlflow_client(broken_v2), broken_v2.model_name, CHAMPION, "2")
        reload = client.post("/admin/reload", headers=ADMIN)
        ready = client.get("/ready")
        model = client.get("/model").json()
        prediction = client.post("/predict", json=OTHER)
    assert reload.status_code == 503
    expected = "champion version 2 failed to load"
    assert expected in reload.json()["detail"]
    # Still serving v1 is ready (every replica would fail the same load), with the detail.
    assert ready.status_code == 200 and ready.json()["model_version"] == "1"
    detail = ready.json()["detail"]
    assert expected in detail and CONTENT_HASH_TAG in detail and "serving version 1" in detail
    assert model["version"] == "1" and prediction.json()["model_version"] == "1"


# --- the holder ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_readiness_says_loading_until_the_first_attempt_ends() -> None:
    release = threading.Event()

    def slow_resolver(settings: Settings, alias: str) -> str | None:
        release.wait(5)
        return None

    holder = ModelHolder(Settings(_env_file=None), resolver=slow_resolver)
    task = asyncio.create_task(holder.reload())
    await asyncio.sleep(0.05)
    assert holder.status_detail() == "loading the model (champion of 'chicago-arrest')"
    release.set()
    await task
    assert "no version of 'chicago-arrest' has alias 'champion'" in str(holder.status_detail())


@pytest.mark.anyio
async def test_a_hanging_registry_call_is_abandoned_when_cancelled() -> None:
    release = threading.Event()
    task = asyncio.create_task(in_daemon_thread(release.wait, 60))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1  # the thread still blocks; nobody waits for it
    release.set()


@pytest.mark.anyio
async def test_in_daemon_thread_returns_and_raises_like_a_call() -> None:
    assert await in_daemon_thread(lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(ZeroDivisionError):
        await in_daemon_thread(lambda: 1 / 0)
