"""Bearer-token auth of the API: JWTs with scopes, on Litestar's own JWT support.

On when `CRIMEFLOW_AUTH_JWT_SECRET` (HS256, what `crimeflow token create` signs) or
`CRIMEFLOW_AUTH_JWKS_URL` (an identity provider's keys: RS256, ES256, ...) is set; off in the
embedded demo. A route is protected when it declares the scope it needs (`requires("predict")`
on the handler, or `opt`/`security` on its controller): `/health`, `/ready`, `/metrics` and
`/schema` declare none and stay open.

The middleware (a `JWTAuthenticationMiddleware`) authenticates: no, malformed, expired or
badly signed token -> 401 with `WWW-Authenticate: Bearer`; the guard authorizes: a valid token
without the route's scope -> 403. Scopes come from the token's `scope` claim (space-separated,
RFC 8693/9068, what this module writes) or `scp` (a list, as some identity providers write it).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

import jwt
from litestar.connection import ASGIConnection
from litestar.exceptions import (
    ImproperlyConfiguredException,
    NotAuthorizedException,
    PermissionDeniedException,
    ServiceUnavailableException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import DefineMiddleware
from litestar.middleware.authentication import AuthenticationResult
from litestar.openapi.spec import SecurityRequirement, SecurityScheme
from litestar.security.jwt import JWTAuth, JWTAuthenticationMiddleware, Token

from crimeflow.contract.settings import AuthSettings

logger = logging.getLogger("crimeflow.api")

SCOPES = ("predict", "feedback", "reports", "admin")
# The key of a route's `opt` that names the scope it needs.
SCOPE_OPT = "auth_scope"
BEARER_SCHEME = "BearerToken"
SECRET_ALGORITHM = "HS256"
# What an identity provider's keys may sign with; HS* never (the JWKS is public).
JWKS_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# A JWKS fetch blocks a worker thread; the request waits at most this long for it.
JWKS_TIMEOUT_S = 5.0
# Keys are re-read this often (rotation), and at most every JWKS_COOLDOWN_S for an unknown kid,
# so that tokens with made-up kids cannot make us hammer the identity provider.
JWKS_CACHE_S = 300.0
JWKS_COOLDOWN_S = 30.0
REALM = 'Bearer realm="crimeflow"'
# Verified tokens are remembered (by their exact text) for this long at most, and never past
# their exp: PyJWT takes ~0.1 ms to verify one, and a client sends the same token many times.
VERIFIED_CACHE_S = 60.0
VERIFIED_CACHE_SIZE = 4096


def bearer_scheme() -> SecurityScheme:
    """The OpenAPI security scheme of the bearer tokens."""
    return SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="JWT",
        description=(
            "A JWT with the operation's scope (`scope` claim, space-separated: predict, "
            "feedback, reports, admin). Required when the API runs with "
            "CRIMEFLOW_AUTH_JWT_SECRET or CRIMEFLOW_AUTH_JWKS_URL set; `crimeflow token create "
            "--scope predict` signs one. The embedded demo runs without auth."
        ),
    )


def bearer(scope: str) -> list[SecurityRequirement]:
    """The OpenAPI security requirement of an operation that needs `scope`."""
    return [{BEARER_SCHEME: [scope]}]


def requires(scope: str) -> dict[str, Any]:
    """Route-handler keyword arguments that protect it with `scope` (opt + OpenAPI security)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; scopes are {', '.join(SCOPES)}")
    return {"opt": {SCOPE_OPT: scope}, "security": bearer(scope)}


# --- tokens -----------------------------------------------------------------------------------


@dataclass
class ScopedToken(Token):
    """Litestar's JWT Token plus the standard `scope` claim (RFC 8693), top level."""

    scope: str | list[str] = ""
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def scopes(self) -> frozenset[str]:
        """The scopes granted: `scope` (space-separated or a list) and `scp` (some IdPs)."""
        granted: set[str] = set()
        for claim in (self.scope, self.extras.get("scp", "")):
            granted.update(claim.split() if isinstance(claim, str) else map(str, claim))
        return frozenset(granted)

    def encode(self, secret: str, algorithm: str) -> str:
        """The signed JWT, standard claims at the top level (no empty `extras` claim)."""
        payload = {k: v for k, v in asdict(self).items() if v not in (None, "", {})}
        payload.update(payload.pop("extras", {}))
        try:
            return jwt.encode(payload, key=secret, algorithm=algorithm)
        except (jwt.PyJWTError, NotImplementedError) as error:
            raise ImproperlyConfiguredException("failed to encode the token") from error


