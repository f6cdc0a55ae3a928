"""Reading the prediction log: a window of served predictions as a typed frame, and exports.

Readers never create anything: a SQLite file or table that does not exist yet reads as empty.
The frame has the contract's input fields in canonical dtypes (no `arrest`), then
`META_COLUMNS` (served_at/feedback_at as UTC timestamps, feedback_arrest nullable).

One stored row cannot stop a read: a timestamp pandas cannot hold (before 1677 or after 2262,
e.g. `0001-01-01` stored before the API range-checked every timestamp) or cannot parse is read
as missing (NaT), counted and logged as a warning naming the column.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from crimeflow.contract.schema import DATETIME_COLUMNS, LABEL, to_canonical
from crimeflow.stores.prediction_log.table import (
    FEEDBACK,
    INPUT_COLUMNS,
    LOG_COLUMNS,
    PREDICTIONS,
    table_exists,
)

logger = logging.getLogger(__name__)


def parse_utc(text: str) -> datetime:
    """An ISO 8601 instant as an aware UTC datetime; a value without an offset is taken as UTC."""
    value = datetime.fromisoformat(text.strip())
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _as_utc(value: datetime) -> datetime:
    """Window bounds: aware values as they are, naive ones taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _timestamps(values: pd.Series, *, utc: bool) -> pd.Series:
    """Driver timestamps (SQLite text or datetime objects) as datetime64[ns] (UTC if `utc`).

    A value out of pandas' range or unparseable becomes NaT (counted by `unreadable`).
    """
    parsed = pd.to_datetime(values, format="ISO8601", utc=utc, errors="coerce")
    return parsed.astype("datetime64[ns, UTC]" if utc else "datetime64[ns]")


def unreadable(raw: pd.Series, parsed: pd.Series) -> int:
    """How many stored values `parsed` lost (present in `raw`, NaT after parsing)."""
    return int((raw.notna() & parsed.isna()).sum())


def _read_timestamps(raw: pd.DataFrame, name: str, *, utc: bool) -> pd.Series:
    """Column `name` of the raw rows as timestamps; values that cannot be read are logged."""
    parsed = _timestamps(raw[name], utc=utc)
    lost = unreadable(raw[name], parsed)
    if lost:
        logger.warning(
            "prediction log: %d stored %s value(s) are out of range or unreadable; read as missing",
            lost,
            name,
        )
    return parsed


def rows_to_frame(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """Raw driver rows of LOG_COLUMNS as the log frame (canonical inputs, then meta columns)."""
    # Raw values (SQLite: timestamps as text, booleans as 0/1) are converted column-wise here;
    # SQLAlchemy's per-value result processing would double the cost of a large window.
    raw = pd.DataFrame.from_records(list(rows), columns=list(LOG_COLUMNS))
    for name in DATETIME_COLUMNS:
        raw[name] = _read_timestamps(raw, name, utc=False)
    inputs = to_canonical(raw[list(INPUT_COLUMNS)]).drop(columns=[LABEL])
    meta = pd.DataFrame(
        {
            "prediction_id": raw["prediction_id"].astype("string"),
            "served_at": _read_timestamps(raw, "served_at", utc=True),
            "model_name": raw["model_name"].astype("string"),
            "model_version": raw["model_version"].astype("string"),
            "request_id": raw["request_id"].astype("string"),
            "probability": raw["probability"].astype("float64"),
            "label": raw["label"].astype(bool),
            "feedback_arrest": raw["feedback_arrest"].astype("boolean"),
            "feedback_at": _read_timestamps(raw, "feedback_at", utc=True),
        },
        index=inputs.index,
    )
    return pd.concat([inputs, meta], axis=1)


def empty_log_frame() -> pd.DataFrame:
    """A zero-row log frame with the columns and dtypes `read_window` returns."""
    return rows_to_frame([])


def read_window(
    engine: sa.Engine, since: datetime | None = None, until: datetime | None = None
) -> pd.DataFrame:
    """Logged predictions with `since <= served_at < until`, oldest first (naive bounds: UTC)."""
    # NullType: the driver's raw values, converted per column by rows_to_frame.
    raw_columns = (sa.type_coerce(PREDICTIONS.c[name], sa.types.NullType()) for name in LOG_COLUMNS)
    statement = sa.select(*raw_columns)
    if since is not None:
        statement = statement.where(PREDICTIONS.c.served_at >= _as_utc(since))
    if until is not None:
        statement = statement.where(PREDICTIONS.c.served_at < _as_utc(until))
    statement = statement.order_by(PREDICTIONS.c.served_at, PREDICTIONS.c.prediction_id)
    with engine.connect() as connection:
        if not table_exists(connection):
            return empty_log_frame()
        rows = connection.execute(statement).all()
    return rows_to_frame(rows)


@dataclass(frozen=True, slots=True)
class FeedbackOutcome:
    """One feedback received: when (UTC), its outcome, and the outcome it replaced (or None)."""

    received_at: datetime
    previous_arrest: bool | None
    arrest: bool | None = None
    request_id: str | None = None

    @property
    def replaced(self) -> bool:
        """Whether an earlier outcome was overwritten."""
        return self.previous_arrest is not None


def read_feedback_history(engine: sa.Engine, prediction_id: str) -> list[FeedbackOutcome]:
    """The feedback history of one prediction, oldest first (empty before the table exists)."""
    statement = (
        sa.select(
            FEEDBACK.c.received_at,
            FEEDBACK.c.previous_arrest,
            FEEDBACK.c.arrest,
            FEEDBACK.c.request_id,
        )
        .where(FEEDBACK.c.prediction_id == prediction_id)
        .order_by(FEEDBACK.c.feedback_id)
    )
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table(FEEDBACK.name):
            return []
        return [FeedbackOutcome(*row) for row in connection.execute(statement)]


def count_rows(engine: sa.Engine) -> int:
    """How many predictions are logged (0 before the table exists)."""
    with engine.connect() as connection:
        if not table_exists(connection):
            return 0
        statement = sa.select(sa.func.count()).select_from(PREDICTIONS)
        return int(connection.execute(statement).scalar_one())


def write_parquet(frame: pd.DataFrame, out: Path) -> None:
    """Write a log frame to Parquet atomically: next to the target, then renamed over it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # A reader never sees half a file.
    partial = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    try:
        frame.to_parquet(partial, index=False)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
