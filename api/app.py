"""The Litestar app factory and its lifespan (model, prediction log, micro-batcher, poll).

`create_app(settings)` builds the app and does no I/O; everything that touches MLflow or the
database opens in the lifespan and closes with it (uvicorn runs the shutdown on SIGTERM after
in-flight requests finish, so every answered prediction is committed). Serve it with
`crimeflow api` or `uvicorn --factory api.app:create_app`.

The champion loads in a background task: startup waits for it at most
`CRIMEFLOW_API_MODEL_LOAD_WAIT_S`, then the server listens anyway, so an unreachable registry
never keeps `/health` down; `/ready` answers 503 "loading the model", then the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shutil
import signal
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.exceptions import HTTPException, ValidationException
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import Receive, Send
from redis.asyncio import Redis

from api.auth import BEARER_SCHEME, api_auth, bearer_scheme
from api.controllers import (
    API_KEY_HEADER,
    API_KEY_SCHEME,
    DEPENDENCIES,
    AdminController,
    OperationsController,
    PredictionController,
    Services,
    check_readiness,
    require_json_body,
)
from api.model_service import (
    MicroBatcher,
    ModelHolder,
    ModelReloadError,
    ModelUnavailableError,
)
from api.observability import (
    ApiMetrics,
    FixedWindowRateLimitMiddleware,
    RedisFixedWindowRateLimitMiddleware,
    RedisWindows,
    RequestObserver,
    configure_logging,
)
from api.report_routes import AnalysisController, PerformanceController, ReportsController
from api.schemas import ErrorBody, FieldError, InvalidInputError
from api.server import BODY_READ_TIMEOUT_S, exit_with_parent, uvicorn_options
from crimeflow.contract.redact import redact
from crimeflow.contract.settings import Settings, get_settings
from crimeflow.stores.prediction_log import PredictionLog, PredictionLogError
from crimeflow.stores.serving import ServingModel

logger = logging.getLogger("crimeflow.api")

# Paths that must answer even when a client is throttled (probes, scrapes, docs).
RATE_LIMIT_EXEMPT = [r"^/health$", r"^/ready$", r"^/metrics$", r"^/schema"]
# Request bodies: a batch row is ~0.7 KB as SODA JSON; 3 KiB a row leaves room for long text
# and ignored extra fields while still bounding what one request can make us buffer.
BODY_BYTES_PER_ROW = 3 * 1024
MIN_BODY_BYTES = 1024 * 1024
# A rate-limit check waits this long for Redis before the request goes through unlimited.
REDIS_TIMEOUT_S = 0.25


class CrimeflowApp(Litestar):
    """Litestar with a request id, an access-log line and a latency sample for every request.

    Observing in `__call__` rather than in route middleware also covers responses that never
    reach a route (404, 405) and requests the rate limiter rejects.
    """

    observer: RequestObserver | None = None

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        """ASGI entry point: HTTP requests pass through the observer."""
        if scope["type"] == "http" and self.observer is not None:
            await self.observer(scope, receive, send, super().__call__)
        else:
            await super().__call__(scope, receive, send)


# --- error responses --------------------------------------------------------------------------


def _error(
    status: int,
    detail: str,
    errors: Iterable[FieldError] = (),
    headers: dict[str, str] | None = None,
) -> Response[ErrorBody]:
    """The one error body shape: status_code, detail and (for bad input) field errors."""
    body = ErrorBody(status_code=status, detail=detail, errors=list(errors))
    return Response(body, status_code=status, headers=headers)


def invalid_input_handler(_: Request[Any, Any, Any], error: InvalidInputError) -> Response[Any]:
    """400 naming each bad field (and row)."""
    return _error(400, error.detail, error.errors)


# What a client learns when the prediction log fails; the driver's error (host, port, database
# name) goes to the server log only, masked.
LOG_UNAVAILABLE = (
    "the prediction log database is unreachable or refused the write: the request was not served"
)


def unavailable_handler(_: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    """503: no model, a failed reload, or a prediction log that cannot commit."""
    if isinstance(error, PredictionLogError):
        fields = {"event": "prediction_log_error", "error": redact(str(error))}
        logger.warning("prediction log unavailable", extra={"fields": fields})
        return _error(503, LOG_UNAVAILABLE)
    # Model errors are built from masked one-line reasons (api.model_service).
    return _error(503, redact(str(error)))


def http_error_handler(_: Request[Any, Any, Any], error: HTTPException) -> Response[Any]:
    """Litestar's HTTP errors (404, 405, 413, 429, auth, parameter validation) in our shape."""
    errors: list[FieldError] = []
    if isinstance(error, ValidationException) and isinstance(error.extra, list):
        for item in error.extra:
            if not isinstance(item, dict):
                continue
            key = item.get("key")
            if key == "data":  # Litestar's way of saying the body is missing
                errors.append(FieldError(message="a JSON request body is required"))
            else:
                errors.append(FieldError(message=str(item.get("message", "")), field=key))
    return _error(error.status_code, error.detail, errors, headers=error.headers)


