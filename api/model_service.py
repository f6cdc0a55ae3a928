"""The served model: hot reload when the champion alias moves, and micro-batching.

Loading a model (threshold, holdout metrics, warm-up) and scoring rows live in
`crimeflow.stores.serving`, which the retrain flow uses too.

Registry calls run in daemon threads, awaited: a cancelled reload (shutdown) abandons its thread
instead of waiting for MLflow, and the process can exit while one still hangs (the thread of
`asyncio.to_thread` would be joined at exit). MLflow's own requests are bounded too
(`CRIMEFLOW_MLFLOW_REQUEST_*`). A failed reload keeps the previous model serving and leaves its
reason in `status_detail()`, which readiness reports.

`ModelHolder.current` is the one reference every request reads. A reload loads the new version
beside the old one (in a thread: MLflow and skops block), warms it up, and only then replaces
the reference in a single assignment, so a request either sees the old model or the fully
loaded new one. A request takes one snapshot of it and uses that snapshot throughout.

`MicroBatcher` turns concurrent single-row predictions into one `predict_proba` call: scoring
one row costs about as much as scoring 64 (the pipeline's fixed per-call overhead dominates), so
batching is what makes the API fast under concurrency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from crimeflow.contract.incident import CanonicalIncident
from crimeflow.contract.settings import Settings
from crimeflow.stores.registry import CHAMPION, describe_error
from crimeflow.stores.serving import ServingModel, alias_version, load_serving_model, score_rows


def load_explainable_model(settings: Settings, alias: str) -> ServingModel:
    """The API's loader: the serving model with its explainer built before it serves."""
    return load_serving_model(settings, alias, warm_explainer=True)


logger = logging.getLogger("crimeflow.api.model")

T = TypeVar("T")


class ModelUnavailableError(RuntimeError):
    """No model is loaded (no champion yet, or the registry is unreachable): answered with 503."""


class ModelReloadError(RuntimeError):
    """Looking up or loading the champion failed; the previous model keeps serving."""


