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

Rows are stored one column per input field (SODA names) so the drift monitor can read a window
cheaply with `read_window`; `export_predictions` writes the same frame to Parquet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import numbers
import queue
import re
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pandas as pd
import sqlalchemy as sa

from crimeflow.contract.schema import (
    BOOL_COLUMNS,
    CHICAGO_TZ,
    DATETIME_COLUMNS,
    FLOAT_COLUMNS,
    INT_COLUMNS,
    LABEL,
    SODA_COLUMNS,
    ZERO_PADDED,
    to_canonical,
)
from crimeflow.contract.settings import Settings

logger = logging.getLogger(__name__)

TABLE_NAME = "predictions"
# The model's input: every contract field except the label.
INPUT_COLUMNS: tuple[str, ...] = tuple(c for c in SODA_COLUMNS if c != LABEL)
# What `read_window` and the export add to the input columns, in this order.
META_COLUMNS: tuple[str, ...] = (
    "prediction_id",
    "served_at",
    "model_name",
    "model_version",
    "request_id",
    "probability",
    "label",
    "feedback_arrest",
    "feedback_at",
)
LOG_COLUMNS: tuple[str, ...] = (*INPUT_COLUMNS, *META_COLUMNS)
SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_EXPORT_DATE_FORMAT = "%m/%d/%Y %I:%M:%S %p"
_PG_WRITABLE = "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'"
_INT_SET = frozenset(INT_COLUMNS)
_BOOL_SET = frozenset(BOOL_COLUMNS)
_FLOAT_SET = frozenset(FLOAT_COLUMNS)
# Text columns stored as given (stripped): everything but timestamps, numbers, flags, padded codes.
_PLAIN_TEXT = frozenset(INPUT_COLUMNS) - {
    *DATETIME_COLUMNS,
    *FLOAT_COLUMNS,
    *INT_COLUMNS,
    *BOOL_COLUMNS,
    *ZERO_PADDED,
}
_TRUE = {"true", "t", "1", "y", "yes"}
_FALSE = {"false", "f", "0", "n", "no"}


class PredictionLogError(RuntimeError):
    """Base class: the prediction could not be logged (the API answers 503)."""


class PredictionLogClosedError(PredictionLogError):
    """The log is not running (not started yet, or stopped)."""


class PredictionLogWriteError(PredictionLogError):
    """The transaction holding these records failed; they are not in the log."""


class PredictionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One served prediction; `features` holds the incident's input fields by SODA name."""

    prediction_id: str
    served_at: datetime
    model_name: str
    model_version: str
    request_id: str | None
    probability: float
    label: bool
    features: dict[str, Any]


@dataclass(frozen=True)
class LogStats:
    """Writer counters since `start()`: committed rows/transactions, failed ones, queue length."""

    committed_rows: int
    committed_batches: int
    failed_batches: int
    queued_appends: int


def new_prediction_id() -> str:
    """A fresh prediction id (uuid4 hex)."""
    return uuid.uuid4().hex


# --- the table ------------------------------------------------------------------------------


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A tz-aware UTC timestamp: `timestamptz` on PostgreSQL, naive-UTC text on SQLite."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """Aware datetimes only, converted to UTC (SQLite drops the offset, so it must be UTC)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware (UTC) value")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """Every value comes back aware, in UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _input_column(name: str) -> sa.Column[Any]:
    """The table column of one input field, typed like the canonical frame."""
    if name in DATETIME_COLUMNS:
        # Socrata timestamps are floating Chicago local time: stored as such, without a zone.
        kind: sa.types.TypeEngine[Any] = sa.DateTime(timezone=False)
    elif name in FLOAT_COLUMNS:
        kind = sa.Double()
    elif name == "id":
        kind = sa.BigInteger()
    elif name in INT_COLUMNS:
        kind = sa.Integer()
    elif name in BOOL_COLUMNS:
        kind = sa.Boolean(create_constraint=False)
    else:
        kind = sa.String()
    return sa.Column(name, kind, nullable=True)


METADATA = sa.MetaData()
PREDICTIONS = sa.Table(
    TABLE_NAME,
    METADATA,
    sa.Column("prediction_id", sa.String(64), primary_key=True),
    sa.Column("served_at", UTCDateTime(), nullable=False, index=True),
    sa.Column("model_name", sa.String(), nullable=False),
    sa.Column("model_version", sa.String(), nullable=False),
    sa.Column("request_id", sa.String(), nullable=True),
    sa.Column("probability", sa.Double(), nullable=False),
    sa.Column("label", sa.Boolean(create_constraint=False), nullable=False),
    *(_input_column(name) for name in INPUT_COLUMNS),
    sa.Column("feedback_arrest", sa.Boolean(create_constraint=False), nullable=True),
    sa.Column("feedback_at", UTCDateTime(), nullable=True),
)