def parse_ttl(text: str) -> timedelta:
    """A token lifetime: seconds, or a number with s, m, h or d (`90`, `15m`, `1h`, `7d`)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip().lower()
    factor = units.get(value[-1:])
    number = value[:-1] if factor is not None else value
    try:
        seconds = float(number) * (factor or 1)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90, 15m, 1h, 7d)") from None
    if not 0 < seconds <= 366 * 86400:
        raise ValueError(f"a token lifetime must be more than 0 s and at most 366 days: {text!r}")
    return timedelta(seconds=seconds)


def create_token(
    settings: AuthSettings,
    scopes: list[str],
    ttl: timedelta | None = None,
    subject: str = "crimeflow-cli",
) -> str:
    """An HS256 token signed with CRIMEFLOW_AUTH_JWT_SECRET, for `crimeflow token create`."""
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""
    if not secret:
        raise ValueError(
            "CRIMEFLOW_AUTH_JWT_SECRET is not set: there is no key to sign tokens with "
            "(with only a JWKS URL, tokens come from the identity provider)"
        )
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(
            f"unknown scope {', '.join(unknown)}; scopes are {', '.join(SCOPES)}"
            if unknown
            else "give at least one --scope"
        )
    config = JWTAuth[str, ScopedToken](
        token_secret=secret,
        retrieve_user_handler=_subject,
        token_cls=ScopedToken,
        algorithm=SECRET_ALGORITHM,
        default_token_expiration=timedelta(seconds=settings.ttl_s),
    )
    return config.create_token(
        identifier=subject,
        token_expiration=ttl,
        token_issuer=settings.issuer or None,
        token_audience=settings.audience or None,
        token_unique_jwt_id=uuid.uuid4().hex,
        scope=" ".join(dict.fromkeys(scopes)),  # in the order given, once each
    )


# --- keys -------------------------------------------------------------------------------------


class JwksKeys:
    """An identity provider's signing keys, fetched with a bounded timeout and cached."""

    def __init__(self, url: str, client: jwt.PyJWKClient | None = None) -> None:
        self.client = client or jwt.PyJWKClient(
            url,
            lifespan=JWKS_CACHE_S,
            timeout=JWKS_TIMEOUT_S,
            cooldown_duration=JWKS_COOLDOWN_S,
        )

    def cached(self, kid: str) -> jwt.PyJWK | None:
        """The key with this kid from the cached set, without any I/O (None: not cached)."""
        cache = self.client.jwk_set_cache
        jwk_set = cache.get() if cache is not None else None
        if jwk_set is None:
            return None
        return next((key for key in jwk_set.keys if key.key_id == kid), None)

    async def key(self, kid: str) -> jwt.PyJWK:
        """The signing key with this kid; fetches (in a thread) when it is not cached."""
        found = self.cached(kid)
        if found is not None:
            return found
        try:
            return await asyncio.to_thread(self.client.get_signing_key, kid)
        except jwt.PyJWKClientConnectionError as error:
            # Not the client's fault: the token may be fine, we cannot check it now.
            logger.warning("JWKS fetch failed", extra={"fields": {"error": str(error)}})
            raise ServiceUnavailableException(
                detail="cannot check the token now: the identity provider's keys are unreachable"
            ) from None
        except jwt.PyJWKClientError:
            raise _unauthorized(f"no key of the identity provider has kid {kid!r}") from None


