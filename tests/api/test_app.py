"""The prediction API end to end, through Litestar's TestClient (which runs the lifespan).

Every app here serves a real MLflow registry (a copy of the session's `registry_home`, where
`chicago-arrest` v1 is champion) and logs to a SQLite prediction log under tmp_path.
"""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.observability import JsonFormatter, _prune
from crimeflow.contract.settings import Settings
from crimeflow.stores.prediction_log import read_predictions
from crimeflow.stores.registry import CHAMPION, mlflow_client, set_alias
from tests.conftest import register_model

API_KEY = "s3cret-key"
JSON = {"content-type": "application/json"}
# A record as the SODA JSON feed sends it (strings everywhere, extra fields included).
SODA: dict[str, Any] = {
    "id": "14019926",
    "case_number": "JJ477750",
    "date": "2024-05-03T21:40:00.000",
    "block": "088XX S HERMITAGE AVE",
    "iucr": "0486",
    "primary_type": "BATTERY",
    "description": "DOMESTIC BATTERY SIMPLE",
    "location_description": "APARTMENT",
    "arrest": False,
    "domestic": "true",
    "beat": "2221",
    "district": "022",
    "ward": "18",
    "community_area": "71",
    "fbi_code": "08B",
    "x_coordinate": "1166222",
    "y_coordinate": "1846073",
    "year": "2024",
    "updated_on": "2024-05-10T15:44:45.000",
    "latitude": "41.733197065",
    "longitude": "-87.666637175",
    "location": {"latitude": "41.733197065", "longitude": "-87.666637175"},
    ":@computed_region_awaf_s7ux": "18",
}
# The same incident with JSON numbers.
NUMBERS: dict[str, Any] = {
    **SODA,
    "id": 14019926,
    "domestic": True,
    "beat": 2221,
    "district": 22,
    "ward": 18,
    "community_area": 71,
    "iucr": 486,
    "x_coordinate": 1166222,
    "y_coordinate": 1846073,
    "year": 2024,
    "latitude": 41.733197065,
    "longitude": -87.666637175,
}
OTHER: dict[str, Any] = {
    "date": "2024-05-04T02:05:00",
    "iucr": "0820",
    "primary_type": "THEFT",
    "location_description": "STREET",
    "latitude": 41.88,
    "longitude": -87.63,
}


def copy_home(source: Path, target: Path) -> Settings:
    """Settings on a copy of a registry home (as `registry_settings` does), with a SQLite log."""
    shutil.copytree(source, target)
    return Settings(
        home=target,
        mlflow_artifact_root=(source / "mlartifacts").resolve().as_uri(),
        prediction_log_url=f"sqlite:///{(target / 'predictions.db').resolve()}",
        api_key=API_KEY,
        model_poll_interval_s=3600,
        # Links in answers: the MLflow UI as a person outside the machine reaches it.
        mlflow_public_url="https://mlflow.example.org/",
        _env_file=None,
    )


