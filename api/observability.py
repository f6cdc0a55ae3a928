"""Operations: JSON log lines with a request id, Prometheus metrics, and a cheap rate limiter.

Every HTTP request gets an id: the client's `X-Request-ID` when it is a sane token, else a new
uuid4 hex. It is echoed in the response header, stored on `request.state.request_id`, written
into every log line of the request and into the prediction log. One JSON line per request
(method, path, route, status, duration_ms, request_id) goes to stderr.

Metrics live in a per-app `CollectorRegistry` (several apps in one test process must not share
counters). With several uvicorn workers `api.app.serve` points prometheus_client's multiprocess
mode at a fresh folder before the workers start: every worker writes its samples there and any
worker's /metrics adds them all up. One worker keeps the plain in-memory registry. Gauges say
how they add up across workers: the served version is the most recent one set, the prediction
log's queue is the sum over live workers, and readiness the minimum (one worker that is not
ready makes the API not ready). The names and meanings are tabled in
docs/monitoring-and-retraining.md ("Metrics").

The rate limiter counts a fixed window per client in this process, or in Redis when
`CRIMEFLOW_REDIS_URL` is set, so that the limit holds across workers and replicas.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import queue
import re
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener
from typing import Any

import msgspec
import numpy as np
from litestar.exceptions import ClientException, HTTPException, TooManyRequestsException
from litestar.middleware.rate_limit import DURATION_VALUES, RateLimitMiddleware
from litestar.types import Message, Receive, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST as PROMETHEUS_CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from redis.asyncio import Redis
from redis.exceptions import RedisError

from crimeflow.contract.redact import redact
from crimeflow.stores.prediction_log import WriterHooks

__all__ = [
    "CLIENT_CLOSED_REQUEST",
    "PROMETHEUS_CONTENT_TYPE",
    "REQUEST_ID_HEADER",
    "ApiMetrics",
    "BodyTimeoutError",
    "ClientClosedError",
    "FixedWindowRateLimitMiddleware",
    "JsonFormatter",
    "RedisFixedWindowRateLimitMiddleware",
    "RequestObserver",
    "configure_logging",
    "current_request_id",
]

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_HEADER_KEY = REQUEST_ID_HEADER.lower().encode()
# Echoed into headers and logs, so only a plain token is trusted (no log or header injection).
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
API_LOGGER = "crimeflow.api"
ACCESS_LOGGER = "crimeflow.api.access"
# Seconds; single predictions land in 1-25 ms, batches of 10k rows in about a second.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# Arrest probabilities in twentieths: fine enough to see the score distribution shift.
PROBABILITY_BUCKETS = tuple(round(0.05 * step, 2) for step in range(1, 21))
# Seconds of one group commit: a PostgreSQL commit takes about a millisecond, a SQLite fsync a
# few; a commit over a second means the log is in trouble.
LOG_WRITE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
# crimeflow_ready's reason label: a few fixed words, never an error text (bounded cardinality).
READY = ""
NO_MODEL = "no_model"
LOG_NOT_WRITABLE = "prediction_log_not_writable"
READY_REASONS = (READY, NO_MODEL, LOG_NOT_WRITABLE)

_request_id: ContextVar[str | None] = ContextVar("crimeflow_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being handled in this task, if any."""
    return _request_id.get()


class RandomIds:
    """uuid4 hex strings from a pool of OS randomness: one getrandom() call per 256 ids.

    A system call on the event loop thread gives up the GIL, and under load the scoring
    thread then holds it for milliseconds; `uuid.uuid4()` per id measured 56 us instead of
    2 us that way. Request ids; prediction ids are time-ordered (`prediction_log.ids`).
    """

    def __init__(self, ids_per_refill: int = 256) -> None:
        self._refill = 16 * ids_per_refill
        self._pool = b""
        self._at = 0
        self._lock = threading.Lock()

    def __call__(self) -> str:
        """A new uuid4 as 32 hex digits."""
        with self._lock:
            if self._at >= len(self._pool):
                self._pool, self._at = os.urandom(self._refill), 0
            chunk = self._pool[self._at : self._at + 16]
            self._at += 16
        return uuid.UUID(bytes=chunk, version=4).hex


