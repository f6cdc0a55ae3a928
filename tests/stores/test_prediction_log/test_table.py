"""The prediction log's table: the row of a record holds its typed incident's values."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pandas as pd
import pytest
import sqlalchemy as sa

from crimeflow.contract.incident import columns_of, incidents_from_frame
from crimeflow.contract.schema import LABEL
from crimeflow.standins.generate import generate_incidents
from crimeflow.stores.prediction_log import (
    PREDICTIONS,
    record_to_row,
)
from crimeflow.stores.prediction_log.ids import PredictionIds
from crimeflow.stores.prediction_log.table import (
    INSERT_COLUMNS,
    METADATA,
    PredictionBatch,
    _bound,
    batch_values,
    insert_rows,
)
from tests.stores.test_prediction_log.records import (
    FEED_TEXT,
    INCIDENT,
    record,
)


def test_frame_text_becomes_typed_features_and_rows_of_the_column_types() -> None:
    # Frames (generated, exported) reach the log through the codec's frame edge.
    text = {
        **FEED_TEXT,
        "beat": "614",
        "district": "6.0",
        "domestic": "false",
        "date": "2025-03-01T06:30:00Z",  # an instant: shown in Chicago local time
        "updated_on": "03/01/2025 01:05:00 PM",  # the Socrata export style
        "latitude": "nan",
        "block": "  ",
    }
    (features,) = incidents_from_frame(pd.DataFrame([text]))
    row = record_to_row(record(incident=features))
    assert row["id"] == 13_000_001 and row["ward"] == 11
    assert row["beat"] == "0614" and row["district"] == "006"
    assert row["domestic"] is False
    assert row["date"] == datetime(2025, 3, 1, 0, 30)
    assert row["updated_on"] == datetime(2025, 3, 1, 13, 5)
    assert row["latitude"] is None and row["block"] is None
    assert LABEL not in row
    assert set(row) == {c.name for c in PREDICTIONS.columns} - {"feedback_arrest", "feedback_at"}


def test_typed_values_are_stored_like_their_text_forms() -> None:
    same = {"prediction_id": "a" * 32, "served_at": datetime(2025, 3, 1, tzinfo=UTC)}
    typed_frame = pd.DataFrame(
        [
            {
                **FEED_TEXT,
                "id": 13_000_001,
                "ward": 11,
                "domestic": True,
                "latitude": 41.75,
                "primary_type": " BATTERY ",
                "description": "",
                "beat": "614",
            }
        ]
    )
    text_frame = pd.DataFrame(
        [{**FEED_TEXT, "latitude": "41.75", "description": None, "beat": "0614"}]
    )
    (typed,) = [
        record_to_row(record(**same, incident=f)) for f in incidents_from_frame(typed_frame)
    ]
    (text,) = [record_to_row(record(**same, incident=f)) for f in incidents_from_frame(text_frame)]
    assert typed == text
    assert typed["primary_type"] == "BATTERY" and typed["description"] is None
    # The API's incident and the frame's incident of the same record make the same row.
    assert record_to_row(record(**same)) == record_to_row(
        record(**same, incident=incidents_from_frame(pd.DataFrame([FEED_TEXT]))[0])
    )
    with pytest.raises(ValueError, match="latitude"):
        record_to_row(record(latitude=float("inf")))


def test_rows_hold_the_typed_values_and_refuse_the_wrong_types() -> None:
    row = record_to_row(record())
    assert row["date"] is INCIDENT.date and row["ward"] == 11 and row["latitude"] == 41.824299
    # NaN is a missing coordinate; an aware timestamp is shown in Chicago local time.
    aware = datetime(2025, 3, 1, 6, 30, tzinfo=UTC)
    row = record_to_row(record(longitude=float("nan"), updated_on=aware))
    assert row["longitude"] is None and row["updated_on"] == datetime(2025, 3, 1, 0, 30)
    # Subclasses of a column's type are stored as they are.
    assert record_to_row(record(date=pd.Timestamp("2025-03-01 06:30")))["date"] == aware.replace(
        tzinfo=None
    )
    for change, field in [
        ({"ward": "11"}, "'ward'"),
        ({"community_area": True}, "'community_area'"),
        ({"domestic": 1}, "'domestic'"),
        ({"date": "2025-03-01T06:30:00"}, "'date'"),
        ({"beat": 912}, "'beat'"),
        ({"latitude": "41.8"}, "'latitude'"),
    ]:
        with pytest.raises(ValueError, match=field):
            record_to_row(record(**change))
    with pytest.raises(TypeError, match="CanonicalIncident"):
        record_to_row(msgspec.structs.replace(record(), incident=msgspec.structs.asdict(INCIDENT)))


def test_sqlite_datetimes_bind_as_sqlalchemy_formats_them() -> None:
    from sqlalchemy.dialects import sqlite

    from crimeflow.stores.prediction_log.table import _sqlite_datetime

    dialect = sqlite.dialect()
    original = sa.DateTime().dialect_impl(dialect).bind_processor(dialect)
    fast = _sqlite_datetime(original)
    values = [
        datetime(2024, 4, 1, 0, 0),
        datetime(2024, 4, 1, 23, 59, 59, 999_999),
        datetime(1, 1, 1),
        datetime(999, 12, 31, 1, 2, 3, 4),
        datetime(2024, 4, 1, 12, 0, tzinfo=UTC),  # aware: SQLAlchemy's own path
        pd.Timestamp("2024-04-01 12:00:00.000001"),  # a subclass: SQLAlchemy's own path
        None,
    ]
    assert [fast(v) for v in values] == [original(v) for v in values]


def _generated_rows(count: int) -> list[tuple[object, ...]]:
    """`batch_values` of `count` generated incidents, as the API's batch path logs them."""
    frame = generate_incidents("2024-04", "2024-04", rows_per_month=count, seed=3)
    incidents = incidents_from_frame(frame.drop(columns=[LABEL]).head(count))
    return batch_values(
        PredictionBatch(
            incidents=columns_of(incidents),
            prediction_ids=PredictionIds().many(len(incidents)),
            served_at=datetime(2026, 12, 3, 12, 0, 0, 123_456, tzinfo=UTC),
            model_name="chicago-arrest",
            model_version="7",
            request_id="r-1",
            probabilities=[i / len(incidents) for i in range(len(incidents))],
            labels=[i % 2 == 0 for i in range(len(incidents))],
        )
    )