def internal_error_handler(_: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    """500 without internals in the body; the traceback goes to the log with the request id."""
    logger.error("unhandled error", exc_info=error)
    return _error(500, "internal server error")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    InvalidInputError: invalid_input_handler,
    ModelUnavailableError: unavailable_handler,
    ModelReloadError: unavailable_handler,
    PredictionLogError: unavailable_handler,
    HTTPException: http_error_handler,
    Exception: internal_error_handler,
}


# --- lifespan ---------------------------------------------------------------------------------


def _freeze_heap() -> None:
    """Collect once, then exclude everything alive (model, libraries) from future GC passes.

    A full collection walks every object of the loaded model and of pandas, sklearn and
    MLflow: measured 150-250 ms, a stall that every in-flight request would wait out.
    """
    gc.collect()
    gc.freeze()


def _swapped(metrics: ApiMetrics) -> Callable[[ServingModel | None, ServingModel], None]:
    """The holder's swap callback: metrics, and a re-frozen heap so the old model can go."""

    def on_swap(previous: ServingModel | None, model: ServingModel) -> None:
        metrics.model_swapped(previous, model)
        if previous is not None:
            # The old model was frozen with the heap; thaw so a collection can free it. This
            # stalls the loop once per swap (a model swap happens about monthly).
            gc.unfreeze()
        _freeze_heap()  # the first model too: it loads after startup froze the libraries

    return on_swap


async def _load_then_poll(services: Services, interval_s: float) -> None:
    """Load the champion (the server answers meanwhile), report readiness, then poll."""
    holder = services.holder
    with contextlib.suppress(ModelReloadError):  # the reason stays in holder.last_error
        await holder.reload()
    if holder.current is None:
        # The server still runs: /ready and /predict answer 503 with the reason until a
        # champion loads (the poll keeps trying).
        fields = {"reason": holder.unavailable_reason()}
        logger.warning("serving without a model", extra={"fields": fields})
    await check_readiness(services)
    await holder.poll(interval_s)


