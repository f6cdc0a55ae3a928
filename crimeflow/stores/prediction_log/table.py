"""The prediction log's tables: their columns and types, their DDL, and the row of one record.

Rows are stored one column per input field (SODA names, typed like the canonical frame) so the
drift monitor can read a window cheaply; then the prediction's own columns. A record carries the
validated `CanonicalIncident`, whose values already have the columns' types: `record_to_row`
checks them and builds the row without converting anything to text and back.

`predictions.feedback_arrest`/`feedback_at` hold the latest observed outcome (what the monitor
reads); every feedback received is also kept in `feedback` (received_at, the outcome, the one
it replaced, the request id), so an overwrite is never silent. Schema changes are additive
(new tables only): `create_table` on an existing database adds what is missing.
"""

from __future__ import annotations

import functools
import math
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain, repeat
from typing import Any

import msgspec
import sqlalchemy as sa

from crimeflow.contract.incident import CanonicalIncident, IncidentColumns
from crimeflow.contract.schema import (
    BOOL_COLUMNS,
    DATETIME_COLUMNS,
    FLOAT_COLUMNS,
    INT_COLUMNS,
    LABEL,
    SODA_COLUMNS,
    chicago,
)

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
# What an insert writes, in this order (feedback comes later): the values of `record_values`.
INSERT_COLUMNS: tuple[str, ...] = (*INPUT_COLUMNS, *META_COLUMNS[:-2])


class PredictionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One served prediction and the validated incident it scored (typed input fields)."""

    prediction_id: str
    served_at: datetime
    model_name: str
    model_version: str
    request_id: str | None
    probability: float
    label: bool
    incident: CanonicalIncident


@dataclass(frozen=True, slots=True)
class PredictionBatch:
    """The predictions of one batch request, column by column (what `batch_values` stores).

    `incidents` comes from the incident codec, so its values already have the columns' types;
    the rest is one value per row (ids, probabilities, labels) or one for the whole batch.
    """

    incidents: IncidentColumns
    prediction_ids: list[str]
    served_at: datetime
    model_name: str
    model_version: str
    request_id: str | None
    probabilities: list[float]
    labels: list[bool]


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


FEEDBACK_TABLE_NAME = "feedback"
FEEDBACK = sa.Table(
    FEEDBACK_TABLE_NAME,
    METADATA,
    sa.Column("feedback_id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("prediction_id", sa.String(64), nullable=False, index=True),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("arrest", sa.Boolean(create_constraint=False), nullable=False),
    # The outcome this feedback replaced (NULL: it was the first one).
    sa.Column("previous_arrest", sa.Boolean(create_constraint=False), nullable=True),
    sa.Column("request_id", sa.String(), nullable=True),
)


def create_table(engine: sa.Engine) -> None:
    """Create the tables and indexes if missing (idempotent, safe when workers race)."""
    try:
        METADATA.create_all(engine)
    except sa.exc.DBAPIError:
        # Another worker created it between our existence check and CREATE: check again.
        time.sleep(0.05)
        METADATA.create_all(engine)


def table_exists(connection: sa.Connection) -> bool:
    """Whether `predictions` exists (readers must not create it)."""
    return sa.inspect(connection).has_table(TABLE_NAME)


def feedback_history_insert(
    prediction_id: str, arrest: bool, received_at: datetime, request_id: str | None
) -> sa.Insert:
    """INSERT one feedback into the history, with the outcome it replaces; RETURNING that.

    One statement reads the prediction's current outcome and writes: it inserts nothing for an
    unknown id, and it holds the write lock (SQLite) or the row lock (PostgreSQL: FOR UPDATE)
    until commit, so concurrent feedback on one prediction sees each other's outcome.
    """
    current = (
        sa.select(
            PREDICTIONS.c.prediction_id,
            sa.literal(received_at, UTCDateTime()),
            sa.literal(bool(arrest), sa.Boolean()),
            PREDICTIONS.c.feedback_arrest,
            sa.literal(request_id, sa.String()),
        )
        .where(PREDICTIONS.c.prediction_id == prediction_id)
        .with_for_update()
    )
    columns = ["prediction_id", "received_at", "arrest", "previous_arrest", "request_id"]
    return sa.insert(FEEDBACK).from_select(columns, current).returning(FEEDBACK.c.previous_arrest)


def feedback_update(prediction_id: str, arrest: bool, received_at: datetime) -> sa.Update:
    """The UPDATE storing the latest observed outcome next to a prediction."""
    return (
        sa.update(PREDICTIONS)
        .where(PREDICTIONS.c.prediction_id == prediction_id)
        .values(feedback_arrest=bool(arrest), feedback_at=received_at)
    )


# --- records -> rows (pure) -----------------------------------------------------------------


def _column_kinds(name: str) -> tuple[type, ...]:
    """The Python types an input column takes as they are (None aside: every one is nullable)."""
    if name in DATETIME_COLUMNS:
        return (datetime,)
    if name in FLOAT_COLUMNS:
        return (float, int)
    if name in INT_COLUMNS:
        return (int,)
    if name in BOOL_COLUMNS:
        return (bool,)
    return (str,)


_INPUT_KINDS: tuple[tuple[str, tuple[type, ...]], ...] = tuple(
    (name, _column_kinds(name)) for name in INPUT_COLUMNS
)


def _subclass_value(name: str, value: Any, kinds: tuple[type, ...]) -> Any:
    """A value of a subclass of its column's type (np.float64, pd.Timestamp); else ValueError."""
    # bool is an int subclass, but a flag is no count or coordinate.
    if isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds):
        return value
    raise ValueError(f"feature {name!r}: cannot store {value!r} in a {kinds[0].__name__} column")


