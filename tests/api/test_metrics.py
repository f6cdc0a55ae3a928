"""The API's metrics move when they should: predictions, probabilities, the log, readiness.

Through the TestClient (one process, in-memory registry) and, for the gauges that add up across
workers, in multiprocess mode with real worker processes writing into one folder.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry, Histogram

from api.app import create_app
from api.observability import LOG_NOT_WRITABLE, NO_MODEL, ApiMetrics, observe_many
from crimeflow.contract.settings import Settings
from crimeflow.stores.registry import CHAMPION, mlflow_client
from tests.api.test_app import OTHER, SODA, copy_home, predict
from tests.metrics_text import samples, value

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def app_settings(registry_home: Path, tmp_path: Path) -> Settings:
    """A private registry copy (chicago-arrest v1 is champion) and a SQLite log."""
    return copy_home(registry_home, tmp_path / "home")


# --- units ---------------------------------------------------------------------------------


def test_observe_many_equals_one_observe_per_value() -> None:
    bounds = (0.05, 0.1, 0.5, 1.0)
    values = [0.0, 0.05, 0.050001, 0.1, 0.3, 0.5, 0.99, 1.0, 1.5, 0.07, 0.2, 0.8]
    one, many = CollectorRegistry(), CollectorRegistry()
    each = Histogram("h", "h", buckets=bounds, registry=one)
    bulk = Histogram("h", "h", buckets=bounds, registry=many)
    for v in values:
        each.observe(v)
    observe_many(bulk, values)
    bulk_found, each_found = samples(_text(many)), samples(_text(one))
    assert bulk_found.pop(("h_sum", ())) == pytest.approx(each_found.pop(("h_sum", ())))
    assert {k: v for k, v in bulk_found.items() if k[0] != "h_created"} == {
        k: v for k, v in each_found.items() if k[0] != "h_created"
    }
    assert value(samples(_text(many)), "h_bucket", le="0.05") == 2  # le is inclusive
    assert value(samples(_text(many)), "h_count") == len(values)


def _text(registry: CollectorRegistry) -> str:
    from prometheus_client import generate_latest

    return generate_latest(registry).decode()


def test_readiness_gauge_has_a_series_per_reason_and_clears_them() -> None:
    metrics = ApiMetrics()
    metrics.set_ready([NO_MODEL])
    found = samples(_text(metrics.registry))
    assert value(found, "crimeflow_ready", reason="") == 0
    assert value(found, "crimeflow_ready", reason=NO_MODEL) == 0
    assert value(found, "crimeflow_ready", reason=LOG_NOT_WRITABLE) == 1
    metrics.set_ready([])
    found = samples(_text(metrics.registry))
    assert {
        value(found, "crimeflow_ready", reason=r) for r in ("", NO_MODEL, LOG_NOT_WRITABLE)
    } == {1}
    with pytest.raises(ValueError, match="unknown readiness"):
        metrics.set_ready(["model registry down: timeout after 30 s"])  # never an error text


# --- through the app -------------------------------------------------------------------------


def test_predictions_fill_the_probability_histogram_and_the_log_metrics(
    app_settings: Settings,
) -> None:
    with TestClient(create_app(app_settings)) as client:
        before = samples(client.get("/metrics").text)
        single = predict(client, OTHER).json()
        batch = client.post("/predict/batch", json=[OTHER, SODA] * 10).json()["predictions"]
        found = samples(client.get("/metrics").text)
    served = [single["arrest_probability"], *(p["arrest_probability"] for p in batch)]
    assert value(before, "crimeflow_prediction_probability_count") == 0
    assert value(found, "crimeflow_prediction_probability_count") == len(served) == 21
    assert value(found, "crimeflow_prediction_probability_sum") == pytest.approx(sum(served))
    below_half = sum(p <= 0.5 for p in served)
    assert value(found, "crimeflow_prediction_probability_bucket", le="0.5") == below_half
    labels = sum(
        value(found, "crimeflow_predictions_total", label=x) or 0 for x in ("true", "false")
    )
    assert labels == 21
    # Two appends, so one or two group commits; nothing left waiting, nothing failed.
    assert value(found, "crimeflow_prediction_log_write_seconds_count") in (1, 2)
    assert value(found, "crimeflow_prediction_log_queue_rows") == 0
    assert value(found, "crimeflow_prediction_log_write_errors_total") == 0
    assert value(found, "crimeflow_ready", reason="") == 1


def test_a_failing_log_counts_write_errors(app_settings: Settings) -> None:
    with TestClient(create_app(app_settings)) as client:
        engine = client.app.state.services.prediction_log.engine

        def fail_inserts(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
            if statement.lstrip().upper().startswith("INSERT INTO PREDICTIONS"):
                raise RuntimeError("disk on fire")

        sa.event.listen(engine, "before_cursor_execute", fail_inserts)
        answers = [predict(client, OTHER).status_code for _ in range(3)]
        found = samples(client.get("/metrics").text)
    assert answers == [503] * 3
    assert value(found, "crimeflow_prediction_log_write_errors_total") == 3
    assert value(found, "crimeflow_prediction_log_queue_rows") == 0
    assert value(found, "crimeflow_prediction_probability_count") == 0  # 503s are not served


def test_readiness_follows_the_model_and_the_log(app_settings: Settings) -> None:
    mlflow_client(app_settings).delete_registered_model_alias("chicago-arrest", CHAMPION)
    with TestClient(create_app(app_settings)) as client:
        # Set at startup already, before any /ready probe.
        found = samples(client.get("/metrics").text)
        assert value(found, "crimeflow_ready", reason="") == 0
        assert value(found, "crimeflow_ready", reason=NO_MODEL) == 0
        assert value(found, "crimeflow_ready", reason=LOG_NOT_WRITABLE) == 1
        client.blocking_portal.call(client.app.state.services.prediction_log.stop)
        assert client.get("/ready").status_code == 503
        found = samples(client.get("/metrics").text)
        assert value(found, "crimeflow_ready", reason=LOG_NOT_WRITABLE) == 0


# --- several workers -------------------------------------------------------------------------

WORKER = """
import os, sys
from api.observability import ApiMetrics, NO_MODEL
metrics = ApiMetrics()
assert metrics.multiprocess
metrics.set_ready([NO_MODEL] if sys.argv[1] == "down" else [])
metrics.log_queue_rows.inc(int(sys.argv[2]))
metrics.count_predictions([0.2, 0.7], 1)
print(os.getpid())
"""
SCRAPE = """
import sys
from prometheus_client.multiprocess import mark_process_dead
from api.observability import ApiMetrics
for pid in sys.argv[1:]:
    mark_process_dead(int(pid))