@asynccontextmanager
async def serving_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Open the prediction log, load the champion, start the batcher and the alias poll."""
    exit_with_parent()  # a worker of `--workers N` must not outlive its supervisor
    state = app.state
    settings: Settings = state.settings
    metrics: ApiMetrics = state.metrics
    prediction_log = PredictionLog.from_settings(settings, metrics.log_hooks())
    await prediction_log.start()
    metrics.model_version.labels(model=settings.model_name).set(0)
    holder = ModelHolder(settings, on_swap=_swapped(metrics))
    _freeze_heap()
    batcher = MicroBatcher(
        holder,
        max_rows=settings.api.microbatch_max_rows,
        wait_ms=settings.api.microbatch_wait_ms,
        on_batch=metrics.microbatch_rows.observe,
    )
    batcher.start()
    state.services = Services(
        settings=settings,
        holder=holder,
        batcher=batcher,
        prediction_log=prediction_log,
        metrics=metrics,
        batch_slots=asyncio.Semaphore(1),
    )
    interval = settings.api.model_poll_interval_s
    poll = asyncio.create_task(_load_then_poll(state.services, interval), name="model-poll")
    # A healthy registry usually loads within the wait, so clients rarely meet "loading"; a
    # down or hanging one does not hold the server (the load goes on in the background).
    await _first_load(holder, settings.api.model_load_wait_s)
    await check_readiness(state.services)
    watch = asyncio.create_task(_watch_readiness(state.services, interval), name="readiness")
    current = holder.current
    logger.info(
        "api started",
        extra={
            "fields": {
                "event": "startup",
                "model_version": current.version if current else None,
                "poll_interval_s": settings.api.model_poll_interval_s,
            }
        },
    )
    try:
        yield
    finally:
        for task in (poll, watch):
            task.cancel()
        await asyncio.gather(poll, watch, return_exceptions=True)
        # In-flight requests have finished (uvicorn waits for them); answer any queued row,
        # then commit and close the log.
        await batcher.stop()
        await prediction_log.stop()
        windows: RedisWindows | None = state.get(RedisFixedWindowRateLimitMiddleware.STATE_KEY)
        if windows is not None:
            await windows.redis.aclose()
        gc.unfreeze()  # the process may go on (tests, an embedding app): make it collectable again
        metrics.worker_stopped()
        logger.info("api stopped", extra={"fields": {"event": "shutdown"}})


async def _first_load(holder: ModelHolder, wait_s: float) -> None:
    """Wait up to `wait_s` for the first reload to end (it goes on in the background)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(holder.first_attempt.wait(), wait_s)


async def _watch_readiness(services: Services, interval_s: float) -> None:
    """Re-check readiness every `interval_s`, so crimeflow_ready moves without a /ready probe."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await check_readiness(services)
        except Exception:
            # A bug must not end the watch silently: the next tick tries again.
            logger.exception("readiness check crashed", extra={"fields": {"event": "readiness"}})


# --- the app ----------------------------------------------------------------------------------


def _redis_url(settings: Settings) -> str | None:
    """The rate limiter's Redis URL, None when unset or empty (in-process windows)."""
    url = settings.api.redis_url
    if url is None or not url.get_secret_value():
        return None
    return url.get_secret_value()


def _middleware(settings: Settings) -> list[Any]:
    """Rate limiting per client address, unless turned off (0); in Redis when it is set."""
    if settings.api.rate_limit_per_minute <= 0:
        return []
    config = RateLimitConfig(
        rate_limit=("minute", settings.api.rate_limit_per_minute),
        exclude=RATE_LIMIT_EXEMPT,
        middleware_class=(
            RedisFixedWindowRateLimitMiddleware
            if _redis_url(settings)
            else FixedWindowRateLimitMiddleware
        ),
    )
    return [config.middleware]


def _rate_limit_state(settings: Settings) -> dict[str, Any]:
    """The Redis windows of the rate limiter, when it counts in Redis (no connection yet)."""
    url = _redis_url(settings)
    if url is None or settings.api.rate_limit_per_minute <= 0:
        return {}
    # Short timeouts: a hung Redis must not hold requests (the limiter fails open instead).
    redis = Redis.from_url(
        url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
    )
    return {RedisFixedWindowRateLimitMiddleware.STATE_KEY: RedisWindows(redis)}