# --- records -> rows (pure) -----------------------------------------------------------------


@cache
def _chicago() -> ZoneInfo:
    """The Chicago zone, loaded on first use rather than at import."""
    return ZoneInfo(CHICAGO_TZ)


def _is_missing(value: Any) -> bool:
    """None, NaN, NaT, pd.NA or a blank string."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _local_timestamp(value: Any) -> datetime:
    """A naive Chicago-local datetime from an ISO string / export string / datetime."""
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, str):
        text = value.strip()
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            value = datetime.strptime(text, _EXPORT_DATE_FORMAT)
    if not isinstance(value, datetime):
        raise TypeError(f"not a timestamp: {value!r}")
    # Same rule as schema.parse_timestamps: an offset means an instant, shown in Chicago time.
    if value.tzinfo is not None:
        value = value.astimezone(_chicago()).replace(tzinfo=None)
    return value


def _integer(value: Any) -> int:
    """An int from an integer, a whole float or numeric text."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a count or code")
    if isinstance(value, numbers.Integral):
        return int(value)
    number = float(value.strip()) if isinstance(value, str) else float(value)
    if not number.is_integer():
        raise ValueError(f"not a whole number: {value!r}")
    return int(number)


def _real(value: Any) -> float | None:
    """A finite float (NaN means missing)."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a coordinate")
    number = float(value.strip()) if isinstance(value, str) else float(value)
    if math.isnan(number):
        return None
    if math.isinf(number):
        raise ValueError("infinite coordinate")
    return number


def _boolean(value: Any) -> bool:
    """A bool from a bool, 0/1 or true/false text."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"not a boolean: {value!r}")
    if isinstance(value, numbers.Integral) and int(value) in (0, 1):
        return bool(value)
    raise TypeError(f"not a boolean: {value!r}")


def _code(name: str, value: Any) -> str:
    """A code as text; beat and district zero-padded like `schema.to_canonical` does."""
    text = str(value).strip()
    width = ZERO_PADDED.get(name)
    if width is not None:
        whole = re.fullmatch(r"(\d+)(?:\.0*)?", text)
        if whole:
            text = whole.group(1).zfill(width)
    return text


def _field(name: str, value: Any) -> Any:
    """One input field in the table column's Python type; ValueError names a bad value."""
    # Fast paths for values that already have the column's type (what the API sends): the
    # same results as the general path below, for a third of the cost per record.
    kind = type(value)
    if kind is str and name in _PLAIN_TEXT:
        return value.strip() or None
    if (kind is int and name in _INT_SET) or (kind is bool and name in _BOOL_SET):
        return value
    if kind is float and name in _FLOAT_SET and math.isfinite(value):
        return value
    if _is_missing(value):
        return None
    try:
        if name in DATETIME_COLUMNS:
            return _local_timestamp(value)
        if name in FLOAT_COLUMNS:
            return _real(value)
        if name in INT_COLUMNS:
            return _integer(value)
        if name in BOOL_COLUMNS:
            return _boolean(value)
        return _code(name, value)
    except (TypeError, ValueError, OverflowError) as error:
        raise ValueError(f"feature {name!r}: cannot store {value!r} ({error})") from error


def record_to_row(record: PredictionRecord) -> dict[str, Any]:
    """The table row of one record; ValueError if a value cannot be stored as its column type."""
    if record.served_at.tzinfo is None:
        raise ValueError("served_at must be timezone-aware (UTC)")
    probability = float(record.probability)
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability {probability!r} is not in [0, 1]")
    row: dict[str, Any] = {
        "prediction_id": record.prediction_id,
        "served_at": record.served_at,
        "model_name": record.model_name,
        "model_version": record.model_version,
        "request_id": record.request_id,
        "probability": probability,
        "label": bool(record.label),
    }
    features = record.features
    for name in INPUT_COLUMNS:
        row[name] = _field(name, features.get(name))
    return row