def _finite(name: str, value: float) -> float | None:
    """A coordinate that is not finite: NaN means missing, infinity cannot be stored."""
    if math.isnan(value):
        return None
    raise ValueError(f"feature {name!r}: cannot store {value!r} (not finite)")


def record_to_row(record: PredictionRecord) -> dict[str, Any]:
    """The table row of a record's typed values; ValueError if one cannot be stored as is."""
    if record.served_at.tzinfo is None:
        raise ValueError("served_at must be timezone-aware (UTC)")
    probability = float(record.probability)
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability {probability!r} is not in [0, 1]")
    if type(record.incident) is not CanonicalIncident:
        raise TypeError(f"incident must be a CanonicalIncident, not {type(record.incident)}")
    # The incident's values already have the columns' types: they are checked, not converted.
    row: dict[str, Any] = msgspec.structs.asdict(record.incident)
    for name, kinds in _INPUT_KINDS:
        value = row[name]
        if value is not None and type(value) not in kinds:
            row[name] = _subclass_value(name, value, kinds)
    for name in FLOAT_COLUMNS:
        value = row[name]
        if value is not None and not math.isfinite(value):
            row[name] = _finite(name, value)
    for name in DATETIME_COLUMNS:
        value = row[name]
        # Same rule as schema.parse_timestamps: an offset means an instant, shown in Chicago time.
        if value is not None and value.tzinfo is not None:
            row[name] = value.astimezone(chicago()).replace(tzinfo=None)
    row["prediction_id"] = record.prediction_id
    row["served_at"] = record.served_at
    row["model_name"] = record.model_name
    row["model_version"] = record.model_version
    row["request_id"] = record.request_id
    row["probability"] = probability
    row["label"] = bool(record.label)
    return row


def record_values(record: PredictionRecord) -> tuple[Any, ...]:
    """`record_to_row` as the tuple of `INSERT_COLUMNS` values (what the writer inserts)."""
    row = record_to_row(record)
    return tuple(row[name] for name in INSERT_COLUMNS)


def batch_values(batch: PredictionBatch) -> list[tuple[Any, ...]]:
    """The rows of a batch as tuples of `INSERT_COLUMNS` values; ValueError if one cannot be stored.

    The incident columns come from the codec and are stored as they are; what came from
    elsewhere (the clock, the model) is checked like `record_to_row` checks it.
    """
    if batch.served_at.tzinfo is None:
        raise ValueError("served_at must be timezone-aware (UTC)")
    n = len(batch.incidents)
    if not len(batch.prediction_ids) == len(batch.probabilities) == len(batch.labels) == n:
        raise ValueError("a batch needs one id, probability and label per incident")
    probabilities = [float(p) for p in batch.probabilities]
    if not all(0.0 <= p <= 1.0 for p in probabilities):  # NaN fails too
        raise ValueError("probabilities must be in [0, 1]")
    columns = [batch.incidents.values[name] for name in INPUT_COLUMNS]
    return list(
        zip(
            *columns,
            batch.prediction_ids,
            repeat(batch.served_at, n),
            repeat(batch.model_name, n),
            repeat(batch.model_version, n),
            repeat(batch.request_id, n),
            probabilities,
            [bool(label) for label in batch.labels],
            strict=True,
        )
    )


# --- rows -> the database (one statement per transaction) ------------------------------------

_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def _sqlite_datetime(processor: Any) -> Any:
    """SQLite's DateTime bind `processor` with a C-level fast path for plain naive datetimes.

    SQLAlchemy formats `YYYY-MM-DD HH:MM:SS.ffffff` with a %-dict per value (~2 us);
    `isoformat(" ", "microseconds")` writes the same text for a naive `datetime` (tested).
    """

    def process(value: Any) -> Any:
        if type(value) is datetime and value.tzinfo is None:
            return value.isoformat(" ", "microseconds")
        return processor(value)

    return process


def _bind_processors(dialect: sa.Dialect) -> list[tuple[int, Any]]:
    """(position, processor) of every inserted column whose type converts values on this dialect."""
    found = []
    for index, name in enumerate(INSERT_COLUMNS):
        kind = PREDICTIONS.c[name].type
        processor = kind.dialect_impl(dialect).bind_processor(dialect)
        if processor is None:
            continue
        if dialect.name == "sqlite" and type(kind) is sa.DateTime:
            processor = _sqlite_datetime(processor)
        found.append((index, processor))
    return found