@pytest.fixture(scope="module")
def module_settings(registry_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One registry copy shared by the read-mostly tests of this module."""
    return copy_home(registry_home, tmp_path_factory.mktemp("api") / "home")


@pytest.fixture(scope="module")
def client(module_settings: Settings) -> Iterator[TestClient[Any]]:
    """A running app (lifespan entered once for the module)."""
    with TestClient(create_app(module_settings)) as test_client:
        yield test_client


@pytest.fixture
def app_settings(registry_home: Path, tmp_path: Path) -> Settings:
    """A private registry copy for tests that change settings or the registry."""
    return copy_home(registry_home, tmp_path / "home")


@pytest.fixture(scope="module")
def two_versions_home(registry_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry where v1 is champion and v2 (another seed) is registered without an alias."""
    home = tmp_path_factory.mktemp("two") / "home"
    register_model(copy_home(registry_home, home), seed=7)
    return home


def logged(settings: Settings) -> Any:
    """The prediction log's rows."""
    return read_predictions(settings)


def predict(client: TestClient[Any], body: Any, **kwargs: Any) -> Any:
    """POST /predict with `body` as JSON (null too) and return the response."""
    headers = {**JSON, **kwargs.pop("headers", {})}
    return client.post("/predict", content=json.dumps(body), headers=headers, **kwargs)


# --- /predict ---------------------------------------------------------------------------------


def test_predict_answers_and_logs_a_soda_record(client: TestClient[Any]) -> None:
    response = predict(client, SODA, headers={"X-Request-ID": "trace-42"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "prediction_id",
        "arrest_probability",
        "arrest",
        "model_name",
        "model_version",
        "served_at",
    }
    assert re.fullmatch(r"[0-9a-f]{32}", body["prediction_id"])
    assert (body["model_name"], body["model_version"]) == ("chicago-arrest", "1")
    assert 0.0 < body["arrest_probability"] < 1.0
    threshold = client.get("/model").json()["threshold"]
    assert body["arrest"] == (body["arrest_probability"] >= threshold)
    assert response.headers["X-Request-ID"] == "trace-42"
    row = logged(client.app.state.settings).set_index("prediction_id").loc[body["prediction_id"]]
    assert row["request_id"] == "trace-42" and row["probability"] == body["arrest_probability"]
    assert (row["beat"], row["district"], row["case_number"]) == ("2221", "022", "JJ477750")


def test_soda_strings_and_json_numbers_give_the_same_probability(client: TestClient[Any]) -> None:
    strings = predict(client, SODA).json()["arrest_probability"]
    numbers = predict(client, NUMBERS).json()["arrest_probability"]
    assert numbers == pytest.approx(strings, abs=1e-12)


def test_bookkeeping_and_unknown_fields_do_not_move_the_prediction(
    client: TestClient[Any],
) -> None:
    base = predict(client, SODA).json()["arrest_probability"]
    changed = {
        **SODA,
        "case_number": "ZZ999999",
        "block": "001XX N NOWHERE ST",
        "id": "1",
        "updated_on": "2024-12-01T00:00:00",
        "year": "2024",
        "arrest": True,
        "location": "anything at all",
        "brand_new_field": [1, {"x": None}],
    }
    assert predict(client, changed).json()["arrest_probability"] == pytest.approx(base, abs=1e-12)
    # ...while a field the model reads does move it.
    elsewhere = {**SODA, "primary_type": "NARCOTICS", "iucr": "2027", "fbi_code": "18"}
    assert predict(client, elsewhere).json()["arrest_probability"] != pytest.approx(base)


def test_a_body_without_a_position_is_scored(client: TestClient[Any]) -> None:
    minimal = {"date": "2024-05-03T21:40:00", "iucr": "0486", "primary_type": "BATTERY"}
    response = predict(client, minimal)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({**SODA, "latitude": "95.5"}, "latitude", "outside"),
        ({**NUMBERS, "longitude": 87.6}, "longitude", "<="),
        ({**SODA, "beat": "12"}, "beat", "regex"),
        ({k: v for k, v in SODA.items() if k != "iucr"}, "iucr", "missing"),
        ({**SODA, "date": "2000-06-01T00:00:00"}, "date", "outside"),
        ({**SODA, "date": "yesterday at noon"}, "date", "ISO 8601"),
        ({**SODA, "primary_type": 7}, "primary_type", "Expected `str`"),
        ({**OTHER, "longitude": None}, "longitude", "latitude is given"),
        ({**SODA, "domestic": "perhaps"}, "domestic", "not a boolean"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    client: TestClient[Any], body: dict[str, Any], field: str, needle: str
) -> None:
    response = predict(client, body)
    assert response.status_code == 400
    error = response.json()
    assert error["status_code"] == 400 and error["detail"]
    (problem,) = error["errors"]
    assert problem["field"] == field and needle in problem["message"]
    assert "row" not in problem


@pytest.mark.parametrize(
    "content", [b"", b"{", b"[]", b'"text"', b"null", b"\xff\xfe", b'{"date": "2024-05-01"}']
)
def test_malformed_bodies_are_400s(client: TestClient[Any], content: bytes) -> None:
    response = client.post("/predict", content=content, headers=JSON)
    assert response.status_code == 400
    assert response.json()["errors"]


# --- /predict/batch ---------------------------------------------------------------------------


def test_batch_answers_each_row_in_order_like_single_predictions(client: TestClient[Any]) -> None:
    before = len(logged(client.app.state.settings))
    rows = [SODA, OTHER, NUMBERS, OTHER]
    response = client.post("/predict/batch", json=rows)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 4
    singles = [predict(client, row).json()["arrest_probability"] for row in rows]
    assert [p["arrest_probability"] for p in predictions] == pytest.approx(singles, abs=1e-12)
    assert {p["model_version"] for p in predictions} == {"1"}
    assert len({p["prediction_id"] for p in predictions}) == 4
    assert len(logged(client.app.state.settings)) == before + 4 + 4


def generated_rows(rows: int = 40) -> list[dict[str, Any]]:
    """Generated incidents as SODA JSON (missing fields left out), plus the other body shapes."""
    from crimeflow.standins.generate import generate_incidents, to_soda_strings

    frame = generate_incidents("2024-05", "2024-05", rows_per_month=rows, seed=11)
    records = to_soda_strings(frame.drop(columns=["arrest"])).to_dict("records")
    soda = [{k: v for k, v in record.items() if v is not None} for record in records]
    return [*soda, SODA, NUMBERS, OTHER, {**OTHER, "latitude": "", "longitude": " "}]


def test_a_batch_answers_and_logs_exactly_what_single_predictions_do(
    client: TestClient[Any],
) -> None:
    rows = generated_rows()
    response = client.post("/predict/batch", json=rows)
    assert response.status_code == 200, response.text
    batch = response.json()["predictions"]
    singles = [predict(client, row).json() for row in rows]
    # Same probabilities and labels, in request order (the model is deterministic per row).
    assert [p["arrest_probability"] for p in batch] == pytest.approx(
        [p["arrest_probability"] for p in singles], abs=1e-12
    )
    assert [p["arrest"] for p in batch] == [p["arrest"] for p in singles]
    assert len({p["served_at"] for p in batch}) == 1  # one model snapshot, one moment
    # The log holds the same typed inputs for a row whichever way it came.
    log = logged(client.app.state.settings).set_index("prediction_id")
    inputs = [c for c in log.columns if c not in ("served_at", "request_id", "feedback_at")]
    by_batch = log.loc[[p["prediction_id"] for p in batch], inputs].reset_index(drop=True)
    by_single = log.loc[[p["prediction_id"] for p in singles], inputs].reset_index(drop=True)
    pd.testing.assert_frame_equal(by_batch, by_single)


def test_one_bad_row_rejects_the_batch_naming_row_and_field(client: TestClient[Any]) -> None:
    before = len(logged(client.app.state.settings))
    rows = [SODA, OTHER, {**OTHER, "latitude": "12.5"}, SODA, {**SODA, "date": "1999-01-01"}]
    response = client.post("/predict/batch", json=rows)
    assert response.status_code == 400
    body = response.json()
    assert [(e["row"], e["field"]) for e in body["errors"]] == [(2, "latitude"), (4, "date")]
    assert body["detail"] == "2 of 5 rows are invalid"
    # A decode-level error (wrong JSON type) names its row too.
    response = client.post("/predict/batch", json=[SODA, SODA, {**SODA, "ward": True}])
    assert response.status_code == 400
    assert [(e["row"], e["field"]) for e in response.json()["errors"]] == [(2, "ward")]
    assert len(logged(client.app.state.settings)) == before  # nothing of a rejected batch


def test_bad_rows_deep_in_a_large_batch_are_named_and_nothing_is_logged(
    client: TestClient[Any],
) -> None:
    before = len(logged(client.app.state.settings))
    rows = generated_rows()
    rows[25] = {**{k: v for k, v in rows[25].items() if k != "longitude"}, "latitude": "41.8"}
    rows[40] = {**rows[40], "primary_type": "  ", "updated_on": "yesterday"}
    response = client.post("/predict/batch", json=rows)
    assert response.status_code == 400
    body = response.json()
    assert [(e["row"], e["field"]) for e in body["errors"]] == [
        (25, "longitude"),
        (40, "primary_type"),
    ]
    assert body["detail"] == f"2 of {len(rows)} rows are invalid"
    assert len(logged(client.app.state.settings)) == before


def test_empty_and_non_list_batches_are_400s(client: TestClient[Any]) -> None:
    assert client.post("/predict/batch", json=[]).status_code == 400
    assert client.post("/predict/batch", json=SODA).status_code == 400


def test_batch_limit_and_body_size_are_enforced(app_settings: Settings) -> None:
    settings = app_settings.replace(predict_batch_max_rows=3)
    with TestClient(create_app(settings)) as client:
        assert client.post("/predict/batch", json=[OTHER] * 3).status_code == 200
        response = client.post("/predict/batch", json=[OTHER] * 4)
        assert response.status_code == 413
        assert "at most 3 rows, got 4" in response.json()["detail"]
        huge = {**OTHER, "padding": "x" * 2_000_000}
        assert client.post("/predict", json=huge).status_code == 413


# --- /feedback --------------------------------------------------------------------------------


def test_feedback_is_stored_next_to_its_prediction(client: TestClient[Any]) -> None:
    prediction_id = predict(client, OTHER).json()["prediction_id"]
    response = client.post("/feedback", json={"prediction_id": prediction_id, "arrest": True})
    assert response.status_code == 200
    answer = response.json()
    assert answer.pop("received_at")
    assert answer == {
        "prediction_id": prediction_id,
        "arrest": True,
        "stored": True,
        "replaced": False,
        "previous_arrest": None,
    }
    row = logged(client.app.state.settings).set_index("prediction_id").loc[prediction_id]
    assert bool(row["feedback_arrest"]) is True


def test_feedback_errors(client: TestClient[Any]) -> None:
    unknown = client.post("/feedback", json={"prediction_id": "0" * 32, "arrest": False})
    assert unknown.status_code == 404 and "no prediction" in unknown.json()["detail"]
    malformed = client.post("/feedback", json={"prediction_id": "nope", "arrest": False})
    assert malformed.status_code == 400 and malformed.json()["detail"] == "invalid feedback"
    assert malformed.json()["errors"][0]["field"] == "prediction_id"
    missing = client.post("/feedback", json={"prediction_id": "0" * 32})
    assert missing.status_code == 400 and missing.json()["errors"][0]["field"] == "arrest"


# --- operations -------------------------------------------------------------------------------


def test_health_ready_and_model(client: TestClient[Any]) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() | {"detail": None} == {
        "ready": True,
        "model_loaded": True,
        "model_version": "1",
        "prediction_log_writable": True,
        "detail": None,
    }
    info = client.get("/model").json()
    assert (info["name"], info["version"], info["alias"]) == ("chicago-arrest", "1", CHAMPION)
    assert re.fullmatch(r"[0-9a-f]{32}", info["run_id"])
    assert 0.0 < info["threshold"] < 1.0 and set(info["metrics"]) == {"roc_auc"}
    assert info["loaded_at"].endswith("Z")
    mlflow = "https://mlflow.example.org/#"
    assert info["mlflow_url"] == f"{mlflow}/models/chicago-arrest/versions/1"
    assert re.fullmatch(
        rf"{re.escape(mlflow)}/experiments/[0-9]+/runs/{info['run_id']}", info["run_url"]
    )
    assert info["model_card_url"] == f"{info['run_url']}/artifacts/model_card.md"


def test_metrics_expose_latency_predictions_and_model_version(client: TestClient[Any]) -> None:
    predict(client, OTHER)
    client.post("/predict/batch", json=[OTHER, SODA])
    text = client.get("/metrics").text
    assert re.search(
        r'crimeflow_request_seconds_bucket\{le="0\.025",method="POST",route="/predict",'
        r'status="200"\} [1-9]',
        text,
    )
    assert 'route="/predict/batch"' in text
    served = sum(
        float(v)
        for v in re.findall(r'crimeflow_predictions_total\{label="(?:true|false)"\} (\S+)', text)
    )
    assert served >= 3
    assert 'crimeflow_model_version{model="chicago-arrest"} 1.0' in text
    assert "crimeflow_microbatch_rows_bucket" in text


def test_request_ids_are_echoed_or_generated(client: TestClient[Any]) -> None:
    assert (
        client.get("/health", headers={"X-Request-ID": "abc.123"}).headers["X-Request-ID"]
        == "abc.123"
    )
    generated = client.get("/health").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    # A header that is not a plain token is replaced, not echoed into logs and headers.
    replaced = client.get("/health", headers={"X-Request-ID": "a b\tc"}).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", replaced)
    # Responses that never reach a route carry one too.
    missing = client.get("/no/such/path", headers={"X-Request-ID": "lost-1"})
    assert missing.status_code == 404 and missing.headers["X-Request-ID"] == "lost-1"
    assert missing.json()["status_code"] == 404


def test_one_json_log_line_per_request(client: TestClient[Any]) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("crimeflow.api.access")
    access.addHandler(handler)
    try:
        predict(client, OTHER, headers={"X-Request-ID": "log-test-7"})
        client.get("/health")
    finally:
        access.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["path"] for line in lines] == ["/predict", "/health"]
    first = lines[0]
    assert first["request_id"] == "log-test-7" and first["status"] == 200
    assert first["method"] == "POST" and first["route"] == "/predict"
    assert first["duration_ms"] > 0 and first["level"] == "INFO"


def test_wrong_method_is_a_405_in_the_error_shape(client: TestClient[Any]) -> None:
    response = client.get("/predict")
    assert response.status_code == 405 and response.json()["status_code"] == 405


def test_openapi_documents_the_bodies_with_examples(client: TestClient[Any]) -> None:
    spec = client.get("/schema/openapi.json").json()
    assert {"/predict", "/predict/batch", "/feedback", "/health", "/ready", "/model"} <= set(
        spec["paths"]
    )
    assert "/admin/reload" in spec["paths"]
    assert (
        "/reports/latest" in spec["paths"]
    )  # the drift reports (api/report_routes.py) are served too
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    schema = body["schema"]
    assert schema["required"] == ["date", "primary_type", "iucr"]
    assert len(schema["examples"]) == 3
    latitude = schema["properties"]["latitude"]["anyOf"][0]
    assert (latitude["minimum"], latitude["maximum"]) == (41.64, 42.03)
    batch = spec["paths"]["/predict/batch"]["post"]["requestBody"]["content"]["application/json"]
    assert batch["schema"]["type"] == "array" and batch["schema"]["minItems"] == 1
    responses = spec["paths"]["/predict"]["post"]["responses"]
    assert {"200", "400", "503"} <= set(responses)
    assert client.get("/schema").status_code == 200


def test_every_documented_example_is_accepted(client: TestClient[Any]) -> None:
    spec = client.get("/schema/openapi.json").json()
    for path in ("/predict", "/predict/batch"):
        schema = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        for example in schema["schema"]["examples"]:
            assert client.post(path, json=example).status_code == 200, (path, example)


# --- admin, rate limit, CORS ------------------------------------------------------------------


def test_admin_reload_needs_the_key(client: TestClient[Any]) -> None:
    assert client.post("/admin/reload").status_code == 401
    assert client.post("/admin/reload", headers={"X-API-Key": "wrong"}).status_code == 401
    response = client.post("/admin/reload", headers={"X-API-Key": API_KEY})
    assert response.status_code == 200
    assert response.json() == {
        "changed": False,
        "version": "1",
        "previous_version": "1",
        "detail": "version 1 is already served",
    }


def test_admin_is_disabled_without_a_key(app_settings: Settings) -> None:
    with TestClient(create_app(app_settings.replace(api_key=None))) as client:
        response = client.post("/admin/reload", headers={"X-API-Key": API_KEY})
        assert response.status_code == 403 and "disabled" in response.json()["detail"]


def test_rate_limit_answers_429_but_spares_probes(app_settings: Settings) -> None:
    settings = app_settings.replace(rate_limit_per_minute=3)
    with TestClient(create_app(settings)) as client:
        answers = [predict(client, OTHER) for _ in range(3)]
        assert [r.status_code for r in answers] == [200, 200, 200]
        assert answers[-1].headers["RateLimit-Remaining"] == "0"
        limited = predict(client, OTHER)
        assert limited.status_code == 429 and limited.json()["status_code"] == 429
        assert int(limited.headers["RateLimit-Reset"]) > 0
        assert all(client.get(p).status_code == 200 for p in ["/health", "/ready", "/metrics"] * 3)
        assert len(logged(settings)) == 3


def test_rate_limit_counts_a_client_across_routes(app_settings: Settings) -> None:
    settings = app_settings.replace(rate_limit_per_minute=3)
    with TestClient(create_app(settings)) as client:
        assert predict(client, OTHER).status_code == 200
        assert client.get("/model").status_code == 200
        assert predict(client, OTHER).headers["RateLimit-Remaining"] == "0"
        assert client.get("/model").status_code == 429


def test_rate_limit_forgets_ended_windows_only() -> None:
    windows = {"gone": (100, 5), "live": (200, 1)}
    _prune(windows, now=150)
    assert windows == {"live": (200, 1)}


def test_cors_is_off_by_default_and_on_for_configured_origins(
    client: TestClient[Any], app_settings: Settings
) -> None:
    origin = {"Origin": "https://dashboard.example.org"}
    assert "access-control-allow-origin" not in client.get("/health", headers=origin).headers
    settings = app_settings.replace(cors_allow_origins=[origin["Origin"]])
    with TestClient(create_app(settings)) as cors_client:
        allowed = cors_client.get("/health", headers=origin).headers
        assert allowed["access-control-allow-origin"] == origin["Origin"]


# --- lifecycle --------------------------------------------------------------------------------


def test_without_a_champion_the_server_starts_but_does_not_serve(app_settings: Settings) -> None:
    mlflow_client(app_settings).delete_registered_model_alias("chicago-arrest", CHAMPION)
    with TestClient(create_app(app_settings)) as client:
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 503 and not ready.json()["model_loaded"]
        assert "alias 'champion'" in ready.json()["detail"]
        for response in (predict(client, OTHER), client.post("/predict/batch", json=[OTHER])):
            assert response.status_code == 503
            assert "no model is being served" in response.json()["detail"]
        assert client.get("/model").status_code == 503
        # Bad input is still a 400, not hidden behind the 503.
        assert predict(client, {**OTHER, "latitude": "x"}).status_code == 400
        reload = client.post("/admin/reload", headers={"X-API-Key": API_KEY}).json()
        assert reload["changed"] is False and reload["version"] is None
        assert 'crimeflow_model_version{model="chicago-arrest"} 0.0' in client.get("/metrics").text


def test_a_prediction_log_that_cannot_commit_means_503_not_an_unlogged_answer(
    app_settings: Settings,
) -> None:
    with TestClient(create_app(app_settings)) as client:
        assert predict(client, OTHER).status_code == 200
        client.blocking_portal.call(client.app.state.services.prediction_log.stop)
        response = predict(client, OTHER)
        assert response.status_code == 503 and "not served" in response.json()["detail"]
        assert client.get("/ready").status_code == 503
        assert (
            client.post("/feedback", json={"prediction_id": "0" * 32, "arrest": True}).status_code
            == 503
        )
    assert len(logged(app_settings)) == 1


def hammer(client: TestClient[Any], stop: threading.Event, results: list[Any]) -> None:
    """Post /predict until told to stop, recording (sent_at, status, model_version)."""
    while not stop.is_set():
        sent_at = time.monotonic()
        response = predict(client, OTHER)
        version = response.json().get("model_version") if response.status_code == 200 else None
        results.append((sent_at, response.status_code, version))


def in_flight(
    client: TestClient[Any], threads: int = 4
) -> tuple[threading.Event, list[Any], list[threading.Thread]]:
    """Start `threads` hammering threads."""
    stop, results = threading.Event(), []
    workers = [
        threading.Thread(target=hammer, args=(client, stop, results)) for _ in range(threads)
    ]
    for worker in workers:
        worker.start()
    return stop, results, workers


@pytest.mark.slow
def test_hot_reload_under_load_never_fails_a_request(
    two_versions_home: Path, tmp_path: Path
) -> None:
    settings = copy_home(two_versions_home, tmp_path / "home")
    with TestClient(create_app(settings)) as client:
        stop, results, workers = in_flight(client)
        try:
            time.sleep(0.5)
            set_alias(mlflow_client(settings), settings.model_name, CHAMPION, "2")
            reload = client.post("/admin/reload", headers={"X-API-Key": API_KEY})
            swapped_at = time.monotonic()
            time.sleep(0.5)
        finally:
            stop.set()
            for worker in workers:
                worker.join()
        assert reload.status_code == 200, reload.text
        assert reload.json()["changed"] and reload.json()["version"] == "2"
        assert client.get("/model").json()["version"] == "2"
    assert len(results) > 20
    assert {status for _, status, _ in results} == {200}
    assert {version for _, _, version in results} == {"1", "2"}
    assert {version for sent, _, version in results if sent > swapped_at} == {"2"}
    log = logged(settings)
    assert len(log) == len(results)  # every 200 is logged, with the version that served it
    assert set(log["model_version"]) == {"1", "2"}


@pytest.mark.slow
def test_the_poll_swaps_in_a_moved_champion(two_versions_home: Path, tmp_path: Path) -> None:
    settings = copy_home(two_versions_home, tmp_path / "home").replace(model_poll_interval_s=0.2)
    with TestClient(create_app(settings)) as client:
        stop, results, workers = in_flight(client, threads=2)
        try:
            set_alias(mlflow_client(settings), settings.model_name, CHAMPION, "2")
            deadline = time.monotonic() + 30
            while client.get("/model").json()["version"] != "2" and time.monotonic() < deadline:
                time.sleep(0.1)
            swapped_at = time.monotonic()
            time.sleep(0.3)
        finally:
            stop.set()
            for worker in workers:
                worker.join()
        assert client.get("/model").json()["version"] == "2"
        metrics = client.get("/metrics").text
        assert 'crimeflow_model_version{model="chicago-arrest"} 2.0' in metrics
        assert "crimeflow_model_reloads_total 1.0" in metrics
    assert {status for _, status, _ in results} == {200}
    assert {version for sent, _, version in results if sent > swapped_at} == {"2"}


# --- fuzzing: no input is a server error --------------------------------------------------------

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)


