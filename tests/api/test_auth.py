"""API auth: bearer JWTs with scopes, on every protected route, HS256 and an identity provider.

The apps here are real (Litestar's TestClient runs the lifespan): one with a JWT secret on a
copy of the session's registry (so every protected route can answer 200), one on an identity
provider's JWKS served by a local HTTP server, and one without auth settings.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.auth import (
    SCOPE_OPT,
    SCOPES,
    ScopedToken,
    VerifiedTokens,
    create_token,
    parse_ttl,
    requires,
)
from crimeflow.cli.main import app as cli
from crimeflow.contract import settings as settings_module
from crimeflow.contract.settings import Settings
from tests.api.test_app import API_KEY, OTHER, copy_home

SECRET = "test-secret-" + "s" * 32
ISSUER = "https://crimeflow.example.org/"
AUDIENCE = "crimeflow-api"
# Every route that needs a token: method, path, scope, body, the status a right token gets
# (404s are the route's own answer: an unknown prediction id, no report yet).
PROTECTED: list[tuple[str, str, str, Any, int]] = [
    ("POST", "/predict", "predict", OTHER, 200),
    ("POST", "/predict/batch", "predict", [OTHER, OTHER], 200),
    ("POST", "/feedback", "feedback", {"prediction_id": "0" * 32, "arrest": True}, 404),
    ("GET", "/model", "predict", None, 200),
    ("GET", "/reports", "reports", None, 200),
    ("GET", "/reports/latest", "reports", None, 404),
    ("GET", "/reports/20990101T000000Z-beef", "reports", None, 404),
    ("GET", "/analysis/latest", "reports", None, 404),
    ("GET", "/analysis/latest.json", "reports", None, 404),
    ("GET", "/analysis/2099-01", "reports", None, 404),
    ("GET", "/performance", "reports", None, 404),
    ("POST", "/admin/reload", "admin", None, 200),
]
OPEN = ["/health", "/ready", "/metrics", "/schema", "/schema/openapi.json"]
PEM, SPKI = Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
ROUTE_IDS = [f"{method} {path}" for method, path, *_ in PROTECTED]


def token(
    scopes: list[str] | str,
    expires_in_s: float = 300,
    key: Any = SECRET,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """A JWT as any issuer would write it (PyJWT directly, not our own code)."""
    now = datetime.now(UTC)
    payload = {
        "sub": "tester",
        "iat": now - timedelta(seconds=5),
        "exp": now + timedelta(seconds=expires_in_s),
        "iss": ISSUER,
        "aud": AUDIENCE,
        "scope": scopes if isinstance(scopes, str) else " ".join(scopes),
        **claims,
    }
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


def hs256_by_hand(key: bytes, scopes: list[str], claims: dict[str, Any] | None = None) -> str:
    """An HS256 JWT signed with any bytes and any claims (PyJWT refuses some of both)."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    if claims is None:
        claims = {"sub": "x", "iat": now, "exp": now + 60, "aud": AUDIENCE, "iss": ISSUER}
        claims["scope"] = " ".join(scopes)
    header = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = part(json.dumps(claims).encode())
    signature = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{part(signature)}"


def call(client: TestClient[Any], method: str, path: str, body: Any, bearer: str | None) -> Any:
    """One request, with `Authorization: Bearer <bearer>` when given."""
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    return client.request(method, path, json=body, headers=headers)