async def in_daemon_thread(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` in a daemon thread, awaited; cancelling the await abandons the thread."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():  # cancelled meanwhile: nobody wants the answer
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def work() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (function(*args), None)
        except BaseException as error:  # handed to the awaiting task, which re-raises it
            outcome = (None, error)
        # A closed loop raises RuntimeError: the process is shutting down, nobody waits.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=work, name="crimeflow-registry", daemon=True).start()
    return await future


@dataclass(frozen=True)
class ReloadOutcome:
    """What a reload did."""

    changed: bool
    version: str | None
    previous_version: str | None
    detail: str


class ModelHolder:
    """Holds the served model and swaps in a new one when the alias moves."""

    def __init__(
        self,
        settings: Settings,
        *,
        alias: str = CHAMPION,
        loader: Callable[[Settings, str], ServingModel] = load_explainable_model,
        resolver: Callable[[Settings, str], str | None] = alias_version,
        on_swap: Callable[[ServingModel | None, ServingModel], None] | None = None,
    ) -> None:
        self._settings = settings
        self.alias = alias
        self._loader = loader
        self._resolver = resolver
        self._on_swap = on_swap
        self._current: ServingModel | None = None
        self._lock = asyncio.Lock()
        self.last_error: str | None = None
        self.attempted = False  # whether a reload has ended (loaded, or failed with a reason)
        self.first_attempt = asyncio.Event()  # set when the first reload ends

    @property
    def current(self) -> ServingModel | None:
        """The model serving now (None until one is loaded); take it once per request."""
        return self._current

    def require(self) -> ServingModel:
        """The current model, or ModelUnavailableError explaining why there is none."""
        model = self._current
        if model is None:
            raise ModelUnavailableError(f"no model is being served: {self.unavailable_reason()}")
        return model

    def unavailable_reason(self) -> str:
        """Why no model serves: still loading, or what the last attempt ran into."""
        if self.last_error:
            return self.last_error
        if not self.attempted:
            return f"loading the model ({self.alias} of {self._settings.model_name!r})"
        return "no model loaded"

    def status_detail(self) -> str | None:
        """What readiness should say: the reason there is no model, or a failed newer load."""
        if self._current is None:
            return self.unavailable_reason()
        return self.last_error  # e.g. "champion version 5 failed to load: ...; serving version 4"

    def _reason(self, error: BaseException) -> str:
        """One masked line for a failed registry call or load."""
        return describe_error(self._settings, error)

    async def reload(self) -> ReloadOutcome:
        """Load the alias's version if it differs from the served one, then swap atomically."""
        async with self._lock:
            try:
                return await self._reload()
            finally:
                self.attempted = True
                self.first_attempt.set()

    async def _reload(self) -> ReloadOutcome:
        """The reload itself (under the lock)."""
        previous = self._current
        previous_version = previous.version if previous else None
        serving = f"; serving version {previous_version}" if previous else ""
        try:
            wanted = await in_daemon_thread(self._resolver, self._settings, self.alias)
        except Exception as error:
            self.last_error = f"model registry unavailable: {self._reason(error)}{serving}"
            raise ModelReloadError(self.last_error) from error
        if wanted is None:
            detail = f"no version of {self._settings.model_name!r} has alias {self.alias!r}"
            if previous is None:
                self.last_error = detail
            else:
                detail += f"; still serving version {previous_version}"
            return ReloadOutcome(False, previous_version, previous_version, detail)
        if previous is not None and previous.version == wanted:
            self.last_error = None  # e.g. the alias went back to the served version
            return ReloadOutcome(
                False, wanted, previous_version, f"version {wanted} is already served"
            )
        started = time.perf_counter()
        try:
            model = await in_daemon_thread(self._loader, self._settings, self.alias)
        except Exception as error:
            self.last_error = (
                f"{self.alias} version {wanted} failed to load: {self._reason(error)}{serving}"
            )
            raise ModelReloadError(self.last_error) from error
        # The swap: one reference assignment, after the new model is fully loaded and warm.
        self._current = model
        self.last_error = None
        seconds = time.perf_counter() - started
        logger.info(
            "model swapped in",
            extra={
                "fields": {
                    "event": "model_reload",
                    "model_name": model.name,
                    "version": model.version,
                    "previous_version": previous_version,
                    "load_seconds": round(seconds, 3),
                }
            },
        )
        if self._on_swap is not None:
            self._on_swap(previous, model)
        return ReloadOutcome(
            True,
            model.version,
            previous_version,
            f"now serving version {model.version} (was {previous_version})",
        )

    async def poll(self, interval_s: float) -> None:
        """Reload every `interval_s` seconds, forever; failures are logged, never raised."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.reload()
            except ModelReloadError as error:
                fields = {"event": "model_poll", "error": str(error)}
                logger.warning("model poll failed", extra={"fields": fields})
            except Exception:
                # A bug must not end the poll silently: the next tick tries again.
                logger.exception("model poll crashed", extra={"fields": {"event": "model_poll"}})


@dataclass(slots=True)
class _Pending:
    """One queued single-row prediction and the future its request awaits."""

    row: CanonicalIncident
    future: asyncio.Future[tuple[ServingModel, float]]


class MicroBatcher:
    """Scores concurrent single-row predictions together, in one model call per batch.

    The first queued row waits at most `wait_ms` for companions (up to `max_rows`); while a
    batch is being scored in the worker thread, new rows queue up and form the next batch, so
    batches grow with the load by themselves. Each batch is scored by one model snapshot, and
    every row of it is answered with that model.
    """

    def __init__(
        self,
        holder: ModelHolder,
        *,
        max_rows: int = 64,
        wait_ms: float = 1.0,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_rows < 1 or wait_ms < 0:
            raise ValueError("max_rows must be >= 1 and wait_ms >= 0")
        self._holder = holder
        self.max_rows = max_rows
        self.wait_s = wait_ms / 1000.0
        self._on_batch = on_batch
        self._queue: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.batches = 0
        self.rows = 0

    def start(self) -> None:
        """Start the worker task and its scoring thread (call inside the running loop)."""
        if self._task is not None:
            return
        # One dedicated thread: batches are scored one after another while the event loop keeps
        # serving requests, and the thread (with the model's caches) stays warm.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crimeflow-score")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="microbatcher")

    async def stop(self) -> None:
        """Answer every queued row, then stop the worker and its thread."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def predict(self, row: CanonicalIncident) -> tuple[ServingModel, float]:
        """The arrest probability of one incident and the model that scored it."""
        if self._closing or self._task is None:
            raise ModelUnavailableError("the prediction service is shutting down")
        future: asyncio.Future[tuple[ServingModel, float]] = (
            asyncio.get_running_loop().create_future()
        )
        self._queue.append(_Pending(row, future))
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        """Form batches from the queue and score them until stopped and drained."""
        idle = True
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                idle = True
                continue
            # Only a row that found the scorer idle waits for companions: rows that queued up
            # while the previous batch was being scored have waited long enough already.
            if idle and self.wait_s > 0 and len(self._queue) < self.max_rows and not self._closing:
                await asyncio.sleep(self.wait_s)
            idle = False
            batch: list[_Pending] = []
            while self._queue and len(batch) < self.max_rows:
                pending = self._queue.popleft()
                if not pending.future.done():  # a cancelled request needs no score
                    batch.append(pending)
            if batch:
                await self._score(batch)

    async def _score(self, batch: list[_Pending]) -> None:
        """Score a batch with one model snapshot and answer every row of it."""
        model = self._holder.current
        if model is None:
            _settle(batch, lambda: ModelUnavailableError("no model is being served"))
            return
        try:
            proba = await asyncio.get_running_loop().run_in_executor(
                self._executor, score_rows, model, [p.row for p in batch]
            )
        except Exception as error:
            logger.exception("scoring a batch of %d rows failed", len(batch))
            reason = f"scoring failed: {error}"
            _settle(batch, lambda: RuntimeError(reason))
            return
        self.batches += 1
        self.rows += len(batch)
        if self._on_batch is not None:
            self._on_batch(len(batch))
        for pending, value in zip(batch, proba.tolist(), strict=True):
            if not pending.future.done():
                pending.future.set_result((model, value))


def _settle(batch: list[_Pending], make_error: Callable[[], BaseException]) -> None:
    """Fail every still-waiting request of a batch (one exception each: no shared traceback)."""
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(make_error())
