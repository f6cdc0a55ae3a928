"""The request layer's rules, one regression test per defect class an adversarial probe found.

Through Litestar's TestClient (bodies, content types, patterns, HEAD, feedback) and through a real
uvicorn server in a thread with the options `crimeflow api` uses (request heads, body read
timeout, client disconnects, forwarded headers): those live in the HTTP server, not the app.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import sqlalchemy as sa
import uvicorn
from litestar import Litestar
from litestar.testing import TestClient

from api.app import create_app
from api.schemas import Feedback, Incident
from api.server import MAX_HEAD_BYTES, uvicorn_options
from crimeflow.cli.processes import free_port, wait_http
from crimeflow.contract.settings import Settings
from crimeflow.stores.prediction_log import read_predictions
from tests.api.test_app import OTHER, SODA, copy_home
from tests.metrics_text import samples

JSON = {"content-type": "application/json"}
PROBE = {  # the probe's body: accepted, stored, and then every read of the log failed
    "date": "2026-11-02T23:50:00",
    "iucr": "0820",
    "primary_type": "THEFT",
    "updated_on": "0001-01-01T00:00:00",
}
BODY_ROUTES = ("/predict", "/predict/batch", "/feedback")


@pytest.fixture(scope="module")
def layer_settings(registry_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One registry copy for this module, with a SQLite log."""
    return copy_home(registry_home, tmp_path_factory.mktemp("layer") / "home")


@pytest.fixture(scope="module")
def client(layer_settings: Settings) -> Iterator[TestClient[Any]]:
    """A running app (lifespan entered once for the module)."""
    with TestClient(create_app(layer_settings)) as test_client:
        yield test_client


def body_for(route: str, prediction_id: str = "0" * 32) -> Any:
    """A valid JSON body of a body route."""
    if route == "/predict":
        return OTHER
    if route == "/predict/batch":
        return [OTHER]
    return {"prediction_id": prediction_id, "arrest": True}


def logged_rows(settings: Settings) -> int:
    """How many predictions are in the log."""
    return len(read_predictions(settings))


# --- stored data: every timestamp range-checked, and readers that one row cannot stop ----------


def test_an_out_of_range_timestamp_is_a_400_naming_the_field_and_is_not_stored(
    client: TestClient[Any], layer_settings: Settings
) -> None:
    before = logged_rows(layer_settings)
    for route, body in (("/predict", PROBE), ("/predict/batch", [OTHER, PROBE])):
        response = client.post(route, json=body)
        assert response.status_code == 400, response.text
        (error,) = response.json()["errors"]
        assert error["field"] == "updated_on" and "outside 2001-01-01" in error["message"]
    far = client.post("/predict", json={**OTHER, "updated_on": "9999-12-31T00:00:00"})
    assert far.status_code == 400 and far.json()["errors"][0]["field"] == "updated_on"
    assert logged_rows(layer_settings) == before  # and the log still reads


# --- malformed bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize("route", BODY_ROUTES)
def test_invalid_utf8_and_deep_nesting_are_400s(client: TestClient[Any], route: str) -> None:
    text = json.dumps(body_for(route))
    # A raw 0xff byte inside the first string value.
    invalid = text.replace(': "', ': "\xff', 1).encode("latin-1")
    assert b"\xff" in invalid
    deep = b'{"ignored": ' + b"[" * 1000 + b"]" * 1000 + b", " + text.encode()[1:]
    if route == "/predict/batch":
        deep = b"[" + deep + b"]"
    for content, message in ((invalid, "UTF-8"), (deep, "nested too deeply")):
        response = client.post(route, content=content, headers=JSON)
        assert response.status_code == 400, response.text
        errors = response.json()["errors"]
        if route == "/feedback" and content is deep:
            # Feedback takes no unknown field: "ignored" is refused before its nesting is read.
            assert "unknown field" in errors[0]["message"]
        else:
            assert response.json()["detail"] == "request body is not valid JSON"
            assert message in errors[0]["message"]


# --- content types ------------------------------------------------------------------------------


