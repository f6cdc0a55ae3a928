"""API state shared across workers: rate-limit windows in a real Redis, the metrics folder.

Redis is the one on 127.0.0.1:6379 (skipped when it does not answer); every test counts under
its own key prefix and deletes it afterwards, so runs in parallel do not meet.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from api import app as api_app
from api.app import create_app
from api.observability import API_LOGGER, RedisFixedWindowRateLimitMiddleware, RedisWindows
from crimeflow.cli.processes import free_port
from crimeflow.contract.settings import Settings
from tests.api.test_app import OTHER, copy_home, predict

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def app_settings(registry_home: Path, tmp_path: Path) -> Settings:
    """A private registry copy (chicago-arrest v1 is champion) and a SQLite log."""
    return copy_home(registry_home, tmp_path / "home")


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test alone; its keys are deleted afterwards."""
    try:
        SyncRedis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    prefix = f"crimeflow-test:{uuid.uuid4().hex}:"
    yield prefix
    redis = SyncRedis.from_url(REDIS_URL)
    keys = list(redis.scan_iter(match=prefix + "*"))
    if keys:
        redis.delete(*keys)
    redis.close()


def redis_app(settings: Settings, prefix: str) -> Litestar:
    """An app that counts its windows in the test Redis, under `prefix`."""
    app = create_app(settings.replace(redis_url=_secret(REDIS_URL)))
    app.state[RedisFixedWindowRateLimitMiddleware.STATE_KEY].prefix = prefix
    return app


def _secret(url: str) -> Any:
    """The URL as the settings hold it (a secret: it may carry a password)."""
    return Settings(redis_url=url, _env_file=None).api.redis_url


# --- the window logic, against the real Redis -----------------------------------------------


def test_windows_count_per_client_and_expire(prefix: str) -> None:
    async def run() -> list[tuple[int, int]]:
        redis = Redis.from_url(REDIS_URL)
        # Two instances: two workers sharing one Redis.
        first, second = RedisWindows(redis, prefix), RedisWindows(redis, prefix)
        seen = [await first.hit("a", 60), await second.hit("a", 60), await first.hit("b", 60)]
        ttl = await redis.ttl(prefix + "a")
        short = [await first.hit("c", 1), await first.hit("c", 1)]
        await asyncio.sleep(2.1)
        seen += [*short, await first.hit("c", 1), (ttl, -1)]
        await redis.aclose()
        return seen

    a1, a2, b1, c1, c2, c_after, (ttl, _) = asyncio.run(run())
    assert [a1[0], a2[0], b1[0]] == [1, 2, 1]
    assert 0 < a2[1] <= 60 and 0 < ttl <= 60  # namespaced keys that expire with their window
    assert [c1[0], c2[0], c_after[0]] == [1, 2, 1]  # a new window after the old one expired


def test_a_limit_holds_across_apps_sharing_redis(app_settings: Settings, prefix: str) -> None:
    settings = app_settings.replace(rate_limit_per_minute=3)
    with (
        TestClient(redis_app(settings, prefix)) as one,
        TestClient(redis_app(settings, prefix)) as two,
    ):
        answers = [predict(one, OTHER), predict(two, OTHER), predict(one, OTHER)]
        assert [r.status_code for r in answers] == [200, 200, 200]
        assert [r.headers["RateLimit-Remaining"] for r in answers] == ["2", "1", "0"]
        assert answers[0].headers["RateLimit-Policy"] == "3; w=60"
        limited = predict(two, OTHER)
        assert limited.status_code == 429 and limited.json()["status_code"] == 429
        assert limited.json()["detail"] == "Too Many Requests"
        assert limited.headers["RateLimit-Remaining"] == "0"
        assert 0 < int(limited.headers["RateLimit-Reset"]) <= 60
        assert two.get("/model").status_code == 429  # one window across routes
        assert all(two.get(p).status_code == 200 for p in ["/health", "/ready", "/metrics"] * 2)


def test_the_429_matches_the_in_process_limiter(app_settings: Settings, prefix: str) -> None:
    settings = app_settings.replace(rate_limit_per_minute=1)
    with TestClient(create_app(settings)) as local, TestClient(redis_app(settings, prefix)) as red:
        for client in (local, red):
            assert predict(client, OTHER).status_code == 200
        local_429, redis_429 = predict(local, OTHER), predict(red, OTHER)
    assert (local_429.status_code, local_429.json()) == (redis_429.status_code, redis_429.json())
    names = {"ratelimit-policy", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"}
    assert names <= set(local_429.headers) and names <= set(redis_429.headers)


class _Lines(logging.Handler):
    """Keeps the messages logged to it."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_unreachable_redis_fails_open_with_a_warning_and_a_metric(app_settings: Settings) -> None:
    # Nothing listens on a fresh free port: connections are refused.
    down = f"redis://127.0.0.1:{free_port()}/0"
    settings = app_settings.replace(rate_limit_per_minute=2, redis_url=_secret(down))
    lines = _Lines()
    logging.getLogger(API_LOGGER).addHandler(lines)
    try:
        with TestClient(create_app(settings)) as client:
            answers = [predict(client, OTHER) for _ in range(5)]
            metrics = client.get("/metrics").text
    finally:
        logging.getLogger(API_LOGGER).removeHandler(lines)
    # Not limited (5 > 2), and without RateLimit headers: there is no window to report.
    assert [r.status_code for r in answers] == [200] * 5
    assert "ratelimit-remaining" not in answers[-1].headers
    assert "crimeflow_rate_limit_store_errors_total 5.0" in metrics
    warnings = [m for m in lines.messages if "rate-limit store unreachable" in m]
    assert len(warnings) == 1  # once a minute, not once a request


def test_without_redis_url_the_in_process_limiter_serves(app_settings: Settings) -> None:
    for url in (None, _secret("")):
        app = create_app(app_settings.replace(redis_url=url))
        assert RedisFixedWindowRateLimitMiddleware.STATE_KEY not in app.state


# --- the metrics folder --------------------------------------------------------------------


def test_the_metrics_folder_is_wiped_at_start_and_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Restored after the test: this process must not stay in multiprocess mode.
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    folder = tmp_path / "home" / "api-metrics"
    folder.mkdir(parents=True)
    (folder / "counter_123.db").write_bytes(b"stale counts of a previous run")
    api_app._shared_metrics_dir(Settings(home=tmp_path / "home", _env_file=None))
    assert folder.is_dir() and list(folder.iterdir()) == []
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(folder.resolve())