def _openapi() -> OpenAPIConfig:
    """OpenAPI at /schema (JSON at /schema/openapi.json), with the bearer and admin key schemes."""
    return OpenAPIConfig(
        title="crimeflow prediction API",
        version="1.0.0",
        description=(
            "Predicts whether a reported Chicago crime ends in an arrest. Bodies use the SODA "
            "field names of the City of Chicago crimes dataset; a record copied from the SODA "
            "JSON feed is valid input as it is."
        ),
        path="/schema",
        components=Components(
            security_schemes={
                BEARER_SCHEME: bearer_scheme(),
                API_KEY_SCHEME: SecurityScheme(
                    type="apiKey",
                    name=API_KEY_HEADER,
                    security_scheme_in="header",
                    description=(
                        "CRIMEFLOW_API_KEY, for /admin/* while auth is off (with auth on, admin "
                        "needs a bearer token with the admin scope); admin is off without it."
                    ),
                ),
            }
        ),
    )


def create_app(settings: Settings | None = None) -> Litestar:
    """The prediction API; no I/O here (the lifespan opens the model and the log)."""
    settings = settings if settings is not None else get_settings()
    configure_logging()
    metrics = ApiMetrics()
    cors = (
        CORSConfig(allow_origins=settings.api.cors_allow_origins)
        if settings.api.cors_allow_origins
        else None
    )
    auth = api_auth(settings.auth)
    app = CrimeflowApp(
        route_handlers=[
            PredictionController,
            OperationsController,
            AdminController,
            ReportsController,
            AnalysisController,
            PerformanceController,
        ],
        dependencies=DEPENDENCIES,
        lifespan=[serving_lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        # The rate limiter first: floods of bad tokens are throttled before any check.
        middleware=[*_middleware(settings), *auth.middleware],
        # Scopes before the content type: a caller without the right token learns nothing more.
        guards=[*auth.guards, require_json_body],
        cors_config=cors,
        openapi_config=_openapi(),
        state=State({"settings": settings, "metrics": metrics, **_rate_limit_state(settings)}),
        request_max_body_size=max(
            MIN_BODY_BYTES, settings.api.predict_batch_max_rows * BODY_BYTES_PER_ROW
        ),
        # Our JSON logger reports errors (with the request id); Litestar's would repeat them.
        logging_config=None,
    )
    app.observer = RequestObserver(metrics, body_timeout_s=BODY_READ_TIMEOUT_S)
    return app


def serve(host: str, port: int, workers: int = 1) -> None:
    """Run the API under uvicorn; each worker process builds its app with `create_app()`.

    SIGTERM drains: uvicorn stops accepting, finishes in-flight requests, runs the lifespan
    shutdown (the prediction log commits) and the process exits 0.
    """
    import uvicorn

    settings = get_settings()
    if workers > 1:
        _shared_metrics_dir(settings)
    # After a graceful shutdown uvicorn re-raises the signal it caught, under the handler that
    # was installed before it started; with the default one a drained SIGTERM would still end
    # the process as "killed by SIGTERM" (-15), which orchestrators report as a failure.
    signal.signal(signal.SIGTERM, _exit_after_drain)
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        lifespan="on",
        # One JSON access line per request comes from the app; uvicorn's would double it.
        access_log=False,
        # SIGTERM: requests still running after this long (a reload stuck on the registry) are
        # cancelled, so the process exits within the orchestrator's grace period.
        timeout_graceful_shutdown=settings.api.drain_timeout_s,
        log_level="info",
        # Bounded request heads, keep-alive, and forwarded headers only from trusted proxies.
        **uvicorn_options(settings),
    )


def _shared_metrics_dir(settings: Settings) -> None:
    """Point the workers' prometheus_client at one fresh folder: multiprocess metrics.

    Set here, before uvicorn starts the workers, because prometheus_client reads it once at
    import and each spawned worker inherits this environment. Wiped at every start: files of a
    previous run would add its counts to this one's.
    """
    folder = (settings.home / "api-metrics").resolve()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    # Written, not read: prometheus_client (not our code) reads it in the workers.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


def _exit_after_drain(signum: int, frame: Any) -> None:
    """SIGTERM seen again after uvicorn drained: a clean exit."""
    raise SystemExit(0)