new_id = RandomIds()


# Anything JSON has no type for (paths, exceptions, decimals) is written as its str().
_LINE_ENCODER = msgspec.json.Encoder(enc_hook=str)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id and `extra["fields"]`."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = _request_id.get()
        if request_id is not None:
            payload["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update(fields)
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        # msgspec: a tenth of json.dumps' cost, on the event loop thread for every request.
        # Masked last, so no message, field or traceback carries a URL's password or a token.
        return redact(_LINE_ENCODER.encode(payload).decode())


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes to whatever `sys.stderr` is now (test runners swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        """The current stderr."""
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        # StreamHandler.__init__ assigns the stream; the property always follows sys.stderr.
        pass


_listener: QueueListener | None = None
_listener_lock = threading.Lock()


def configure_logging(level: int | str = logging.INFO) -> logging.Logger:
    """Send the `crimeflow.api` loggers to stderr as JSON lines, written by a background thread.

    The line is formatted where it is logged (so it carries that request's id) and written by a
    listener thread: a write to stderr on the event loop thread gives up the GIL, and under load
    getting it back took ~0.2 ms per request. Idempotent; the listener flushes at exit.
    """
    global _listener
    logger = logging.getLogger(API_LOGGER)
    with _listener_lock:
        if _listener is None:
            lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
            writer = _StderrHandler()
            writer.setFormatter(logging.Formatter("%(message)s"))
            _listener = QueueListener(lines, writer)
            _listener.start()
            atexit.register(_listener.stop)
            # QueueHandler formats in the logging thread: the line keeps its request id.
            handler = QueueHandler(lines)
            handler.setFormatter(JsonFormatter())
            logger.addHandler(handler)
    logger.setLevel(level)
    # Our own handler formats the lines; a root handler (uvicorn's, pytest's) would repeat them.
    logger.propagate = False
    return logger


def multiprocess_metrics() -> bool:
    """Whether prometheus_client runs in multiprocess mode in this process.

    prometheus_client picks its value class once, at import, from PROMETHEUS_MULTIPROC_DIR
    (which `api.app.serve` sets before the workers start); asking the library which one it
    picked keeps the env var out of our code and cannot disagree with what it does.
    """
    return prometheus_values.ValueClass is not prometheus_values.MutexValue


class ApiMetrics:
    """The API's Prometheus metrics, in their own registry (all workers' in multiprocess mode)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.multiprocess = multiprocess_metrics()
        self._serving_metrics()
        self._log_metrics()
        self.ready = Gauge(
            "crimeflow_ready",
            "1 when this API is ready (a model is loaded, the log takes writes), else 0 on the "
            'series of each reason; reason="" is the overall answer.',
            ["reason"],
            registry=self.registry,
            # Across workers: the lowest, so one worker that is not ready shows; a dead worker's
            # value goes with it.
            multiprocess_mode="livemin",
        )
        self.rate_limit_store_errors = Counter(
            "crimeflow_rate_limit_store_errors",
            "Requests let through unlimited because the rate-limit store (Redis) is unreachable.",
            registry=self.registry,
        )

    def _serving_metrics(self) -> None:
        """Requests, predictions, micro-batches and the served model."""
        self.request_seconds = Histogram(
            "crimeflow_request_seconds",
            "HTTP request latency by route template, method and status code.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "crimeflow_predictions",
            "Predictions served (and logged), by predicted label.",
            ["label"],
            registry=self.registry,
        )
        self.prediction_probability = Histogram(
            "crimeflow_prediction_probability",
            "Arrest probability of every served (and logged) prediction.",
            buckets=PROBABILITY_BUCKETS,
            registry=self.registry,
        )
        self.model_version = Gauge(
            "crimeflow_model_version",
            "Registry version of the model being served (0 when none is loaded).",
            ["model"],
            registry=self.registry,
            # Across workers: the version the latest swap in any worker set.
            multiprocess_mode="mostrecent",
        )
        self.microbatch_rows = Histogram(
            "crimeflow_microbatch_rows",
            "Single-row predictions scored together in one model call.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.model_reloads = Counter(
            "crimeflow_model_reloads",
            "Model swaps (a new champion version was loaded).",
            registry=self.registry,
        )

    def _log_metrics(self) -> None:
        """The prediction log's writer: commit latency, rows waiting, failed transactions."""
        self.log_write_seconds = Histogram(
            "crimeflow_prediction_log_write_seconds",
            "Seconds of one group commit of the prediction log (a transaction of many appends).",
            buckets=LOG_WRITE_BUCKETS,
            registry=self.registry,
        )
        self.log_queue_rows = Gauge(
            "crimeflow_prediction_log_queue_rows",
            "Predictions waiting to be committed to the prediction log (queued or in a commit).",
            registry=self.registry,
            # Across workers: the sum over the live ones.
            multiprocess_mode="livesum",
        )
        self.log_write_errors = Counter(
            "crimeflow_prediction_log_write_errors",
            "Prediction log transactions that failed (their predictions were answered 503).",
            registry=self.registry,
        )

    def count_predictions(self, probabilities: Sequence[float], positives: int) -> None:
        """Count served predictions by label (`positives` labelled arrest) and their scores."""
        total = len(probabilities)
        if positives:
            self.predictions.labels(label="true").inc(positives)
        if total - positives:
            self.predictions.labels(label="false").inc(total - positives)
        observe_many(self.prediction_probability, probabilities)

    def log_hooks(self) -> WriterHooks:
        """Hooks that let the prediction log's writer move the log metrics."""
        return WriterHooks(
            queued=self.log_queue_rows.inc,
            settled=self.log_queue_rows.dec,
            committed=self.log_write_seconds.observe,
            failed=self.log_write_errors.inc,
        )

    def set_ready(self, reasons: Iterable[str]) -> None:
        """Readiness now: reason="" is 1 or 0, every reason 0 while it holds and 1 after."""
        holding = set(reasons)
        unknown = holding - set(READY_REASONS)
        if unknown:
            raise ValueError(f"unknown readiness reasons {sorted(unknown)}")
        self.ready.labels(reason=READY).set(0 if holding else 1)
        # Every reason has a series from the start, so a cleared reason never lingers at 0.
        for reason in READY_REASONS[1:]:
            self.ready.labels(reason=reason).set(0 if reason in holding else 1)

    def model_swapped(self, previous: Any, model: Any) -> None:
        """Record a swap: the version gauge follows the served model."""
        if previous is not None:
            self.model_reloads.inc()
        try:
            version = float(model.version)
        except (TypeError, ValueError):
            version = float("nan")
        self.model_version.labels(model=model.name).set(version)

    def worker_stopped(self) -> None:
        """Drop this worker's live gauges (queue rows, readiness) from the shared folder."""
        if self.multiprocess:
            mark_process_dead(os.getpid())

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (of every worker in multiprocess mode)."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        # The collector reads every worker's files on each scrape; a registry per call keeps it
        # from being registered twice.
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """Observe many values at once: one increment per bucket instead of one call per value.

    A /predict/batch of 10,000 rows would otherwise make 10,000 observe calls on the event
    loop (milliseconds, with a lock each). Uses the histogram's bucket and sum values, which
    prometheus_client keeps per bucket (it adds them up when collected);
    tests/api/test_observability.py checks the result equals one observe per value.
    """
    if len(values) < 8 or not hasattr(histogram, "_buckets"):
        for value in values:
            histogram.observe(value)
        return
    array = np.asarray(values, dtype=float)
    bounds = np.asarray(histogram._upper_bounds, dtype=float)
    # observe() puts a value in the first bucket whose bound is >= it: searchsorted "left".
    # The last bound is +Inf; only NaN sorts past it, and it lands in +Inf rather than nowhere.
    slots = np.minimum(np.searchsorted(bounds, array, side="left"), len(bounds) - 1)
    counts = np.bincount(slots, minlength=len(bounds))
    for bucket, count in zip(histogram._buckets, counts.tolist(), strict=True):
        if count:
            bucket.inc(count)
    histogram._sum.inc(float(array.sum()))


ASGICall = Callable[[Scope, Receive, Send], Awaitable[None]]


# Status recorded for a request whose client went away before its answer (nginx's convention):
# not a server error, so neither the 5xx alerts nor the error budget count it.
CLIENT_CLOSED_REQUEST = 499


class BodyTimeoutError(ClientException):
    """The request body did not fully arrive in time (408)."""

    status_code = 408


class ClientClosedError(HTTPException):
    """The client disconnected before the request body arrived (recorded as 499)."""

    status_code = CLIENT_CLOSED_REQUEST


class _Exchange:
    """One request's receive/send wrappers: body deadline, disconnect, HEAD, request id."""

    __slots__ = ("body_done", "closed", "deadline", "head", "header", "receive", "send", "status")

    def __init__(self, receive: Receive, send: Send, header: tuple[bytes, bytes], head: bool):
        self.receive, self.send, self.header, self.head = receive, send, header, head
        self.status = 500
        self.closed = False  # the client disconnected before the response was complete
        self.body_done = False
        self.deadline: float | None = None

    async def bounded_receive(self, timeout_s: float) -> Message:
        """The next body message, within `timeout_s` of the first read; 408/499 otherwise."""
        if self.body_done:
            return await self.receive()  # type: ignore[return-value]
        loop = asyncio.get_running_loop()
        if self.deadline is None:
            self.deadline = loop.time() + timeout_s
        try:
            # asyncio.timeout_at: a timer handle, not a task per call (wait_for's cost).
            async with asyncio.timeout_at(self.deadline):
                message: Message = await self.receive()  # type: ignore[assignment]
        except TimeoutError:
            self.body_done = True
            raise BodyTimeoutError(
                detail=f"the request body did not arrive within {timeout_s:g} s",
                # The rest of the body may still come: this connection cannot carry another.
                headers={"connection": "close"},
            ) from None
        if message["type"] == "http.disconnect":
            self.body_done = self.closed = True
            raise ClientClosedError(detail="the client closed the request")
        if not message.get("more_body", False):
            self.body_done = True
        return message

    async def observed_send(self, message: Message) -> None:
        """Add the request id to the response start; a HEAD response loses its body."""
        if message["type"] == "http.response.start":
            self.status = message["status"]
            message["headers"] = [*message.get("headers", ()), self.header]
        elif message["type"] == "http.response.body" and self.head:
            message = {**message, "body": b""}  # type: ignore[typeddict-item]
        await self.send(message)


class RequestObserver:
    """Request id, latency histogram and one access-log line around every HTTP request.

    It also holds the request layer's own rules: `HEAD` is served as `GET` without the body;
    a request body has `body_timeout_s` to arrive (else 408); a client that disconnects before
    its answer is recorded as 499, not as a server error.
    """

    def __init__(
        self,
        metrics: ApiMetrics,
        logger: logging.Logger | None = None,
        body_timeout_s: float = 30.0,
    ) -> None:
        self.metrics = metrics
        self.logger = logger or logging.getLogger(ACCESS_LOGGER)
        self.body_timeout_s = body_timeout_s
        # Which worker answered, in every access line (several workers share one stderr).
        self.pid = os.getpid()

    async def __call__(self, scope: Scope, receive: Receive, send: Send, app: ASGICall) -> None:
        """Run `app` for one HTTP request, observing it."""
        request_id = _incoming_request_id(scope) or new_id()
        token = _request_id.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id  # type: ignore[typeddict-item]
        method = scope.get("method", "")
        if method == "HEAD":
            # Every GET route answers HEAD: same status and headers, no body. A copy of the
            # scope: the server's own stays HEAD (uvicorn reads it to expect no body).
            scope = {**scope, "method": "GET"}  # type: ignore[assignment]
        exchange = _Exchange(
            receive, send, (_REQUEST_ID_HEADER_KEY, request_id.encode()), method == "HEAD"
        )
        timeout_s = self.body_timeout_s

        async def receive_body() -> Message:
            return await exchange.bounded_receive(timeout_s)

        started = time.perf_counter()
        try:
            await app(scope, receive_body, exchange.observed_send)  # type: ignore[arg-type]
        finally:
            seconds = time.perf_counter() - started
            status = CLIENT_CLOSED_REQUEST if exchange.closed else exchange.status
            # Route templates, not raw paths: bounded label cardinality.
            route = scope.get("path_template") or "unmatched"
            self.metrics.request_seconds.labels(route, method, str(status)).observe(seconds)
            self.logger.info(
                "request",
                extra={
                    "fields": {
                        "method": method,
                        "path": scope.get("path", ""),
                        "route": route,
                        "status": status,
                        "duration_ms": round(seconds * 1000.0, 3),
                        "pid": self.pid,
                    }
                },
            )
            _request_id.reset(token)


def _incoming_request_id(scope: Scope) -> str | None:
    """The client's X-Request-ID when it is a sane token."""
    for key, value in scope.get("headers", ()):
        if key == _REQUEST_ID_HEADER_KEY:
            text = value.decode("latin-1")
            return text if _SANE_REQUEST_ID.fullmatch(text) else None
    return None


class FixedWindowRateLimitMiddleware(RateLimitMiddleware):
    """Litestar's rate limiter with an in-process fixed-window counter per client.

    The stock middleware stores every request's timestamp of the window and re-encodes that
    list as JSON on each request: at the default 120,000/minute from one client that is a
    60,000-element list per request, O(n) work that grows with the load. Its store round trips
    also take two anyio locks, each a trip through the event loop. This keeps
    `client -> (window end, count)` in a dict of this process (what Litestar's default
    MemoryStore was, too: every worker process limits on its own): O(1) per request, no await,
    same limits, same headers. Nothing awaits between reading and writing a window, so the
    single-threaded event loop needs no lock. Litestar builds one middleware instance per
    route; they share one table in the app state, so the limit spans all routes.
    """

    # Windows of clients that stopped sending are dropped once the table grows past this.
    MAX_TRACKED_CLIENTS = 10_000
    STATE_KEY = "rate_limit_windows"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._windows: dict[str, tuple[int, int]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count the request against its client's window; 429 once the window is full."""
        app = scope["litestar_app"]
        request = app.request_class(scope)
        if await self.should_check_request(request=request):
            key = self.cache_key_from_request(request)
            windows = self._windows
            if windows is None:
                windows = self._windows = app.state.setdefault(self.STATE_KEY, {})
            now = int(time.time())
            reset, count = windows.get(key, (0, 0))
            if reset <= now:
                reset, count = now + DURATION_VALUES[self.unit], 0
            if count >= self.max_requests:
                raise TooManyRequestsException(
                    headers=self._headers(reset, count, now)
                    if self.config.set_rate_limit_headers
                    else None
                )
            count += 1
            windows[key] = (reset, count)
            if len(windows) > self.MAX_TRACKED_CLIENTS:
                _prune(windows, now)
            if self.config.set_rate_limit_headers:
                send = self._with_headers(send, self._headers(reset, count, now))
        await self.app(scope, receive, send)

    def _headers(self, reset: int, count: int, now: int) -> dict[str, str]:
        """The RateLimit-* headers of a window."""
        config = self.config
        return {
            config.rate_limit_policy_header_key: (
                f"{self.max_requests}; w={DURATION_VALUES[self.unit]}"
            ),
            config.rate_limit_limit_header_key: str(self.max_requests),
            config.rate_limit_remaining_header_key: str(max(self.max_requests - count, 0)),
            config.rate_limit_reset_header_key: str(max(reset - now, 0)),
        }

    @staticmethod
    def _with_headers(send: Send, headers: dict[str, str]) -> Send:
        """`send` adding `headers` to the response start."""
        encoded = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *encoded]
            await send(message)

        return wrapped


def _prune(windows: dict[str, tuple[int, int]], now: int) -> None:
    """Forget windows that have ended, in place (their clients start afresh anyway)."""
    for key in [key for key, (reset, _) in windows.items() if reset <= now]:
        del windows[key]


# One round trip per request: count the request and read how long its window has left. The first
# request of a window starts it (like the in-process table); a key that somehow lost its expiry
# (TTL -1) gets one again, so no key outlives its window.
_WINDOW_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""
RATE_LIMIT_KEY_PREFIX = "crimeflow:ratelimit:"


class RedisWindows:
    """Fixed windows per client counted in Redis, shared by every worker and replica."""

    def __init__(self, redis: Redis, prefix: str = RATE_LIMIT_KEY_PREFIX) -> None:
        self.redis = redis
        self.prefix = prefix
        self._script = redis.register_script(_WINDOW_SCRIPT)

    async def hit(self, client: str, window_s: int) -> tuple[int, int]:
        """Count one request of `client`: (requests in its window so far, seconds left in it)."""
        count, ttl = await self._script(keys=[self.prefix + client], args=[window_s])
        return int(count), int(ttl)


class RedisFixedWindowRateLimitMiddleware(FixedWindowRateLimitMiddleware):
    """The fixed-window limiter with its windows in Redis (`CRIMEFLOW_REDIS_URL`).

    Same limit, headers and 429 body as the in-process table, but a limit of N per minute is N
    across all workers and replicas. When Redis fails (down, timeout) the request goes through
    unlimited, with a warning and `crimeflow_rate_limit_store_errors_total`: the limiter guards
    against runaway clients, and refusing every client because a helper store is down would turn
    a Redis outage into an API outage. After a failure Redis is left alone for
    `RETRY_AFTER_S`, so an unreachable Redis costs one timeout per second, not one per request.
    """

    STATE_KEY = "rate_limit_redis"
    RETRY_AFTER_S = 1.0
    WARN_EVERY_S = 60.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count the request in Redis; 429 once the client's window is full."""
        app = scope["litestar_app"]
        request = app.request_class(scope)
        if await self.should_check_request(request=request):
            windows: RedisWindows = app.state[self.STATE_KEY]
            outage: dict[str, float] = app.state.setdefault("rate_limit_outage", {})
            now = time.monotonic()
            if now < outage.get("retry_at", 0.0):
                app.state.metrics.rate_limit_store_errors.inc()  # backing off: let it through
            else:
                window_s = DURATION_VALUES[self.unit]
                try:
                    count, left = await windows.hit(self.cache_key_from_request(request), window_s)
                except (RedisError, OSError) as error:
                    _store_failed(app.state, outage, now, error, self)
                else:
                    send = self._limit(count, left, send)
        await self.app(scope, receive, send)

    def _limit(self, count: int, left: int, send: Send) -> Send:
        """Raise 429 when the window is over the limit, else `send` with the RateLimit headers."""
        now = int(time.time())
        reset, shown = now + left, min(count, self.max_requests)
        headers = self._headers(reset, shown, now) if self.config.set_rate_limit_headers else None
        if count > self.max_requests:
            raise TooManyRequestsException(headers=headers)
        return self._with_headers(send, headers) if headers else send


def _store_failed(
    state: Any, outage: dict[str, float], now: float, error: Exception, limiter: Any
) -> None:
    """Fail open: count it, back off from Redis for a moment, warn at most once a minute."""
    state.metrics.rate_limit_store_errors.inc()
    outage["retry_at"] = now + limiter.RETRY_AFTER_S
    if now >= outage.get("warn_at", 0.0):
        outage["warn_at"] = now + limiter.WARN_EVERY_S
        logging.getLogger(API_LOGGER).warning(
            "rate-limit store unreachable: requests are not limited",
            extra={"fields": {"error": f"{type(error).__name__}: {error}"}},
        )