class VerifiedTokens:
    """A bounded memo of tokens that verified: their text -> (token, until when it counts)."""

    def __init__(self, size: int = VERIFIED_CACHE_SIZE, ttl_s: float = VERIFIED_CACHE_S) -> None:
        self.size = size
        self.ttl_s = ttl_s
        self._tokens: OrderedDict[str, tuple[ScopedToken, float]] = OrderedDict()

    def get(self, encoded: str) -> ScopedToken | None:
        """The verified token, if it was verified recently and has not expired since."""
        found = self._tokens.get(encoded)
        if found is None:
            return None
        token, until = found
        if time.time() >= until:
            del self._tokens[encoded]
            return None
        return token

    def put(self, encoded: str, token: ScopedToken) -> None:
        """Remember a verified token (the oldest one goes when full)."""
        until = min(token.exp.timestamp(), time.time() + self.ttl_s)
        self._tokens[encoded] = (token, until)
        if len(self._tokens) > self.size:
            self._tokens.popitem(last=False)


# --- authentication (401) and authorization (403) --------------------------------------------


def _unauthorized(detail: str, invalid: bool = True) -> NotAuthorizedException:
    """A 401 that asks for a bearer token; `invalid`: one was sent and refused (RFC 6750 3)."""
    header = f'{REALM}, error="invalid_token"' if invalid else REALM
    return NotAuthorizedException(detail=detail, headers={"WWW-Authenticate": header})


# Why PyJWT refused a token, in the words a client can act on; the first match wins.
_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet (nbf/iat in the future)"),
    (jwt.InvalidSignatureError, "the token's signature does not verify"),
    (jwt.InvalidAudienceError, "the token's audience (aud) is not this API's"),
    (jwt.InvalidIssuerError, "the token's issuer (iss) is not the accepted one"),
    (jwt.MissingRequiredClaimError, "the token lacks a required claim"),
    (jwt.InvalidAlgorithmError, "the token's signing algorithm is not accepted"),
    (jwt.DecodeError, "the token is malformed"),
)


def _reason(error: BaseException | None) -> str:
    """The client-facing reason for a refused token."""
    for kind, reason in _REASONS:
        if isinstance(error, kind):
            return reason
    if isinstance(error, KeyError | NotAuthorizedException):
        return "the token lacks a required claim (sub, exp and iat are required)"
    if isinstance(error, ImproperlyConfiguredException):
        return "the token's iat is in the future or its sub is empty"
    return "the token is invalid"