@pytest.mark.parametrize("route", BODY_ROUTES)
@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_bodies_must_be_sent_as_json(
    client: TestClient[Any], layer_settings: Settings, route: str, content_type: str | None
) -> None:
    # What a cross-site "simple" POST from any web page can send without a preflight.
    before = logged_rows(layer_settings)
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(route, content=json.dumps(body_for(route)), headers=headers)
    assert response.status_code == 415, response.text
    assert "Content-Type: application/json" in response.json()["detail"]
    assert logged_rows(layer_settings) == before


def test_json_content_types_with_parameters_are_accepted(client: TestClient[Any]) -> None:
    for content_type in ("application/json; charset=utf-8", "Application/JSON"):
        response = client.post(
            "/predict", content=json.dumps(OTHER), headers={"content-type": content_type}
        )
        assert response.status_code == 200, response.text
    # Routes without a body do not care.
    assert client.get("/health", headers={"content-type": "text/plain"}).status_code == 200


# --- patterns: a trailing newline is not part of a valid value ------------------------------------


def _patterns(schema: Any) -> Iterator[str]:
    """Every `pattern` in a JSON schema."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "pattern":
                yield value
            else:
                yield from _patterns(value)
    elif isinstance(schema, list | tuple):
        for item in schema:
            yield from _patterns(item)


def test_every_body_pattern_rejects_a_trailing_newline() -> None:
    patterns = list(_patterns(msgspec.json.schema_components([Incident, Feedback])))
    assert len(patterns) >= 10
    for pattern in patterns:
        # msgspec checks with re.search: `$` alone would match before a final newline.
        assert pattern.endswith(r"$(?!\n)"), pattern
        assert re.search(pattern, "0614\n") is None


@pytest.mark.parametrize(
    "route,body,field",
    [
        ("/feedback", {"prediction_id": "0" * 32 + "\n", "arrest": True}, "prediction_id"),
        ("/predict", {**OTHER, "primary_type": "THEFT\n"}, "primary_type"),
        ("/predict", {**OTHER, "beat": "0614\n"}, "beat"),
        ("/predict", {**OTHER, "iucr": "0820\n"}, "iucr"),
    ],
)
def test_a_trailing_newline_is_a_400(
    client: TestClient[Any], route: str, body: dict[str, Any], field: str
) -> None:
    response = client.post(route, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["field"] == field


# --- feedback history, and the log being down --------------------------------------------------


def test_feedback_says_whether_it_replaced_an_earlier_outcome(client: TestClient[Any]) -> None:
    prediction_id = client.post("/predict", json=SODA).json()["prediction_id"]
    first = client.post("/feedback", json={"prediction_id": prediction_id, "arrest": True})
    second = client.post("/feedback", json={"prediction_id": prediction_id, "arrest": False})
    assert first.status_code == second.status_code == 200
    assert first.json()["replaced"] is False and first.json()["previous_arrest"] is None
    assert second.json()["replaced"] is True and second.json()["previous_arrest"] is True
    log = client.app.state.services.prediction_log
    history = log.feedback_history(prediction_id)
    assert [(h.arrest, h.previous_arrest) for h in history] == [(True, None), (False, True)]
    assert history[0].request_id and history[0].request_id != history[1].request_id


def test_feedback_while_the_log_database_is_down_is_a_503(client: TestClient[Any]) -> None:
    log = client.app.state.services.prediction_log
    prediction_id = client.post("/predict", json=OTHER).json()["prediction_id"]
    working = log._engine
    # A database server that does not answer (nothing listens on that port).
    log._engine = sa.create_engine(f"postgresql+psycopg://u@127.0.0.1:{free_port()}/d")
    try:
        response = client.post("/feedback", json={"prediction_id": prediction_id, "arrest": True})
    finally:
        log._engine.dispose()
        log._engine = working
    assert response.status_code == 503, response.text
    detail = response.json()["detail"]
    assert "unreachable" in detail and "127.0.0.1" not in detail and "psycopg" not in detail


# --- HEAD -----------------------------------------------------------------------------------------


def test_head_answers_like_get_without_a_body(client: TestClient[Any]) -> None:
    for path in ("/health", "/ready", "/model", "/metrics", "/schema/openapi.json"):
        got, head = client.get(path), client.head(path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
        if path != "/metrics":  # the metrics move between the two requests
            assert head.headers["content-length"] == got.headers["content-length"]
    assert client.head("/predict").status_code == 405
    assert client.head("/no-such-page").status_code == 404


# --- a real uvicorn server: request heads, body timeout, disconnects, forwarded headers ----------


@contextmanager
def served(app: Litestar, settings: Settings) -> Iterator[str]:
    """`app` under uvicorn with `crimeflow api`'s options, in a thread; its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="on",
        access_log=False,
        log_level="warning",
        **uvicorn_options(settings),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/ready", timeout_s=60)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def server(layer_settings: Settings) -> Iterator[tuple[str, Litestar]]:
    """A real server with a short body read timeout."""
    app = create_app(layer_settings)
    app.observer.body_timeout_s = 0.5  # type: ignore[attr-defined]
    with served(app, layer_settings) as url:
        yield url, app


