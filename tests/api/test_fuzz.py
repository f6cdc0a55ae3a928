"""Property-based fuzz of every endpoint: no request, however malformed, gets a 5xx.

Methods, paths (every route, route-like and unknown ones), headers (content types, request ids,
forwarded addresses, API keys, junk) and bodies (arbitrary bytes, arbitrary JSON, incidents
with wrong values, invalid UTF-8, deep nesting) are drawn by hypothesis and sent through
Litestar's TestClient to an app with a real model and a SQLite log. `test_app.py` fuzzes the
incident bodies of /predict and /predict/batch in depth; this covers the rest of the surface.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from api.app import create_app
from crimeflow.contract.settings import Settings
from tests.api.test_app import API_KEY, INCIDENT_BODIES, JSON_VALUES, NEARLY_VALID, copy_home

PATHS = [
    "/predict",
    "/predict/batch",
    "/feedback",
    "/health",
    "/ready",
    "/model",
    "/metrics",
    "/admin/reload",
    "/reports",
    "/reports/latest",
    "/reports/20250101T000000Z-abcd",
    "/reports/..%2F..%2Fetc%2Fpasswd",
    "/schema",
    "/schema/openapi.json",
    "/schema/swagger",
    "/",
    "/predict/",
    "/nope",
]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/problem+json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/octet-stream",
    "",
    "application/json; charset=latin-1",
]
# Header values httpx can send: visible ASCII and spaces.
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
HEADERS = st.fixed_dictionaries(
    {
        # Mostly JSON, so that most bodies get past the content-type check to the decoders.
        "content-type": st.sampled_from(["application/json"] * 4 + [None])
        | st.sampled_from(CONTENT_TYPES)
        | HEADER_TEXT,
    },
    optional={
        "x-request-id": HEADER_TEXT,
        "x-forwarded-for": HEADER_TEXT,
        "x-api-key": st.just(API_KEY) | HEADER_TEXT,
        "accept": st.sampled_from(["*/*", "text/html", "application/json"]) | HEADER_TEXT,
        "content-encoding": st.sampled_from(["gzip", "br", "identity"]),
        "x-junk": HEADER_TEXT,
    },
).map(lambda headers: {name: value for name, value in headers.items() if value is not None})


def _json(value: Any) -> bytes:
    """JSON text of a drawn value (NaN and infinities as Python writes them: invalid JSON)."""
    return json.dumps(value).encode()


BODIES = st.one_of(
    st.just(b""),
    st.binary(max_size=300),
    JSON_VALUES.map(_json),
    NEARLY_VALID.map(_json),
    INCIDENT_BODIES.map(_json),
    st.lists(NEARLY_VALID | INCIDENT_BODIES, min_size=1, max_size=3).map(_json),
    st.fixed_dictionaries(
        {"prediction_id": st.from_regex(r"[0-9a-f]{32}\n?", fullmatch=True) | HEADER_TEXT},
        optional={"arrest": st.booleans() | JSON_VALUES},
    ).map(_json),
    # Invalid UTF-8 inside a string, and nesting deeper than any parser's limit.
    NEARLY_VALID.map(lambda body: _json(body).replace(b': "', b': "\xff', 1)),
    st.integers(200, 3000).map(lambda depth: b'{"x": ' + b"[" * depth + b"]" * depth + b"}"),
)


@pytest.fixture(scope="module")
def client(registry_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A running app with an admin key (lifespan entered once for the module)."""
    fuzz_settings: Settings = copy_home(registry_home, tmp_path_factory.mktemp("fuzz") / "home")
    with TestClient(create_app(fuzz_settings)) as test_client:
        yield test_client


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.just("POST") | st.sampled_from(METHODS),
    path=st.sampled_from(PATHS[:3]) | st.sampled_from(PATHS),
    headers=HEADERS,
    body=BODIES,
)
def test_no_request_gets_a_server_error(
    client: TestClient[Any], method: str, path: str, headers: dict[str, str], body: bytes
) -> None:
    content = None if method in ("GET", "HEAD") and not body else body
    response = client.request(method, path, headers=headers, content=content)
    event(f"{method} {path} -> {response.status_code}")
    assert response.status_code < 500, (method, path, headers, body[:200], response.text[:500])
    if response.status_code >= 400 and method != "HEAD" and path not in ("/schema/swagger",):
        # Every error answers in the one error shape.
        answer = response.json()
        assert answer["status_code"] == response.status_code and answer["detail"]