def text_or_number(pattern: str, low: int, high: int) -> Any:
    """A code as text matching `pattern` or as a number in [low, high]."""
    return st.from_regex(pattern, fullmatch=True) | st.integers(low, high)


# Values the API must accept (the shapes of the data contract, as text or JSON numbers).
VALID: dict[str, Any] = {
    "date": st.datetimes(min_value=datetime(2001, 1, 2), max_value=datetime(2025, 12, 31)).map(
        lambda d: d.isoformat()
    ),
    "iucr": st.from_regex(r"[0-9A-Z]{3,4}", fullmatch=True) | st.integers(0, 9999),
    "primary_type": st.sampled_from(["THEFT", "BATTERY", "NARCOTICS", "A NEW TYPE"]),
    "beat": text_or_number(r"[0-9]{3,4}", 100, 9999),
    "district": text_or_number(r"[0-9]{1,3}", 0, 999),
    "ward": text_or_number(r"[0-9]{1,3}", 0, 999),
    "community_area": text_or_number(r"[0-9]{1,3}", 0, 999),
    "fbi_code": st.from_regex(r"[0-9]{2}[A-Z]?", fullmatch=True),
    "domestic": st.booleans() | st.sampled_from(["true", "False", "t", "no", "1"]),
    "description": st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF), max_size=60),
    "location_description": st.sampled_from(["STREET", "APARTMENT", "", "SOMEWHERE NEW"]),
    "id": st.integers(0, 10**12) | st.integers(0, 10**12).map(str),
    "year": text_or_number(r"20[0-2][0-9]", 2001, 2025),
    "updated_on": st.datetimes(min_value=datetime(2001, 1, 2)).map(lambda d: d.isoformat()),
    "case_number": st.from_regex(r"[A-Z]{2}[0-9]{6}", fullmatch=True),
    "block": st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
}
POSITIONS = st.one_of(
    st.just({}),
    st.fixed_dictionaries(
        {"latitude": st.floats(41.64, 42.03), "longitude": st.floats(-87.95, -87.52)}
    ),
    st.fixed_dictionaries(
        {
            "latitude": st.floats(41.64, 42.03).map(str),
            "longitude": st.floats(-87.95, -87.52).map(str),
        }
    ),
    st.fixed_dictionaries(
        {
            "x_coordinate": st.floats(1_091_000, 1_206_000),
            "y_coordinate": st.integers(1_813_000, 1_952_000).map(str),
        }
    ),
)
# Values near the edges of the contract and plain wrong ones.
WRONG: dict[str, Any] = {
    "date": st.datetimes().map(lambda d: d.isoformat())
    | st.from_regex(
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2})?(Z|[+-][0-9]{2}:[0-9]{2})?",
        fullmatch=True,
    ),
    "iucr": st.from_regex(r"[0-9a-zA-Z ]{1,6}", fullmatch=True) | st.integers(-(10**20), 10**20),
    "beat": st.from_regex(r"[0-9]{1,6}", fullmatch=True) | st.integers(-5, 10**6),
    "latitude": st.floats() | st.floats().map(str) | st.text(max_size=8),
    "longitude": st.floats() | st.floats().map(str),
    "x_coordinate": st.integers(-(10**9), 10**9) | st.text(max_size=8),
    "y_coordinate": st.integers(-(10**9), 10**9).map(str),
    "domestic": st.text(max_size=9),
    "primary_type": st.text(max_size=70),
    "year": st.integers(-(10**6), 10**6) | st.text(max_size=6),
    "updated_on": st.text(max_size=45),
}
NEARLY_VALID = st.builds(
    lambda required, optional, position: {**required, **optional, **position},
    st.fixed_dictionaries({name: VALID[name] for name in ("date", "iucr", "primary_type")}),
    st.fixed_dictionaries(
        {},
        optional={n: s for n, s in VALID.items() if n not in ("date", "iucr", "primary_type")},
    ),
    POSITIONS,
)
INCIDENT_BODIES = st.builds(
    lambda base, wrong, extra: {**extra, **base, **wrong},
    NEARLY_VALID,
    st.fixed_dictionaries({}, optional={n: WRONG.get(n, VALID[n]) | JSON_VALUES for n in VALID}),
    st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=2),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=NEARLY_VALID | INCIDENT_BODIES | JSON_VALUES)