def raw_exchange(url: str, request: bytes, *, read_timeout_s: float = 5.0) -> bytes:
    """Send raw bytes on a new connection; what comes back until the server closes or times out."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=read_timeout_s) as connection:
        # The server may close before the whole oversized head was sent.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.sendall(request)
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return answer


def test_oversized_request_heads_are_refused_with_431(server: tuple[str, Litestar]) -> None:
    url, _ = server
    for size in (MAX_HEAD_BYTES + 1024, 8 * 1024 * 1024):
        head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
        started = time.monotonic()
        answer = raw_exchange(url, head)
        assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
        assert time.monotonic() - started < 5
    # A normal request on the same server is unaffected.
    assert httpx.get(f"{url}/health", headers={"X-Fine": "a" * 4096}).status_code == 200


def test_head_through_the_real_server(server: tuple[str, Litestar]) -> None:
    url, _ = server
    with httpx.Client(base_url=url) as http:  # one keep-alive connection for all three
        got, head = http.get("/model"), http.head("/model")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == got.headers["content-length"]
        assert http.get("/health").json() == {"status": "ok"}  # the connection is still sound


def test_a_body_that_does_not_arrive_in_time_is_a_408(server: tuple[str, Litestar]) -> None:
    url, _ = server
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    started = time.monotonic()
    answer = raw_exchange(url, head + b"Content-Length: 500\r\n\r\n" + b'{"date": ')
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"did not arrive within" in answer
    # Answered after the 0.5 s timeout, and the connection closed (the rest is never read).
    assert time.monotonic() - started < 4


def test_a_client_that_disconnects_is_recorded_as_499_not_500(
    server: tuple[str, Litestar],
) -> None:
    url, _ = server
    head = b"POST /feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    host, port = url.removeprefix("http://").split(":")
    for _ in range(3):
        with socket.create_connection((host, int(port))) as connection:
            connection.sendall(head + b"Content-Length: 500\r\n\r\n" + b'{"prediction_id": ')
            time.sleep(0.05)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        counts = {
            dict(labels)["status"]: count
            for (name, labels), count in samples(httpx.get(f"{url}/metrics").text).items()
            if name == "crimeflow_request_seconds_count" and dict(labels)["route"] == "/feedback"
        }
        if counts.get("499", 0) >= 3:
            break
        time.sleep(0.1)
    assert counts.get("499") == 3, counts
    assert not any(status.startswith("5") for status in counts), counts


def test_forwarded_headers_from_an_untrusted_peer_do_not_reset_the_rate_limit(
    layer_settings: Settings,
) -> None:
    settings = layer_settings.replace(rate_limit_per_minute=3)
    with served(create_app(settings), settings) as url:
        statuses = [
            httpx.get(f"{url}/model", headers={"X-Forwarded-For": f"10.0.0.{n}"}).status_code
            for n in range(6)
        ]
    assert statuses == [200, 200, 200, 429, 429, 429]
    # Behind a proxy, the operator names it and its forwarded headers are believed again.
    trusted = uvicorn_options(settings.replace(api_trusted_proxies=["10.1.0.0/16"]))
    assert trusted["proxy_headers"] is True and trusted["forwarded_allow_ips"] == ["10.1.0.0/16"]
    assert uvicorn_options(settings)["proxy_headers"] is False