class BearerAuthMiddleware(JWTAuthenticationMiddleware):
    """Litestar's JWT middleware, for the routes that declare a scope, with clear 401 reasons.

    Picks the key by the token's algorithm: HS256 -> CRIMEFLOW_AUTH_JWT_SECRET; an asymmetric
    one -> the identity provider's key named by the token's `kid`.
    """

    def __init__(
        self,
        *args: Any,
        jwks: JwksKeys | None = None,
        verified: VerifiedTokens | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.jwks = jwks
        self.verified = verified if verified is not None else VerifiedTokens()

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        """The request's token (401 when absent or refused); open routes pass untouched."""
        needed = connection.route_handler.opt.get(SCOPE_OPT)
        if needed is None:
            return AuthenticationResult(user=None, auth=None)
        header = connection.headers.get(self.auth_header)
        if not header:
            raise _unauthorized(
                f"this route needs a token with the {needed!r} scope: "
                "send the header Authorization: Bearer <token>",
                invalid=False,
            )
        kind, _, encoded = header.partition(" ")
        if kind.lower() != "bearer" or not encoded.strip():
            raise _unauthorized("the Authorization header must be `Bearer <token>`")
        return await self.authenticate_token(encoded_token=encoded.strip(), connection=connection)

    async def authenticate_token(
        self, encoded_token: str, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        """Verify signature, expiry, issuer and audience with the key the algorithm names."""
        remembered = self.verified.get(encoded_token)
        if remembered is not None:
            return AuthenticationResult(user=remembered.sub, auth=remembered)
        key, algorithm = await self._key(encoded_token)
        try:
            token = self.token_cls.decode(
                encoded_token=encoded_token,
                secret=key,  # a PyJWK for the identity provider's keys: PyJWT takes both
                algorithm=algorithm,
                audience=self.token_audience,
                issuer=self.token_issuer,
                require_claims=self.require_claims,
            )
        except NotAuthorizedException as error:
            raise _unauthorized(_reason(error.__cause__)) from None
        self.verified.put(encoded_token, token)
        return AuthenticationResult(user=token.sub, auth=token)

    async def _key(self, encoded_token: str) -> tuple[Any, str]:
        """The verification key and algorithm for this token (401 when none applies)."""
        try:
            header = jwt.get_unverified_header(encoded_token)
        except jwt.PyJWTError:
            raise _unauthorized("the token is malformed") from None
        algorithm = header.get("alg")
        if algorithm == SECRET_ALGORITHM and self.token_secret:
            return self.token_secret, SECRET_ALGORITHM
        if algorithm in JWKS_ALGORITHMS and self.jwks is not None:
            kid = header.get("kid")
            if not isinstance(kid, str) or not kid:
                raise _unauthorized("the token has no kid header naming its signing key")
            key = await self.jwks.key(kid)
            # The key decides the algorithm: a token cannot pick a weaker one for a key.
            return key, key.algorithm_name
        accepted = ([SECRET_ALGORITHM] if self.token_secret else []) + (
            sorted(JWKS_ALGORITHMS) if self.jwks is not None else []
        )
        raise _unauthorized(
            f"tokens signed with {algorithm!r} are not accepted (accepted: {', '.join(accepted)})"
        )


def require_scope(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Guard: the authenticated token carries the scope the route declares (else 403)."""
    needed = handler.opt.get(SCOPE_OPT)
    if needed is None or connection.scope.get("method") == "OPTIONS":
        # OPTIONS (allowed methods, CORS preflights) carries no token, as the middleware knows.
        return
    token = connection.scope.get("auth")
    if not isinstance(token, ScopedToken):  # the middleware always sets it on these routes
        raise _unauthorized(f"this route needs a token with the {needed!r} scope", invalid=False)
    if needed not in token.scopes:
        granted = ", ".join(sorted(token.scopes)) or "none"
        raise PermissionDeniedException(
            detail=f"the token lacks the {needed!r} scope this route needs (it has: {granted})",
            headers={"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{needed}"'},
        )


async def _subject(token: ScopedToken, _: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The request's user: the token's subject (no user store to look it up in)."""
    return token.sub


# --- wiring -----------------------------------------------------------------------------------


@dataclass
class BearerAuth(JWTAuth[str, ScopedToken]):
    """Litestar's JWTAuth config with our middleware and, optionally, an identity provider."""

    jwks: JwksKeys | None = None
    # One memo for the app: Litestar builds a middleware instance per route.
    verified: VerifiedTokens = field(default_factory=VerifiedTokens)

    @property
    def middleware(self) -> DefineMiddleware:
        """JWTAuth's middleware definition, plus the identity provider's keys and the memo."""
        define = super().middleware
        define.kwargs.update(jwks=self.jwks, verified=self.verified)
        return define


@dataclass(frozen=True)
class ApiAuth:
    """What the app factory adds for auth: middleware and guards (both empty when off)."""

    middleware: list[DefineMiddleware]
    guards: list[Callable[..., Any]]


def api_auth(settings: AuthSettings, jwks: JwksKeys | None = None) -> ApiAuth:
    """The auth of an app built from `settings`: nothing when auth is off (no I/O here)."""
    if not settings.enabled:
        return ApiAuth(middleware=[], guards=[])
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""
    if jwks is None and settings.jwks_url:
        jwks = JwksKeys(settings.jwks_url)
    if settings.jwks_url and not settings.audience:
        logger.warning(
            "auth: JWKS without CRIMEFLOW_AUTH_AUDIENCE accepts every token the identity "
            "provider signs, for any application"
        )
    config = BearerAuth(
        token_secret=secret,
        retrieve_user_handler=_subject,
        token_cls=ScopedToken,
        algorithm=SECRET_ALGORITHM,
        authentication_middleware_class=BearerAuthMiddleware,
        openapi_security_scheme_name=BEARER_SCHEME,
        accepted_issuers=[settings.issuer] if settings.issuer else None,
        accepted_audiences=[settings.audience] if settings.audience else None,
        # CORS preflights carry no token; HEAD is authenticated like the GET it mirrors.
        exclude_http_methods=["OPTIONS"],
        jwks=jwks,
    )
    return ApiAuth(middleware=[config.middleware], guards=[require_scope])
