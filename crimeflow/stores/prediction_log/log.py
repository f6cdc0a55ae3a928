"""The durable prediction log: every served prediction, group-committed to SQLite or PostgreSQL.

Guarantee (group commit): `await PredictionLog.append(records)` returns only after the records
are COMMITTED. The caller does no database I/O: a writer thread gathers the records of many
concurrent appends (up to `batch_rows` rows, or whatever arrived within `batch_wait_ms` of the
first one), inserts them in one transaction and then wakes every waiter. One append is never
split: its records are committed together or not at all. So:

* a prediction the API returned is in the database, even if the process is killed right after
  (SQLite: WAL with `synchronous=FULL`, the commit is fsynced; PostgreSQL: its default durable
  commit). Only an append that has not returned yet can be lost by a crash, and its caller never
  got an answer. FULL rather than NORMAL: in WAL mode NORMAL does not fsync at commit, so a
  power loss could drop acknowledged rows; group commit keeps FULL's extra cost small;
* if the commit fails, every waiter whose records were not committed gets a
  `PredictionLogWriteError` (the API answers 503 instead of an unlogged prediction). A batch
  that fails on bad data (a duplicate id) is retried append by append, so one bad append does
  not fail its neighbours; the writer thread survives any failure;
* `stop()` (graceful shutdown, e.g. SIGTERM through the ASGI lifespan) commits everything
  appended before it, answers those waiters, then refuses new appends;
* an append whose caller is cancelled while waiting is still committed (it was already queued).

`PredictionLog` is the facade over the package's parts: `table` (columns, DDL, the row of a
record), `engine` (SQLite/server connections), `writer` (the group-commit thread) and `reads`
(windows as typed frames, Parquet export).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from crimeflow.contract.redact import redact
from crimeflow.contract.settings import Settings
from crimeflow.stores.prediction_log import engine as store
from crimeflow.stores.prediction_log.reads import (
    FeedbackOutcome,
    count_rows,
    empty_log_frame,
    read_feedback_history,
    read_window,
    write_parquet,
)
from crimeflow.stores.prediction_log.table import (
    PredictionBatch,
    PredictionRecord,
    batch_values,
    create_table,
    feedback_history_insert,
    feedback_update,
    record_values,
)
from crimeflow.stores.prediction_log.writer import (
    GroupCommitWriter,
    LogStats,
    PredictionLogClosedError,
    PredictionLogUnavailableError,
    WriterHooks,
)

logger = logging.getLogger(__name__)


class PredictionLog:
    """Durable, group-committed store of served predictions (SQLite WAL or PostgreSQL)."""

    def __init__(
        self,
        url: str,
        *,
        batch_rows: int = 512,
        batch_wait_ms: float = 2.0,
        sqlite_synchronous: str = "FULL",
        sqlite_busy_timeout_s: float = 30.0,
        hooks: WriterHooks | None = None,
    ) -> None:
        if batch_rows < 1 or batch_wait_ms < 0:
            raise ValueError("batch_rows must be >= 1 and batch_wait_ms >= 0")
        if sqlite_synchronous.upper() not in store.SQLITE_SYNCHRONOUS:
            raise ValueError(f"sqlite_synchronous must be one of {store.SQLITE_SYNCHRONOUS}")
        self.url = sa.make_url(url)
        self.batch_rows = batch_rows
        self.batch_wait_ms = batch_wait_ms
        self._synchronous = sqlite_synchronous.upper()
        self._busy_timeout_s = sqlite_busy_timeout_s
        self._engine: sa.Engine | None = None
        self._writer = GroupCommitWriter(
            lambda: self.engine.connect(),
            batch_rows=batch_rows,
            batch_wait_ms=batch_wait_ms,
            hooks=hooks,
        )
        # Guards the state and the hand-off to the writer's queue, so nothing is queued behind
        # the stop marker.
        self._lock = threading.Lock()
        self._state = "new"

    @classmethod
    def from_settings(cls, settings: Settings, hooks: WriterHooks | None = None) -> PredictionLog:
        """The log configured by `CRIMEFLOW_PREDICTION_LOG_*` (`hooks` watch its writer)."""
        return cls(
            settings.prediction_log.url,
            batch_rows=settings.prediction_log.batch_rows,
            batch_wait_ms=settings.prediction_log.batch_wait_ms,
            hooks=hooks,
        )

    # --- engine ---------------------------------------------------------------------------

    @property
    def is_sqlite(self) -> bool:
        """Whether the store is a SQLite file."""
        return store.is_sqlite(self.url)

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine, created on first use (SQLite: WAL, busy timeout, fsync level)."""
        with self._lock:
            if self._engine is None:
                self._engine = store.create_engine(
                    self.url, synchronous=self._synchronous, busy_timeout_s=self._busy_timeout_s
                )
            return self._engine

    def _dispose(self) -> None:
        """Close pooled connections (SQLite checkpoints its WAL when the last one closes)."""
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()

    def _store_missing(self) -> bool:
        """A SQLite file that does not exist yet (reading must not create it)."""
        path = store.sqlite_path(self.url)
        return path is not None and not path.exists()

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the table if needed and start the writer thread (idempotent)."""
        with self._lock:
            if self._state == "running":
                return
            if self._state != "new":
                raise PredictionLogClosedError(f"cannot start a log that is {self._state}")
            self._state = "starting"
        try:
            await asyncio.to_thread(lambda: create_table(self.engine))
        except BaseException:
            with self._lock:
                self._state = "new"
            raise
        self._writer.start()
        with self._lock:
            self._state = "running"

    async def stop(self) -> None:
        """Commit everything appended so far, answer its waiters, end the writer, close the pool."""
        with self._lock:
            previous, self._state = self._state, "stopped"
            if previous == "running":
                self._writer.request_stop()
        if previous == "running":
            await asyncio.to_thread(self._writer.join)
        if previous != "stopped":
            self._dispose()

    @property
    def running(self) -> bool:
        """Whether appends are accepted and the writer thread is alive."""
        return self._state == "running" and self._writer.alive

    @property
    def stats(self) -> LogStats:
        """The writer's counters."""
        return self._writer.stats

    # --- writing ----------------------------------------------------------------------------

    async def append(self, records: Sequence[PredictionRecord]) -> None:
        """Log `records`; returns once they are committed, raises PredictionLogError if not."""
        if not records:
            return
        # Converted here, so a malformed record fails its own caller and not a shared batch.
        await self._submit([record_values(record) for record in records])

    async def append_batch(self, batch: PredictionBatch) -> None:
        """`append` for a batch held column by column: committed as one append, or not at all."""
        if len(batch.incidents):
            await self._submit(batch_values(batch))

    async def _submit(self, rows: list[tuple[Any, ...]]) -> None:
        """Hand rows to the writer as one append and wait for their commit."""
        with self._lock:
            if self._state != "running":
                raise PredictionLogClosedError(f"the prediction log is {self._state}")
            future = self._writer.submit(rows)
        await future

    async def add_feedback(
        self, prediction_id: str, arrest: bool, request_id: str | None = None
    ) -> FeedbackOutcome | None:
        """Record the observed arrest outcome of a prediction; None for an unknown id.

        The latest feedback wins in `predictions`; every one is kept in the `feedback` history.
        PredictionLogUnavailableError when the store cannot be reached (the API answers 503).
        """
        if self._state != "running":
            raise PredictionLogClosedError(f"the prediction log is {self._state}")
        try:
            return await asyncio.to_thread(self._set_feedback, prediction_id, arrest, request_id)
        except (sa.exc.SQLAlchemyError, OSError) as error:
            # The driver's text names hosts and databases: it goes to the log, not the client.
            logger.warning("feedback not stored: %s: %s", type(error).__name__, error)
            raise PredictionLogUnavailableError("the prediction log is unavailable") from error

    def _set_feedback(
        self, prediction_id: str, arrest: bool, request_id: str | None
    ) -> FeedbackOutcome | None:
        """Append to the history and update the prediction's latest outcome, in one transaction."""
        received_at = datetime.now(UTC)
        with self.engine.begin() as connection:
            insert = feedback_history_insert(prediction_id, arrest, received_at, request_id)
            previous = connection.execute(insert).all()
            if not previous:
                return None
            connection.execute(feedback_update(prediction_id, arrest, received_at))
        (replaced,) = previous[0]
        return FeedbackOutcome(received_at, replaced, bool(arrest), request_id)

    def feedback_history(self, prediction_id: str) -> list[FeedbackOutcome]:
        """Every feedback received for a prediction, oldest first."""
        if self._store_missing():
            return []
        return read_feedback_history(self.engine, prediction_id)

    async def ping(self) -> bool:
        """Whether the log can take appends: writer alive and the store reachable and writable."""
        if not self.running:
            return False
        try:
            return await asyncio.to_thread(lambda: store.probe_writable(self.engine))
        except (sa.exc.SQLAlchemyError, OSError) as error:
            logger.warning("prediction log ping failed: %s", redact(str(error)))
            return False

    # --- reading ----------------------------------------------------------------------------

    def read_window(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> pd.DataFrame:
        """Logged predictions with `since <= served_at < until`, oldest first (naive bounds: UTC).

        Columns: the contract's input fields in canonical dtypes (no `arrest`), then
        `META_COLUMNS` (served_at/feedback_at as UTC timestamps, feedback_arrest nullable).
        """
        if self._store_missing():
            return empty_log_frame()
        return read_window(self.engine, since, until)

    def count(self) -> int:
        """How many predictions are logged."""
        if self._store_missing():
            return 0
        return count_rows(self.engine)


def export_predictions(
    settings: Settings, since: datetime | None, until: datetime | None, out: Path
) -> int:
    """Write the logged predictions of [since, until) to a Parquet file; the number of rows."""
    frame = read_predictions(settings, since, until)
    write_parquet(frame, out)
    return len(frame)


def read_predictions(
    settings: Settings, since: datetime | None = None, until: datetime | None = None
) -> pd.DataFrame:
    """`PredictionLog.read_window` on the configured log, without starting a writer."""
    log = PredictionLog.from_settings(settings)
    try:
        return log.read_window(since, until)
    finally:
        log._dispose()
