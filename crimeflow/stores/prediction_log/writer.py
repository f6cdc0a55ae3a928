"""The group-commit writer: one thread that commits the appends of many callers together.

A caller's rows wait in a queue with the future the caller awaits. The writer thread takes the
first, gathers more (up to `batch_rows` rows, or whatever arrived within `batch_wait_ms` of the
first one), inserts them in one transaction and only then answers every waiter, one callback
per event loop. One append is never split. A batch that fails on bad data (a duplicate id) is
retried append by append, so one bad append does not fail its neighbours; any other failure
fails the whole batch's waiters with a `PredictionLogWriteError`. The thread survives every
failure, and the stop marker (`request_stop`) is taken only after everything queued before it.

`WriterHooks` lets the caller watch the writer (the API's metrics) without this store knowing
about Prometheus: rows queued and settled, the seconds of each commit, each failed transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from crimeflow.contract.redact import redact
from crimeflow.stores.prediction_log.table import insert_rows

logger = logging.getLogger(__name__)


class PredictionLogError(RuntimeError):
    """Base class: the prediction could not be logged (the API answers 503)."""


class PredictionLogClosedError(PredictionLogError):
    """The log is not running (not started yet, or stopped)."""


class PredictionLogWriteError(PredictionLogError):
    """The transaction holding these records failed; they are not in the log."""


class PredictionLogUnavailableError(PredictionLogError):
    """The store cannot be reached or refused the statement (feedback was not stored)."""


@dataclass(frozen=True)
class LogStats:
    """Writer counters since `start()`: committed rows/transactions, failed ones, queue length."""

    committed_rows: int
    committed_batches: int
    failed_batches: int
    queued_appends: int


def _ignore(*_: Any) -> None:
    """A hook that does nothing."""


@dataclass(frozen=True)
class WriterHooks:
    """Callbacks of the writer; each must be cheap and must not raise (they run on its thread).

    `queued(rows)` runs in `submit`, `settled(rows)` once those rows' transaction is over
    (committed or failed), `committed(seconds)` after each successful transaction and `failed()`
    after each transaction whose waiters get an error.
    """

    queued: Callable[[int], None] = _ignore
    settled: Callable[[int], None] = _ignore
    committed: Callable[[float], None] = _ignore
    failed: Callable[[], None] = _ignore


@dataclass(slots=True)
class _Append:
    """One `append` call waiting in the queue: its rows and the future its caller awaits."""

    rows: list[tuple[Any, ...]]  # values of table.INSERT_COLUMNS
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


def _settle_all(outcomes: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    """Resolve futures on their own loop; cancelled callers no longer care."""
    for future, error in outcomes:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class GroupCommitWriter:
    """The writer thread and its queue; `submit` hands it rows, the returned future says when."""

    def __init__(
        self,
        connect: Callable[[], sa.Connection],
        *,
        batch_rows: int,
        batch_wait_ms: float,
        hooks: WriterHooks | None = None,
    ) -> None:
        self._connect = connect
        self.hooks = hooks if hooks is not None else WriterHooks()
        self.batch_rows = batch_rows
        self.batch_wait_ms = batch_wait_ms
        # None is the stop marker: everything queued before it is committed first.
        self._queue: queue.SimpleQueue[_Append | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._connection: sa.Connection | None = None
        self.committed_rows = 0
        self.committed_batches = 0
        self.failed_batches = 0

    def start(self) -> None:
        """Start the writer thread."""
        self._thread = threading.Thread(
            # Daemon: a crash or hard exit must not hang on the writer; nothing acknowledged is
            # lost that way, because acknowledged means committed.
            target=self._run,
            name="prediction-log-writer",
            daemon=True,
        )
        self._thread.start()

    def submit(self, rows: list[tuple[Any, ...]]) -> asyncio.Future[None]:
        """Queue rows as one append; the future resolves once they are committed (or failed)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self.hooks.queued(len(rows))
        self._queue.put(_Append(rows, loop, future))
        return future

    def request_stop(self) -> None:
        """Queue the stop marker: the thread commits what is queued before it, then ends."""
        self._queue.put(None)

    def join(self) -> None:
        """Wait for the thread to end (blocking)."""
        if self._thread is not None:
            self._thread.join()

    @property
    def alive(self) -> bool:
        """Whether the writer thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def stats(self) -> LogStats:
        """The writer's counters."""
        return LogStats(
            committed_rows=self.committed_rows,
            committed_batches=self.committed_batches,
            failed_batches=self.failed_batches,
            queued_appends=self._queue.qsize(),
        )

    def _run(self) -> None:
        """Run the writer loop; release its connection when it ends."""
        try:
            self._write_batches()
        finally:
            self._close_connection()

    def _write_batches(self) -> None:
        """Gather appends into batches and commit each batch in one transaction, until stopped."""
        batch_wait_s = self.batch_wait_ms / 1000.0
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch, rows = [first], len(first.rows)
            deadline = time.monotonic() + batch_wait_s
            while rows < self.batch_rows:
                remaining = deadline - time.monotonic()
                try:
                    # Past the deadline, still take what is already queued, without waiting.
                    item = (
                        self._queue.get(timeout=remaining)
                        if remaining > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
                rows += len(item.rows)
            try:
                outcomes = self._commit(batch)
            except Exception as error:  # a bug here must not kill the writer and strand waiters
                logger.exception("prediction log writer failed")
                self.hooks.failed()
                outcomes = [(job, self._write_error(job, error)) for job in batch]
            self.hooks.settled(rows)
            self._settle(outcomes)

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        """Insert rows in one transaction (one executemany) on the writer's own connection."""
        for attempt in (1, 2):
            # Kept open across batches: a pool checkout per batch costs a pre-ping round trip.
            if self._connection is None:
                self._connection = self._connect()
            connection = self._connection
            try:
                with connection.begin():
                    insert_rows(connection, rows)
                return
            except (sa.exc.IntegrityError, sa.exc.DataError):
                raise  # the data, not the connection: it was rolled back and stays usable
            except Exception as error:
                self._close_connection()
                stale = isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated
                # A connection dropped while idle (server restart) gets one retry on a new one.
                if not (stale and attempt == 1):
                    raise

    def _close_connection(self) -> None:
        """Return the writer's connection to the pool (discarded there if it was invalidated)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def _commit(self, batch: list[_Append]) -> list[tuple[_Append, BaseException | None]]:
        """Commit a batch; on a data error retry append by append so only the culprit fails."""
        started = time.perf_counter()
        try:
            self._insert([row for job in batch for row in job.rows])
        except (sa.exc.IntegrityError, sa.exc.DataError) as error:
            if len(batch) == 1:
                self.failed_batches += 1
                self.hooks.failed()
                return [(batch[0], self._write_error(batch[0], error))]
            outcomes: list[tuple[_Append, BaseException | None]] = []
            for job in batch:
                outcomes.extend(self._commit([job]))
            return outcomes
        except Exception as error:
            # Database down, disk full, locked too long: nothing of this batch was committed.
            self.failed_batches += 1
            self.hooks.failed()
            reason = redact(str(error))
            logger.warning("prediction log: a batch of %d appends failed: %s", len(batch), reason)
            return [(job, self._write_error(job, error)) for job in batch]
        self.hooks.committed(time.perf_counter() - started)
        self.committed_batches += 1
        self.committed_rows += sum(len(job.rows) for job in batch)
        return [(job, None) for job in batch]

    @staticmethod
    def _write_error(job: _Append, error: BaseException) -> PredictionLogWriteError:
        """One exception per waiter (a shared instance would collect every waiter's traceback)."""
        failure = PredictionLogWriteError(f"{len(job.rows)} prediction(s) not logged: {error}")
        failure.__cause__ = error
        return failure

    @staticmethod
    def _settle(outcomes: list[tuple[_Append, BaseException | None]]) -> None:
        """Wake the waiters: one thread-safe callback per event loop, not one per append."""
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for job, error in outcomes:
            by_loop.setdefault(job.loop, []).append((job.future, error))
        for loop, futures in by_loop.items():
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle_all, futures)