def _stored(engine: sa.Engine) -> list[tuple[object, ...]]:
    """Every stored row with the SQLite storage class of each value."""
    typed = ", ".join(f"{c}, typeof({c})" for c in INSERT_COLUMNS)
    with engine.connect() as connection:
        query = f"SELECT {typed} FROM predictions ORDER BY prediction_id"
        return [tuple(r) for r in connection.exec_driver_sql(query)]


def test_sqlite_multirow_inserts_store_what_executemany_stores(tmp_path: Path) -> None:
    rows = _generated_rows(300)
    assert len(rows) == 300
    engines = {name: sa.create_engine(f"sqlite:///{tmp_path / name}.db") for name in ("a", "b")}
    for engine in engines.values():
        METADATA.create_all(engine)
    with engines["a"].begin() as connection:
        # A low variable limit makes 300 rows take many statements (largest: 16 rows).
        connection.connection.driver_connection.setlimit(
            sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 17 * len(INSERT_COLUMNS)
        )
        insert_rows(connection, rows)
    with engines["b"].begin() as connection:
        marks = ", ".join("?" * len(INSERT_COLUMNS))
        statement = f"INSERT INTO predictions ({', '.join(INSERT_COLUMNS)}) VALUES ({marks})"
        connection.connection.driver_connection.executemany(
            statement, _bound(rows, connection.dialect)
        )
    stored = _stored(engines["a"])
    assert len(stored) == 300
    assert stored == _stored(engines["b"])


def test_a_duplicate_id_fails_the_whole_sqlite_insert(tmp_path: Path) -> None:
    rows = _generated_rows(40)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    METADATA.create_all(engine)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        # The 41st row repeats the 4th one's id; it lands in the third statement (32 + 8 + 1),
        # after two have run: the transaction must take them back too.
        insert_rows(connection, [*rows, rows[3]])
    assert _stored(engine) == []