def _json_value(value: Any) -> Any:
    """A canonical-frame cell as a JSON-able value (ISO text for timestamps, None if missing)."""
    if _is_missing(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return value


def features_from_frame(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Each row's input fields (either header style) as the JSON-able `features` of a record."""
    canonical = to_canonical(frame)
    columns = {name: canonical[name].astype(object).tolist() for name in INPUT_COLUMNS}
    return [
        {name: _json_value(columns[name][i]) for name in INPUT_COLUMNS}
        for i in range(len(canonical))
    ]


def parse_utc(text: str) -> datetime:
    """An ISO 8601 instant as an aware UTC datetime; a value without an offset is taken as UTC."""
    value = datetime.fromisoformat(text.strip())
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _as_utc(value: datetime) -> datetime:
    """Window bounds: aware values as they are, naive ones taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _timestamps(values: pd.Series, *, utc: bool) -> pd.Series:
    """Driver timestamps (SQLite text or datetime objects) as datetime64[ns] (UTC if `utc`)."""
    parsed = pd.to_datetime(values, format="ISO8601", utc=utc)
    return parsed.astype("datetime64[ns, UTC]" if utc else "datetime64[ns]")


def _rows_to_frame(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """Raw driver rows of LOG_COLUMNS as the log frame (canonical inputs, then meta columns)."""
    # Raw values (SQLite: timestamps as text, booleans as 0/1) are converted column-wise here;
    # SQLAlchemy's per-value result processing would double the cost of a large window.
    raw = pd.DataFrame.from_records(list(rows), columns=list(LOG_COLUMNS))
    for name in DATETIME_COLUMNS:
        raw[name] = _timestamps(raw[name], utc=False)
    inputs = to_canonical(raw[list(INPUT_COLUMNS)]).drop(columns=[LABEL])
    meta = pd.DataFrame(
        {
            "prediction_id": raw["prediction_id"].astype("string"),
            "served_at": _timestamps(raw["served_at"], utc=True),
            "model_name": raw["model_name"].astype("string"),
            "model_version": raw["model_version"].astype("string"),
            "request_id": raw["request_id"].astype("string"),
            "probability": raw["probability"].astype("float64"),
            "label": raw["label"].astype(bool),
            "feedback_arrest": raw["feedback_arrest"].astype("boolean"),
            "feedback_at": _timestamps(raw["feedback_at"], utc=True),
        },
        index=inputs.index,
    )
    return pd.concat([inputs, meta], axis=1)


def empty_log_frame() -> pd.DataFrame:
    """A zero-row log frame with the columns and dtypes `read_window` returns."""
    return _rows_to_frame([])


# --- the writer -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Append:
    """One `append` call waiting in the queue: its rows and the future its caller awaits."""

    rows: list[dict[str, Any]]
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
    ) -> None:
        if batch_rows < 1 or batch_wait_ms < 0:
            raise ValueError("batch_rows must be >= 1 and batch_wait_ms >= 0")
        if sqlite_synchronous.upper() not in SQLITE_SYNCHRONOUS:
            raise ValueError(f"sqlite_synchronous must be one of {SQLITE_SYNCHRONOUS}")
        self.url = sa.make_url(url)
        self.batch_rows = batch_rows
        self.batch_wait_ms = batch_wait_ms
        self._synchronous = sqlite_synchronous.upper()
        self._busy_timeout_s = sqlite_busy_timeout_s
        self._engine: sa.Engine | None = None
        # None is the stop marker: everything queued before it is committed first.
        self._queue: queue.SimpleQueue[_Append | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._writer_connection: sa.Connection | None = None
        # Guards the state and the hand-off to the queue, so nothing is enqueued behind the marker.
        self._lock = threading.Lock()
        self._state = "new"
        self._committed_rows = 0
        self._committed_batches = 0
        self._failed_batches = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> PredictionLog:
        """The log configured by `CRIMEFLOW_PREDICTION_LOG_*`."""
        return cls(
            settings.prediction_log.url,
            batch_rows=settings.prediction_log.batch_rows,
            batch_wait_ms=settings.prediction_log.batch_wait_ms,
        )

    # --- engine ---------------------------------------------------------------------------

    @property
    def is_sqlite(self) -> bool:
        """Whether the store is a SQLite file."""
        return self.url.get_backend_name() == "sqlite"

    def _sqlite_path(self) -> Path | None:
        """The SQLite database file, or None for in-memory/other stores."""
        database = self.url.database
        if not self.is_sqlite or not database or database == ":memory:":
            return None
        return Path(database)

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine, created on first use (SQLite: WAL, busy timeout, fsync level)."""
        with self._lock:
            if self._engine is None:
                self._engine = self._create_engine()
            return self._engine

    def _create_engine(self) -> sa.Engine:
        """A pooled engine; SQLite connections are configured for several writer processes."""
        if not self.is_sqlite:
            return sa.create_engine(self.url, pool_pre_ping=True)
        path = self._sqlite_path()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            self.url,
            # The writer thread, feedback threads and readers each take their own connection.
            connect_args={"timeout": self._busy_timeout_s, "check_same_thread": False},
        )
        synchronous = self._synchronous
        busy_ms = int(self._busy_timeout_s * 1000)

        @sa.event.listens_for(engine, "connect")
        def _configure(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # busy_timeout first: switching to WAL itself needs a lock another worker may hold.
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.close()

        return engine

    def _create_table(self) -> None:
        """Create the table and index if missing (idempotent, safe when workers race)."""
        try:
            METADATA.create_all(self.engine)
        except sa.exc.DBAPIError:
            # Another worker created it between our existence check and CREATE: check again.
            time.sleep(0.05)
            METADATA.create_all(self.engine)

    def _table_exists(self, connection: sa.Connection) -> bool:
        """Whether `predictions` exists (readers must not create it)."""
        return sa.inspect(connection).has_table(TABLE_NAME)

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
            await asyncio.to_thread(self._create_table)
        except BaseException:
            with self._lock:
                self._state = "new"
            raise
        self._thread = threading.Thread(
            # Daemon: a crash or hard exit must not hang on the writer; nothing acknowledged is
            # lost that way, because acknowledged means committed.
            target=self._run_writer,
            name="prediction-log-writer",
            daemon=True,
        )
        self._thread.start()
        with self._lock:
            self._state = "running"

    async def stop(self) -> None:
        """Commit everything appended so far, answer its waiters, end the writer, close the pool."""
        with self._lock:
            previous, self._state = self._state, "stopped"
            if previous == "running":
                self._queue.put(None)
        if previous == "running" and self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        if previous != "stopped":
            self._dispose()

    def _dispose(self) -> None:
        """Close pooled connections (SQLite checkpoints its WAL when the last one closes)."""
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()

    @property
    def running(self) -> bool:
        """Whether appends are accepted and the writer thread is alive."""
        return self._state == "running" and self._thread is not None and self._thread.is_alive()

    @property
    def stats(self) -> LogStats:
        """The writer's counters."""
        return LogStats(
            committed_rows=self._committed_rows,
            committed_batches=self._committed_batches,
            failed_batches=self._failed_batches,
            queued_appends=self._queue.qsize(),
        )

    # --- writing ----------------------------------------------------------------------------

    async def append(self, records: Sequence[PredictionRecord]) -> None:
        """Log `records`; returns once they are committed, raises PredictionLogError if not."""
        if not records:
            return
        # Converted here, so a malformed record fails its own caller and not a shared batch.
        rows = [record_to_row(record) for record in records]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._state != "running":
                raise PredictionLogClosedError(f"the prediction log is {self._state}")
            self._queue.put(_Append(rows, loop, future))
        await future

    def _run_writer(self) -> None:
        """Run the writer loop; release its connection when it ends."""
        try:
            self._write_batches()
        finally:
            self._close_writer_connection()

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
                outcomes = [(job, self._write_error(job, error)) for job in batch]
            self._settle(outcomes)

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        """Insert rows in one transaction (executemany) on the writer's own connection."""
        for attempt in (1, 2):
            # Kept open across batches: a pool checkout per batch costs a pre-ping round trip.
            if self._writer_connection is None:
                self._writer_connection = self.engine.connect()
            connection = self._writer_connection
            try:
                with connection.begin():
                    connection.execute(sa.insert(PREDICTIONS), rows)
                return
            except (sa.exc.IntegrityError, sa.exc.DataError):
                raise  # the data, not the connection: it was rolled back and stays usable
            except Exception as error:
                self._close_writer_connection()
                stale = isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated
                # A connection dropped while idle (server restart) gets one retry on a new one.
                if not (stale and attempt == 1):
                    raise

    def _close_writer_connection(self) -> None:
        """Return the writer's connection to the pool (discarded there if it was invalidated)."""
        connection, self._writer_connection = self._writer_connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def _commit(self, batch: list[_Append]) -> list[tuple[_Append, BaseException | None]]:
        """Commit a batch; on a data error retry append by append so only the culprit fails."""
        try:
            self._insert([row for job in batch for row in job.rows])
        except (sa.exc.IntegrityError, sa.exc.DataError) as error:
            if len(batch) == 1:
                self._failed_batches += 1
                return [(batch[0], self._write_error(batch[0], error))]
            outcomes: list[tuple[_Append, BaseException | None]] = []
            for job in batch:
                outcomes.extend(self._commit([job]))
            return outcomes
        except Exception as error:
            # Database down, disk full, locked too long: nothing of this batch was committed.
            self._failed_batches += 1
            logger.warning("prediction log: a batch of %d appends failed: %s", len(batch), error)
            return [(job, self._write_error(job, error)) for job in batch]
        self._committed_batches += 1
        self._committed_rows += sum(len(job.rows) for job in batch)
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

    # --- feedback and health --------------------------------------------------------------

    async def add_feedback(self, prediction_id: str, arrest: bool) -> bool:
        """Record the observed arrest outcome of a prediction; False for an unknown id."""
        if self._state != "running":
            raise PredictionLogClosedError(f"the prediction log is {self._state}")
        return await asyncio.to_thread(self._set_feedback, prediction_id, arrest)

    def _set_feedback(self, prediction_id: str, arrest: bool) -> bool:
        """UPDATE one row's feedback (the latest feedback wins)."""
        statement = (
            sa.update(PREDICTIONS)
            .where(PREDICTIONS.c.prediction_id == prediction_id)
            .values(feedback_arrest=bool(arrest), feedback_at=datetime.now(UTC))
        )
        with self.engine.begin() as connection:
            return connection.execute(statement).rowcount > 0

    async def ping(self) -> bool:
        """Whether the log can take appends: writer alive and the store reachable and writable."""
        if not self.running:
            return False
        try:
            return await asyncio.to_thread(self._probe)
        except (sa.exc.SQLAlchemyError, OSError) as error:
            logger.warning("prediction log ping failed: %s", error)
            return False

    def _probe(self) -> bool:
        """Take the write lock without writing (SQLite) or check the server is not read-only."""
        with self.engine.connect() as connection:
            if self.is_sqlite:
                raw = connection.connection.driver_connection
                assert raw is not None
                # BEGIN IMMEDIATE takes the write lock, so a read-only or wedged file shows here.
                raw.execute("BEGIN IMMEDIATE")
                raw.rollback()
                return True
            if self.url.get_backend_name() == "postgresql":
                return bool(connection.exec_driver_sql(_PG_WRITABLE).scalar())
            connection.exec_driver_sql("SELECT 1")
            return True

    # --- reading ----------------------------------------------------------------------------

    def _store_missing(self) -> bool:
        """A SQLite file that does not exist yet (reading must not create it)."""
        path = self._sqlite_path()
        return path is not None and not path.exists()

    def read_window(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> pd.DataFrame:
        """Logged predictions with `since <= served_at < until`, oldest first (naive bounds: UTC).

        Columns: the contract's input fields in canonical dtypes (no `arrest`), then
        `META_COLUMNS` (served_at/feedback_at as UTC timestamps, feedback_arrest nullable).
        """
        # NullType: the driver's raw values, converted per column by _rows_to_frame.
        raw_columns = (
            sa.type_coerce(PREDICTIONS.c[name], sa.types.NullType()) for name in LOG_COLUMNS
        )
        statement = sa.select(*raw_columns)
        if since is not None:
            statement = statement.where(PREDICTIONS.c.served_at >= _as_utc(since))
        if until is not None:
            statement = statement.where(PREDICTIONS.c.served_at < _as_utc(until))
        statement = statement.order_by(PREDICTIONS.c.served_at, PREDICTIONS.c.prediction_id)
        if self._store_missing():
            return empty_log_frame()
        with self.engine.connect() as connection:
            if not self._table_exists(connection):
                return empty_log_frame()
            rows = connection.execute(statement).all()
        return _rows_to_frame(rows)

    def count(self) -> int:
        """How many predictions are logged."""
        if self._store_missing():
            return 0
        with self.engine.connect() as connection:
            if not self._table_exists(connection):
                return 0
            statement = sa.select(sa.func.count()).select_from(PREDICTIONS)
            return int(connection.execute(statement).scalar_one())


def export_predictions(
    settings: Settings, since: datetime | None, until: datetime | None, out: Path
) -> int:
    """Write the logged predictions of [since, until) to a Parquet file; the number of rows."""
    log = PredictionLog.from_settings(settings)
    try:
        frame = log.read_window(since, until)
    finally:
        log._dispose()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written next to the target and renamed: a reader never sees half a file.
    partial = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    try:
        frame.to_parquet(partial, index=False)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
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