sys.stdout.write(ApiMetrics().render().decode())
"""


def _run(code: str, folder: Path, *args: str) -> str:
    """Run `code` in a fresh interpreter whose prometheus_client writes into `folder`."""
    env = {"PROMETHEUS_MULTIPROC_DIR": str(folder), "PYTHONPATH": str(REPO), "PATH": "/usr/bin"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_workers_add_up_queue_rows_and_the_least_ready_wins(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    _run(WORKER, folder, "up", "3")
    down = _run(WORKER, folder, "down", "2").strip()
    both = samples(_run(SCRAPE, folder))
    assert value(both, "crimeflow_prediction_log_queue_rows") == 5
    assert value(both, "crimeflow_ready", reason="") == 0  # one worker not ready: not ready
    assert value(both, "crimeflow_ready", reason=NO_MODEL) == 0
    assert value(both, "crimeflow_prediction_probability_count") == 4
    assert value(both, "crimeflow_predictions_total", label="true") == 2
    # The worker that was not ready is gone: its live gauges go with it, its counts stay.
    after = samples(_run(SCRAPE, folder, down))
    assert value(after, "crimeflow_prediction_log_queue_rows") == 3
    assert value(after, "crimeflow_ready", reason="") == 1
    assert value(after, "crimeflow_prediction_probability_count") == 4


def test_request_ids_are_distinct_uuid4s() -> None:
    import uuid

    from api.observability import RandomIds

    ids = RandomIds(ids_per_refill=8)  # several refills of the pool
    many = [ids() for _ in range(100)]
    assert len(set(many)) == 100
    for text in many:
        parsed = uuid.UUID(hex=text)
        assert parsed.hex == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