def assert_401(response: Any, reason: str) -> None:
    """401 in the error shape, naming `reason`, asking for a bearer token."""
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["status_code"] == 401 and reason in body["detail"], body
    assert set(body) == {"status_code", "detail"}  # the ErrorBody shape, no field errors
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.fixture(scope="module")
def auth_settings(registry_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A registry copy served with a JWT secret, a required issuer and audience."""
    settings = copy_home(registry_home, tmp_path_factory.mktemp("auth") / "home")
    return settings.replace(
        auth_jwt_secret=Settings(_env_file=None, auth_jwt_secret=SECRET).auth.jwt_secret,
        auth_issuer=ISSUER,
        auth_audience=AUDIENCE,
    )


@pytest.fixture(scope="module")
def client(auth_settings: Settings) -> Iterator[TestClient[Any]]:
    """The app with auth on (lifespan entered once for the module)."""
    with TestClient(create_app(auth_settings)) as test_client:
        yield test_client


def beside(settings: Settings, tmp_path: Path, **changes: Any) -> Settings:
    """The same registry (no new MLflow store to create), its own log, other auth settings."""
    log = f"sqlite:///{(tmp_path / 'predictions.db').resolve()}"
    return settings.replace(prediction_log_url=log, **changes)


# --- a test per case on every protected route -------------------------------------------------


@pytest.mark.parametrize(("method", "path", "scope", "body", "ok"), PROTECTED, ids=ROUTE_IDS)
def test_no_token_is_401(client: TestClient[Any], method, path, scope, body, ok) -> None:
    response = call(client, method, path, body, None)
    assert_401(response, f"needs a token with the {scope!r} scope")
    assert response.headers["www-authenticate"] == 'Bearer realm="crimeflow"'


@pytest.mark.parametrize(("method", "path", "scope", "body", "ok"), PROTECTED, ids=ROUTE_IDS)
def test_expired_token_is_401(client: TestClient[Any], method, path, scope, body, ok) -> None:
    response = call(client, method, path, body, token(list(SCOPES), expires_in_s=-60))
    assert_401(response, "the token has expired")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


@pytest.mark.parametrize(("method", "path", "scope", "body", "ok"), PROTECTED, ids=ROUTE_IDS)
def test_token_without_the_scope_is_403(
    client: TestClient[Any], method, path, scope, body, ok
) -> None:
    others = [s for s in SCOPES if s != scope]
    response = call(client, method, path, body, token(others))
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["status_code"] == 403 and set(body) == {"status_code", "detail"}
    assert f"lacks the {scope!r} scope" in body["detail"]
    assert f'scope="{scope}"' in response.headers["www-authenticate"]


@pytest.mark.parametrize(("method", "path", "scope", "body", "ok"), PROTECTED, ids=ROUTE_IDS)
def test_token_with_the_scope_is_served(
    client: TestClient[Any], method, path, scope, body, ok
) -> None:
    response = call(client, method, path, body, token([scope]))
    assert response.status_code == ok, response.text


def test_every_route_is_open_on_purpose_or_protected(client: TestClient[Any]) -> None:
    handlers = [
        (method, route.path, handler)
        for route in client.app.routes
        for handler in getattr(route, "route_handlers", [])
        for method in handler.http_methods
        if method != "OPTIONS"  # open: allowed methods and CORS preflights, no token
    ]
    unprotected = {path for _, path, handler in handlers if SCOPE_OPT not in handler.opt}
    # A new route is protected unless it is added to the open list here and in the docs.
    assert {p for p in unprotected if not p.startswith("/schema")} == {
        "/health",
        "/ready",
        "/metrics",
    }
    declared = {
        (method, path)
        for method, path, handler in handlers
        if SCOPE_OPT in handler.opt and method != "HEAD"  # a HEAD shares its GET's handler
    }
    listed = {
        (
            method,
            path.replace("20990101T000000Z-beef", "{report_id:str}").replace(
                "2099-01", "{month:str}"
            ),
        )
        for method, path, *_ in PROTECTED
    }
    assert declared == listed
    for path in OPEN:
        assert client.get(path).status_code in (200, 503), path  # /ready may be 503, never 401
    # OPTIONS says which methods a route has, without a token (CORS preflights send none).
    assert client.options("/reports").status_code == 204


# --- what else a token can get wrong ----------------------------------------------------------


@pytest.mark.parametrize(
    ("bearer", "reason"),
    [
        (token(["predict"], key="another-secret-" + "x" * 32), "signature does not verify"),
        (token(["predict"], aud="someone-else"), "audience"),
        (token(["predict"], iss="https://evil.example/"), "issuer"),
        (token(["predict"], iat=datetime.now(UTC) + timedelta(days=1)), "iat"),
        ("not-a-jwt", "malformed"),
        (jwt.encode({"sub": "x", "scope": "predict"}, SECRET, algorithm="HS256"), "claim"),
        (jwt.encode({"sub": "x", "scope": "predict"}, None, algorithm="none"), "not accepted"),
        (token(["predict"], key=SECRET + "-384", algorithm="HS384"), "not accepted"),
    ],
    ids=[
        "signature",
        "audience",
        "issuer",
        "future-iat",
        "malformed",
        "no-exp",
        "alg-none",
        "hs384",
    ],
)
def test_refused_tokens_say_why(client: TestClient[Any], bearer: str, reason: str) -> None:
    assert_401(call(client, "GET", "/model", None, bearer), reason)


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
CLAIMS = st.dictionaries(
    st.sampled_from(["sub", "exp", "iat", "nbf", "iss", "aud", "scope", "scp", "jti", "x"]),
    JSON_SCALARS | st.lists(JSON_SCALARS, max_size=3),
)
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(claims=CLAIMS, header=HEADER_TEXT, signed=st.booleans())
def test_no_header_or_claims_make_a_5xx(
    client: TestClient[Any], claims: dict[str, Any], header: str, signed: bool
) -> None:
    value = f"Bearer {hs256_by_hand(SECRET.encode(), [], claims)}" if signed else header
    response = client.get("/model", headers={"Authorization": value})
    assert response.status_code in (200, 401, 403), (value, response.text)
    assert response.json()["status_code"] == response.status_code or response.status_code == 200


def test_the_header_must_be_bearer(client: TestClient[Any]) -> None:
    response = client.get("/model", headers={"Authorization": f"Basic {token(['predict'])}"})
    assert_401(response, "must be `Bearer <token>`")


def test_scopes_from_a_list_or_the_scp_claim_count(client: TestClient[Any]) -> None:
    assert call(client, "GET", "/model", None, token(["reports", "predict"])).status_code == 200
    as_list = token("", scp=["predict"])
    assert call(client, "GET", "/model", None, as_list).status_code == 200


def test_with_auth_on_the_admin_key_alone_is_not_enough(client: TestClient[Any]) -> None:
    response = client.post("/admin/reload", headers={"X-API-Key": API_KEY})
    assert_401(response, "'admin' scope")


def test_unauthenticated_requests_are_logged_and_counted_as_401(client: TestClient[Any]) -> None:
    client.get("/model")
    metrics = client.get("/metrics").text
    assert 'route="/model",status="401"' in metrics


def test_the_schema_declares_the_bearer_scheme_on_protected_operations_only(
    client: TestClient[Any],
) -> None:
    spec = client.get("/schema/openapi.json").json()
    scheme = spec["components"]["securitySchemes"]["BearerToken"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    for method, path, scope, *_ in PROTECTED:
        template = path.replace("20990101T000000Z-beef", "{report_id}").replace(
            "2099-01", "{month}"
        )
        operation = spec["paths"][template][method.lower()]
        assert {"BearerToken": [scope]} in operation["security"], (method, path)
    for path in ("/health", "/ready"):
        assert "security" not in spec["paths"][path]["get"]
    assert "security" not in spec  # no global requirement: the probes stay open


def test_a_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(_env_file=None, auth_jwt_secret=SECRET).auth
    encoded = create_token(settings, ["predict"], ttl=timedelta(seconds=30))
    verified = ScopedToken.decode(encoded, SECRET, "HS256")
    memo = VerifiedTokens(size=2, ttl_s=3600)
    memo.put(encoded, verified)
    assert memo.get(encoded) is verified
    later = time.time() + 31
    monkeypatch.setattr("api.auth.time.time", lambda: later)
    assert memo.get(encoded) is None  # past its exp: verified again, and refused
    for n in range(3):  # bounded: the oldest goes
        memo.put(f"t{n}", verified)
    assert memo.get("t0") is None


def test_a_reused_token_is_served_from_the_memo_until_it_expires(
    client: TestClient[Any],
) -> None:
    bearer = token(["predict"], expires_in_s=2)
    assert call(client, "GET", "/model", None, bearer).status_code == 200
    assert call(client, "GET", "/model", None, bearer).status_code == 200
    time.sleep(2.1)
    assert_401(call(client, "GET", "/model", None, bearer), "the token has expired")


# --- the embedded default: no auth ------------------------------------------------------------


def test_without_auth_settings_every_route_serves_without_a_token(
    auth_settings: Settings, tmp_path: Path
) -> None:
    settings = beside(auth_settings, tmp_path, auth_jwt_secret=None)
    assert not settings.auth.enabled
    with TestClient(create_app(settings)) as client:
        for method, path, scope, body, ok in PROTECTED:
            # Admin keeps its own key while auth is off (docs/operations.md#auth).
            headers = {"X-API-Key": API_KEY} if scope == "admin" else {}
            response = client.request(method, path, json=body, headers=headers)
            assert response.status_code == ok, (method, path, response.text)
        assert client.post("/admin/reload").status_code == 401  # the key is still required


# --- crimeflow token create -------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """The CLI's settings from this environment (no .env, no CRIMEFLOW_* of the shell)."""
    monkeypatch.chdir(Path(__file__).parent)  # no .env here
    for name in [n for n in os.environ if n.startswith("CRIMEFLOW_")]:
        monkeypatch.delenv(name)
    settings_module.get_settings.cache_clear()
    yield monkeypatch
    settings_module.get_settings.cache_clear()


def test_a_created_token_is_accepted_by_the_app(
    client: TestClient[Any], cli_env: pytest.MonkeyPatch
) -> None:
    cli_env.setenv("CRIMEFLOW_AUTH_JWT_SECRET", SECRET)
    cli_env.setenv("CRIMEFLOW_AUTH_ISSUER", ISSUER)
    cli_env.setenv("CRIMEFLOW_AUTH_AUDIENCE", AUDIENCE)
    args = ["token", "create", "--scope", "predict", "--scope", "reports", "--ttl", "1h"]
    result = CliRunner().invoke(cli, [*args, "--subject", "dashboard"])
    assert result.exit_code == 0, result.output
    printed = result.output.strip()
    assert "\n" not in printed
    claims = jwt.decode(printed, SECRET, algorithms=["HS256"], audience=AUDIENCE)
    assert claims["sub"] == "dashboard" and claims["scope"] == "predict reports"
    assert claims["iss"] == ISSUER and 3590 <= claims["exp"] - claims["iat"] <= 3600
    assert "extras" not in claims
    assert call(client, "GET", "/model", None, printed).status_code == 200
    assert call(client, "GET", "/reports", None, printed).status_code == 200
    assert call(client, "POST", "/admin/reload", None, printed).status_code == 403


def test_token_create_without_a_secret_is_one_line_and_exit_2(
    cli_env: pytest.MonkeyPatch,
) -> None:
    result = CliRunner().invoke(cli, ["token", "create", "--scope", "predict"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "CRIMEFLOW_AUTH_JWT_SECRET is not set" in lines[0]


@pytest.mark.parametrize("args", [["--scope", "root"], ["--scope", "predict", "--ttl", "soon"]])
def test_token_create_refuses_unknown_scopes_and_bad_ttls(
    cli_env: pytest.MonkeyPatch, args: list[str]
) -> None:
    cli_env.setenv("CRIMEFLOW_AUTH_JWT_SECRET", SECRET)
    result = CliRunner().invoke(cli, ["token", "create", *args])
    assert result.exit_code == 2 and result.output.startswith("error: "), result.output


def test_ttl_parsing() -> None:
    assert parse_ttl("90") == timedelta(seconds=90)
    assert parse_ttl("15m") == timedelta(minutes=15)
    assert parse_ttl("1h") == timedelta(hours=1)
    assert parse_ttl("7d") == timedelta(days=7)
    for bad in ("0", "-1h", "2y", "", "nan", "400d"):
        with pytest.raises(ValueError):
            parse_ttl(bad)


def test_create_token_writes_standard_claims() -> None:
    settings = Settings(_env_file=None, auth_jwt_secret=SECRET).auth
    encoded = create_token(settings, ["admin", "admin", "predict"], subject="ops")
    decoded = ScopedToken.decode(encoded, SECRET, "HS256")
    assert decoded.sub == "ops" and decoded.scopes == {"admin", "predict"}
    assert decoded.scope == "admin predict"
    with pytest.raises(ValueError, match="scope"):
        requires("root")


# --- an identity provider's JWKS --------------------------------------------------------------


class Jwks:
    """A tiny identity provider: its JWKS on a local HTTP server, counting the fetches."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.body = json.dumps({"keys": [{**jwk, "kid": self.kid, "use": "sig"}]}).encode()
        self.fetches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(owner.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, scopes: list[str], kid: str | None = None, key: Any = None) -> str:
        """An RS256 token as the provider signs it."""
        return token(
            scopes, key=key or self.key, algorithm="RS256", headers={"kid": kid or self.kid}
        )


@pytest.fixture(scope="module")
def idp() -> Iterator[Jwks]:
    """The identity provider, for the module."""
    provider = Jwks()
    yield provider
    provider.server.shutdown()
    provider.server.server_close()


def test_identity_provider_tokens_are_checked_against_its_jwks(
    idp: Jwks, auth_settings: Settings, tmp_path: Path
) -> None:
    settings = beside(auth_settings, tmp_path, auth_jwt_secret=None, auth_jwks_url=idp.url)
    with TestClient(create_app(settings)) as client:
        assert call(client, "GET", "/reports", None, idp.token(["reports"])).status_code == 200
        assert call(client, "GET", "/reports", None, idp.token(["reports"])).status_code == 200
        assert idp.fetches == 1  # cached
        response = call(client, "GET", "/reports", None, idp.token(["predict"]))
        assert response.status_code == 403
        forged = idp.token(["reports"], key=rsa.generate_private_key(65537, 2048))
        assert_401(call(client, "GET", "/reports", None, forged), "signature does not verify")
        unknown = idp.token(["reports"], kid="rotated-away")
        assert_401(call(client, "GET", "/reports", None, unknown), "no key")
        # With only a JWKS, HS256 tokens (anyone's shared secret) are not accepted.
        assert_401(call(client, "GET", "/reports", None, token(["reports"])), "not accepted")
        # HS256 "signed" with the provider's public key (algorithm confusion): refused too.
        confused = hs256_by_hand(idp.key.public_key().public_bytes(PEM, SPKI), ["reports"])
        assert_401(call(client, "GET", "/reports", None, confused), "not accepted")


def test_an_unreachable_jwks_is_a_503_within_the_timeout(
    auth_settings: Settings, tmp_path: Path
) -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as closed:
        url = f"http://127.0.0.1:{closed.server_address[1]}/jwks.json"
    settings = beside(auth_settings, tmp_path, auth_jwt_secret=None, auth_jwks_url=url)
    with TestClient(create_app(settings)) as client:
        started = time.monotonic()
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        bearer = token(["reports"], key=key, algorithm="RS256", headers={"kid": "k"})
        response = call(client, "GET", "/reports", None, bearer)
        assert response.status_code == 503, response.text
        assert "identity provider" in response.json()["detail"]
        assert time.monotonic() - started < 6
        assert client.get("/health").status_code == 200