def test_fuzzed_predict_bodies_never_cause_a_server_error(
    client: TestClient[Any], body: Any
) -> None:
    response = predict(client, body)
    event(f"status {response.status_code}")
    assert response.status_code in (200, 400), response.text
    answer = response.json()
    if response.status_code == 400:
        assert answer["errors"] and all(e["message"] for e in answer["errors"])
    else:
        assert 0.0 <= answer["arrest_probability"] <= 1.0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(NEARLY_VALID | NEARLY_VALID | INCIDENT_BODIES, min_size=1, max_size=5))
def test_fuzzed_batches_never_cause_a_server_error(
    client: TestClient[Any], rows: list[Any]
) -> None:
    response = client.post("/predict/batch", json=rows)
    event(f"status {response.status_code}")
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert all(0 <= e["row"] < len(rows) for e in response.json()["errors"] if "row" in e)
    else:
        assert len(response.json()["predictions"]) == len(rows)


@settings(max_examples=60, deadline=None)
@given(content=st.binary(max_size=200))
def test_arbitrary_bytes_are_400s(client: TestClient[Any], content: bytes) -> None:
    assert client.post("/predict", content=content, headers=JSON).status_code == 400


# --- CLI --------------------------------------------------------------------------------------


def test_cli_api_runs_uvicorn_with_the_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from api.app import _exit_after_drain
    from crimeflow.cli.main import app as cli
    from crimeflow.contract.settings import get_settings

    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **kw: calls.append((target, kw)))
    monkeypatch.setenv("CRIMEFLOW_API_PORT", "8123")
    original_sigterm = signal.getsignal(signal.SIGTERM)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["api", "--host", "0.0.0.0", "--workers", "2"])
        sigterm = signal.getsignal(signal.SIGTERM)
    finally:
        get_settings.cache_clear()
        signal.signal(signal.SIGTERM, original_sigterm)
    assert result.exit_code == 0, result.output
    ((target, kwargs),) = calls
    assert target == "api.app:create_app" and kwargs["factory"] is True
    assert (kwargs["host"], kwargs["port"], kwargs["workers"]) == ("0.0.0.0", 8123, 2)
    # uvicorn re-raises a drained SIGTERM under this handler: the process must exit 0.
    assert sigterm is _exit_after_drain
    with pytest.raises(SystemExit) as exited:
        _exit_after_drain(signal.SIGTERM, None)
    assert exited.value.code == 0