def _bound(rows: Sequence[tuple[Any, ...]], dialect: sa.Dialect) -> list[tuple[Any, ...]]:
    """The rows with each value as SQLAlchemy would bind it (SQLite: datetimes as its text)."""
    processors = _bind_processors(dialect)
    if not processors:
        return list(rows)
    columns = list(zip(*rows, strict=True))
    for index, processor in processors:
        values = columns[index]
        distinct = set(values)
        if len(distinct) * 2 > len(values):
            # Mostly distinct (incident timestamps): a dict would cost more than it saves.
            columns[index] = tuple(map(processor, values))
        else:
            # Timestamps and flags repeat (served_at is one per batch): convert each value once.
            table = {value: processor(value) for value in distinct}
            columns[index] = tuple(map(table.__getitem__, values))
    return list(zip(*columns, strict=True))


def _copy_statement(dialect: sa.Dialect) -> str:
    """COPY ... FROM STDIN of the inserted columns (PostgreSQL)."""
    quote = dialect.identifier_preparer.quote
    return f"COPY {quote(TABLE_NAME)} ({', '.join(quote(c) for c in INSERT_COLUMNS)}) FROM STDIN"


def copy_rows(connection: sa.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Rows into PostgreSQL with one COPY on the connection's own transaction (psycopg 3).

    COPY sends the rows as one stream; an executemany, even pipelined, costs a round of
    protocol messages per row (about 20 ms per 1,000 rows against 3 here). Driver errors are
    raised as SQLAlchemy's (IntegrityError for a duplicate id; a dropped connection is
    invalidated and flagged, so the writer retries once on a fresh one), like `execute` does.
    """
    dialect = connection.dialect
    statement = _copy_statement(dialect)
    driver = connection.connection.driver_connection
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
            write = copy.write_row
            for row in rows:
                write(row)
    except dialect.loaded_dbapi.Error as error:
        disconnected = dialect.is_disconnect(error, driver, None)
        if disconnected:
            connection.invalidate(error)
        raise sa.exc.DBAPIError.instance(
            statement,
            None,
            error,
            dialect.loaded_dbapi.Error,
            connection_invalidated=disconnected,
            dialect=dialect,
        ) from error


def insert_rows(connection: sa.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """INSERT rows of `INSERT_COLUMNS` values: a COPY on psycopg, multi-row VALUES on SQLite.

    The values are pre-bound: SQLAlchemy's own executemany builds and processes a dict per
    row, which cost more than the database's work; here each column's values are converted
    once, as a column.
    """
    dialect = connection.dialect
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        copy_rows(connection, _bound(rows, dialect))
        return
    if dialect.name == "sqlite":
        _insert_sqlite(connection, _bound(rows, dialect))
        return
    placeholder = _PLACEHOLDERS.get(dialect.paramstyle)
    if placeholder is None:  # a driver with named parameters: SQLAlchemy's own path
        connection.execute(
            sa.insert(PREDICTIONS), [dict(zip(INSERT_COLUMNS, r, strict=True)) for r in rows]
        )
        return
    quote = dialect.identifier_preparer.quote
    connection.exec_driver_sql(_values_statement(1, placeholder, quote), _bound(rows, dialect))


@functools.lru_cache(maxsize=32)
def _values_statement(rows: int, placeholder: str, quote: Callable[[str], str]) -> str:
    """INSERT INTO predictions (INSERT_COLUMNS) VALUES with `rows` rows of placeholders."""
    row = f"({', '.join([placeholder] * len(INSERT_COLUMNS))})"
    return (
        f"INSERT INTO {quote(TABLE_NAME)} ({', '.join(quote(c) for c in INSERT_COLUMNS)}) "
        f"VALUES {', '.join([row] * rows)}"
    )


def _insert_sqlite(connection: sa.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Rows into SQLite with a few multi-row INSERTs instead of one executemany.

    executemany steps the statement once per row, and each step releases and retakes the GIL:
    under load the writer then queues for the GIL a thousand times per batch. One statement of
    up to ~1,000 rows binds them all and does the B-tree work in a single step without it.
    Statement sizes are powers of two, so a handful of texts cover every batch and stay in the
    driver's prepared-statement cache.
    """
    driver = connection.connection.driver_connection
    quote = connection.dialect.identifier_preparer.quote
    width = len(INSERT_COLUMNS)
    limit = driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)  # type: ignore[union-attr]
    largest = 1 << ((limit // width).bit_length() - 1)
    start = 0
    while start < len(rows):
        size = min(largest, 1 << ((len(rows) - start).bit_length() - 1))
        chunk = rows[start : start + size]
        connection.exec_driver_sql(
            _values_statement(size, "?", quote), tuple(chain.from_iterable(chunk))
        )
        start += size
