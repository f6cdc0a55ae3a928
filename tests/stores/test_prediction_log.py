"""The prediction log: group commit, durability, failure isolation, reading and export.

Every behaviour is checked on SQLite (a file under tmp_path) and on PostgreSQL (a fresh schema
per test in the session's throwaway database, see conftest.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from crimeflow.contract.incident import CanonicalIncident
from crimeflow.contract.schema import LABEL, empty_canonical, to_canonical
from crimeflow.contract.settings import Settings
from crimeflow.stores.prediction_log import (
    INPUT_COLUMNS,
    LOG_COLUMNS,
    PREDICTIONS,
    PredictionLog,
    PredictionLogClosedError,
    PredictionLogWriteError,
    PredictionRecord,
    empty_log_frame,
    export_predictions,
    features_from_frame,
    new_prediction_id,
    read_predictions,
    record_to_row,
)

REPO = Path(__file__).resolve().parents[2]
REAL_DATA_DIR = REPO / ".." / "shared" / "data" / "real"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
# A writer that strands its waiters would hang a test: fail it instead.
pytestmark = pytest.mark.timeout(120)

# One incident as the API hands it to the log: validated, in canonical Python types.
INCIDENT = CanonicalIncident(
    id=13_000_001,
    case_number="JH100001",
    date=datetime(2025, 2, 28, 23, 15),
    block="038XX S ARCHER AVE",
    iucr="0486",
    primary_type="BATTERY",
    description="DOMESTIC BATTERY SIMPLE",
    location_description="APARTMENT",
    domestic=True,
    beat="0912",
    district="009",
    ward=11,
    community_area=59,
    fbi_code="08B",
    x_coordinate=1_167_028.0,
    y_coordinate=1_879_278.0,
    year=2025,
    updated_on=datetime(2025, 3, 1, 6, 0),
    latitude=41.824299,
    longitude=-87.662736,
)
# The same incident as the feed's text, for frames.
FEED_TEXT: dict[str, str] = {
    "id": "13000001",
    "case_number": "JH100001",
    "date": "2025-02-28T23:15:00.000",
    "block": "038XX S ARCHER AVE",
    "iucr": "0486",
    "primary_type": "BATTERY",
    "description": "DOMESTIC BATTERY SIMPLE",
    "location_description": "APARTMENT",
    "domestic": "true",
    "beat": "0912",
    "district": "009",
    "ward": "11",
    "community_area": "59",
    "fbi_code": "08B",
    "x_coordinate": "1167028",
    "y_coordinate": "1879278",
    "year": "2025",
    "updated_on": "2025-03-01T06:00:00.000",
    "latitude": "41.824299",
    "longitude": "-87.662736",
}


@pytest.fixture
def anyio_backend() -> str:
    """Run the async tests on asyncio (what uvicorn uses)."""
    return "asyncio"


@pytest.fixture
def pg_log_url(postgres_url: str) -> Iterator[str]:
    """A URL whose unqualified tables live in a private schema of the session's database."""
    import psycopg

    base = sa.make_url(postgres_url)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    dsn = f"host=127.0.0.1 port=5432 user=postgres dbname={base.database}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    # search_path puts the log's table into the schema; application_name tags its sessions.
    url = base.update_query_dict(
        {"options": f"-csearch_path={schema}", "application_name": f"crimeflow-{schema}"}
    )
    yield url.render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store: a SQLite file, or a private schema in the PostgreSQL test database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'home' / 'predictions.db'}"
    return request.getfixturevalue("pg_log_url")


def record(
    served_at: datetime | None = None,
    prediction_id: str | None = None,
    features: CanonicalIncident = INCIDENT,
    **changes: Any,
) -> PredictionRecord:
    """A record of `features` (with changed fields), served at `served_at` (default now)."""
    return PredictionRecord(
        prediction_id=prediction_id or new_prediction_id(),
        served_at=served_at or datetime.now(UTC),
        model_name="chicago-arrest",
        model_version="3",
        request_id="req-1",
        probability=0.25,
        label=False,
        features=msgspec.structs.replace(features, **changes),
    )


def stored_ids(url: str) -> set[str]:
    """Prediction ids visible to a brand-new connection (not the log's own pool)."""
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return set(
                connection.exec_driver_sql("SELECT prediction_id FROM predictions").scalars()
            )
    finally:
        engine.dispose()


# --- the guarantee: append returns after COMMIT ------------------------------------------------


@pytest.mark.anyio
async def test_append_returns_only_after_the_rows_are_committed(log_url: str) -> None:
    # A long batch window: a log that acknowledged before committing would be caught here.
    log = PredictionLog(log_url, batch_wait_ms=150)
    await log.start()
    try:
        first, second = record(), record(ward=None, beat="912")
        started = time.perf_counter()
        await log.append([first, second])
        waited = time.perf_counter() - started
        assert stored_ids(log_url) == {first.prediction_id, second.prediction_id}
        assert waited >= 0.1  # it did wait for companions before its one commit
        assert log.stats.committed_batches == 1
    finally:
        await log.stop()


@pytest.mark.anyio
async def test_concurrent_appends_share_a_few_transactions(log_url: str) -> None:
    log = PredictionLog(log_url, batch_rows=512, batch_wait_ms=20)
    await log.start()
    commits: list[int] = []
    sa.event.listen(log.engine, "commit", lambda _conn: commits.append(1))
    try:
        records = [record() for _ in range(200)]
        await asyncio.gather(*(log.append([r]) for r in records))
        assert stored_ids(log_url) == {r.prediction_id for r in records}
        assert log.stats.committed_rows == 200
        assert 1 <= len(commits) <= 10  # 200 waiters, a handful of commits
        assert log.stats.committed_batches == len(commits)
    finally:
        await log.stop()


@pytest.mark.anyio
async def test_batch_rows_caps_a_transaction(log_url: str) -> None:
    log = PredictionLog(log_url, batch_rows=10, batch_wait_ms=50)
    await log.start()
    try:
        await asyncio.gather(*(log.append([record()]) for _ in range(35)))
        # 35 single-row appends at most 10 rows per commit: at least 4 commits.
        assert log.stats.committed_batches >= 4
        assert log.count() == 35
    finally:
        await log.stop()


@pytest.mark.anyio
async def test_stop_commits_everything_queued_then_refuses_appends(log_url: str) -> None:
    # The writer sits in a 5-second batch window; stop() must not wait it out or drop the rows.
    log = PredictionLog(log_url, batch_rows=100_000, batch_wait_ms=5_000)
    await log.start()
    records = [record() for _ in range(50)]
    pending = [asyncio.create_task(log.append([r])) for r in records]
    await asyncio.sleep(0.1)
    assert not any(task.done() for task in pending)
    started = time.perf_counter()
    await log.stop()
    assert time.perf_counter() - started < 2.0
    # Every waiter was answered, none with an error.
    await asyncio.wait_for(asyncio.gather(*pending), 5)
    assert stored_ids(log_url) == {r.prediction_id for r in records}
    with pytest.raises(PredictionLogClosedError, match="stopped"):
        await log.append([record()])
    assert not await log.ping()
    await log.stop()  # idempotent


@pytest.mark.anyio
async def test_lifecycle_errors_are_clear(tmp_path: Path) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path / 'p.db'}")
    with pytest.raises(PredictionLogClosedError, match="new"):
        await log.append([record()])
    assert not await log.ping()
    await log.start()
    await log.start()  # idempotent
    assert await log.ping()
    await log.stop()
    with pytest.raises(PredictionLogClosedError):
        await log.start()


# --- failures ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_failed_commit_reaches_every_waiter_and_the_writer_recovers(log_url: str) -> None:
    log = PredictionLog(log_url, batch_wait_ms=50)
    await log.start()
    broken = {"on": True}

    def fail_inserts(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if broken["on"] and statement.lstrip().upper().startswith("INSERT"):
            raise RuntimeError("disk on fire")

    sa.event.listen(log.engine, "before_cursor_execute", fail_inserts)
    try:
        doomed = [record() for _ in range(3)]
        outcomes = await asyncio.gather(*(log.append([r]) for r in doomed), return_exceptions=True)
        assert all(isinstance(o, PredictionLogWriteError) for o in outcomes), outcomes
        assert all("disk on fire" in str(o) for o in outcomes)
        assert log.stats.failed_batches == 1
        assert stored_ids(log_url) == set()

        broken["on"] = False
        survivor = record()
        await log.append([survivor])
        assert stored_ids(log_url) == {survivor.prediction_id}
        assert await log.ping()
    finally:
        await log.stop()


@pytest.mark.anyio
async def test_a_bad_append_does_not_fail_its_batch_mates(log_url: str) -> None:
    log = PredictionLog(log_url, batch_wait_ms=50)
    await log.start()
    try:
        original = record()
        await log.append([original])
        duplicate = record(prediction_id=original.prediction_id)
        good_a, good_b = record(), record()
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                log.append([good_a]),
                log.append([good_b, duplicate]),  # atomic: good_b goes down with its duplicate
                log.append([record()]),
                return_exceptions=True,
            ),
            10,
        )
        assert outcomes[0] is None and outcomes[2] is None
        assert isinstance(outcomes[1], PredictionLogWriteError)
        assert isinstance(outcomes[1].__cause__, sa.exc.IntegrityError)
        ids = stored_ids(log_url)
        assert len(ids) == 3 and good_a.prediction_id in ids and good_b.prediction_id not in ids
    finally:
        await log.stop()


@pytest.mark.anyio
async def test_the_writer_reconnects_after_the_server_dropped_its_connection(
    pg_log_url: str,
) -> None:
    log = PredictionLog(pg_log_url, batch_wait_ms=0)
    await log.start()
    try:
        await log.append([record()])
        engine = sa.create_engine(pg_log_url, poolclass=NullPool)
        with engine.connect() as admin:
            # What a PostgreSQL restart or failover does to the writer's idle connection.
            killed = admin.exec_driver_sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = current_setting('application_name')"
                " AND pid <> pg_backend_pid()"
            ).scalar_one()
        engine.dispose()
        assert killed >= 1
        await log.append([record()])  # retried once on a fresh connection, not a 503
        assert log.count() == 2 and log.stats.failed_batches == 0
    finally:
        await log.stop()


@pytest.mark.anyio
async def test_malformed_records_fail_their_caller_before_queueing(tmp_path: Path) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path / 'p.db'}")
    await log.start()
    try:
        naive = record(served_at=datetime(2025, 1, 1, 12, 0))
        with pytest.raises(ValueError, match="timezone-aware"):
            await log.append([naive])
        with pytest.raises(ValueError, match="'ward'"):
            await log.append([record(ward="eleven")])
        with pytest.raises(ValueError, match="probability"):
            await log.append([msgspec.structs.replace(record(), probability=1.5)])
        await log.append([record()])
        assert log.count() == 1
        assert log.stats.failed_batches == 0
    finally:
        await log.stop()


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
    (features,) = features_from_frame(pd.DataFrame([text]))
    row = record_to_row(record(features=features))
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
    (typed,) = [record_to_row(record(**same, features=f)) for f in features_from_frame(typed_frame)]
    (text,) = [record_to_row(record(**same, features=f)) for f in features_from_frame(text_frame)]
    assert typed == text
    assert typed["primary_type"] == "BATTERY" and typed["description"] is None
    # The API's incident and the frame's incident of the same record make the same row.
    assert record_to_row(record(**same)) == record_to_row(
        record(**same, features=features_from_frame(pd.DataFrame([FEED_TEXT]))[0])
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
        record_to_row(msgspec.structs.replace(record(), features=msgspec.structs.asdict(INCIDENT)))


# --- feedback ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_feedback_updates_known_ids_only(log_url: str) -> None:
    log = PredictionLog(log_url, batch_wait_ms=0)
    await log.start()
    try:
        first, second = record(), record()
        await log.append([first, second])
        assert await log.add_feedback(first.prediction_id, True)
        assert not await log.add_feedback("no-such-prediction", False)
        assert await log.add_feedback(second.prediction_id, True)
        assert await log.add_feedback(second.prediction_id, False)  # the latest wins
        frame = log.read_window().set_index("prediction_id")
        ids = [first.prediction_id, second.prediction_id]
        assert frame.loc[ids, "feedback_arrest"].tolist() == [True, False]
        assert frame["feedback_at"].notna().all()
        assert len(frame) == 2
    finally:
        await log.stop()


# --- reading -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_read_window_is_half_open_and_typed_like_the_contract(log_url: str) -> None:
    log = PredictionLog(log_url, batch_wait_ms=0)
    await log.start()
    try:
        hours = [record(served_at=T0 + timedelta(hours=h), id=100 + h) for h in range(3)]
        await log.append(hours)
        await log.append([record(served_at=T0 + timedelta(hours=1, microseconds=1), ward=None)])

        window = log.read_window(T0 + timedelta(hours=1), T0 + timedelta(hours=2))
        assert window["id"].tolist()[:1] == [101]
        assert len(window) == 2  # [since, until): 13:00 and 13:00:00.000001, not 14:00
        assert window["served_at"].is_monotonic_increasing
        assert log.read_window(since=T0 + timedelta(hours=2))["id"].tolist() == [102]
        assert log.read_window(until=T0 + timedelta(hours=1))["id"].tolist() == [100]
        # The same instant expressed in Chicago time selects the same rows; naive means UTC.
        chicago = (T0 + timedelta(hours=2)).astimezone(ZoneInfo("America/Chicago"))
        assert len(log.read_window(since=chicago)) == 1
        assert len(log.read_window(since=datetime(2025, 3, 1, 14, 0))) == 1

        frame = log.read_window()
        assert list(frame.columns) == list(LOG_COLUMNS)
        contract = empty_canonical().drop(columns=[LABEL]).dtypes
        pd.testing.assert_series_equal(frame.dtypes[list(INPUT_COLUMNS)], contract)
        assert str(frame["served_at"].dtype) == "datetime64[ns, UTC]"
        assert frame["label"].dtype == bool and frame["probability"].dtype == "float64"
        assert str(frame["feedback_arrest"].dtype) == "boolean"
        first = frame.iloc[0]
        assert first["served_at"] == pd.Timestamp(T0)
        assert first["date"] == pd.Timestamp("2025-02-28 23:15:00")
        assert first["beat"] == "0912" and frame["domestic"].tolist()[0] is True
        assert first["model_version"] == "3" and first["probability"] == 0.25
        assert frame["ward"].isna().sum() == 1
    finally:
        await log.stop()


def test_reading_a_log_that_does_not_exist_yet_is_empty_and_creates_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "home" / "predictions.db"
    log = PredictionLog(f"sqlite:///{path}")
    frame = log.read_window()
    assert frame.empty and list(frame.columns) == list(LOG_COLUMNS)
    assert log.count() == 0
    assert not path.exists()
    pd.testing.assert_series_equal(frame.dtypes, empty_log_frame().dtypes)


@pytest.mark.anyio
async def test_generated_incidents_round_trip_through_the_log(log_url: str) -> None:
    from crimeflow.standins.generate import generate_incidents

    incidents = generate_incidents("2024-05", "2024-05", rows_per_month=400, seed=11)
    log = PredictionLog(log_url, batch_wait_ms=1)
    await log.start()
    try:
        features = features_from_frame(incidents)
        await asyncio.gather(*(log.append([record(features=f)]) for f in features))
    finally:
        await log.stop()
    stored = log.read_window().sort_values("id", ignore_index=True)
    expected = incidents.drop(columns=[LABEL]).sort_values("id", ignore_index=True)
    pd.testing.assert_frame_equal(stored[list(INPUT_COLUMNS)], expected)


@pytest.mark.real_data
@pytest.mark.anyio
async def test_real_soda_rows_round_trip_through_the_log(tmp_path: Path) -> None:
    source = REAL_DATA_DIR / "crimes_2025-10-18_to_2025-11-03_api_jean-carlos-l.csv"
    if not source.is_file():
        pytest.skip(f"real data not available at {source}")
    raw = pd.read_csv(source, nrows=1_000, dtype=str)
    log = PredictionLog(f"sqlite:///{tmp_path / 'p.db'}", batch_wait_ms=1)
    await log.start()
    try:
        await log.append([record(features=f) for f in features_from_frame(raw)])
    finally:
        await log.stop()
    stored = log.read_window().sort_values("id", ignore_index=True)
    expected = to_canonical(raw).drop(columns=[LABEL]).sort_values("id", ignore_index=True)
    assert len(stored) == 1_000 and stored["latitude"].isna().sum() > 0  # real gaps survive
    pd.testing.assert_frame_equal(stored[list(INPUT_COLUMNS)], expected)


# --- export --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_export_writes_the_window_to_parquet(log_url: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", prediction_log_url=log_url, _env_file=None)
    log = PredictionLog.from_settings(settings)
    await log.start()
    try:
        await log.append([record(served_at=T0 + timedelta(days=d), id=d) for d in range(4)])
        await log.add_feedback((await _first_id(log)), True)
    finally:
        await log.stop()
    out = tmp_path / "exports" / "predictions.parquet"
    rows = export_predictions(settings, T0 + timedelta(days=1), T0 + timedelta(days=3), out)
    assert rows == 2
    exported = pd.read_parquet(out)
    assert exported["id"].tolist() == [1, 2]
    pd.testing.assert_frame_equal(
        exported, read_predictions(settings, T0 + timedelta(days=1), T0 + timedelta(days=3))
    )
    everything = export_predictions(settings, None, None, out)
    assert everything == 4 and pd.read_parquet(out)["feedback_arrest"].sum() == 1
    assert [p.name for p in out.parent.iterdir()] == ["predictions.parquet"]  # no temp left


async def _first_id(log: PredictionLog) -> str:
    """The prediction id of the oldest logged row."""
    return str(log.read_window()["prediction_id"].iloc[0])


def test_cli_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = pytest.importorskip("crimeflow.cli.main")
    if not hasattr(cli, "predictions_app"):
        pytest.skip("`crimeflow predictions` is not registered in crimeflow/cli/main.py")
    from typer.testing import CliRunner

    from crimeflow.contract.settings import get_settings

    home = tmp_path / "home"
    settings = Settings(home=home, _env_file=None)

    async def fill() -> None:
        log = PredictionLog.from_settings(settings)
        await log.start()
        await log.append([record(served_at=T0 + timedelta(hours=h)) for h in range(3)])
        await log.stop()

    asyncio.run(fill())
    monkeypatch.setenv("CRIMEFLOW_HOME", str(home))
    get_settings.cache_clear()
    try:
        out = tmp_path / "out.parquet"
        since = "2025-03-01T13:00:00+00:00"
        result = CliRunner().invoke(
            cli.app, ["predictions", "export", "--since", since, "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
        assert "2 predictions" in result.output
        assert len(pd.read_parquet(out)) == 2
        bad = CliRunner().invoke(
            cli.app, ["predictions", "export", "--since", "soon", "--out", "x"]
        )
        assert bad.exit_code != 0
    finally:
        get_settings.cache_clear()


# --- several workers, signals --------------------------------------------------------------


@pytest.mark.anyio
async def test_two_workers_on_one_sqlite_file_both_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'home' / 'predictions.db'}"
    # Tiny batches and no wait: as many interleaved write transactions as possible.
    workers = [PredictionLog(url, batch_rows=4, batch_wait_ms=0) for _ in range(2)]
    await asyncio.gather(*(w.start() for w in workers))
    try:
        appends = [w.append([record()]) for _ in range(300) for w in workers]
        outcomes = await asyncio.gather(*appends, return_exceptions=True)
        errors = [o for o in outcomes if o is not None]
        assert errors == []
        assert all(w.stats.committed_rows == 300 for w in workers)
        assert workers[0].count() == 600
    finally:
        await asyncio.gather(*(w.stop() for w in workers))


CHILD = r"""
import asyncio, signal, sys
from datetime import UTC, datetime
from crimeflow.contract.incident import INCIDENT_FIELDS, CanonicalIncident
from crimeflow.stores.prediction_log import (
    PredictionLog, PredictionLogClosedError, PredictionRecord, new_prediction_id,
)

INCIDENT = CanonicalIncident(**{
    **dict.fromkeys(INCIDENT_FIELDS), "date": datetime(2025, 1, 1), "iucr": "0486",
    "primary_type": "BATTERY", "id": 1, "beat": "0111",
})

async def main(url: str) -> None:
    log = PredictionLog(url, batch_rows=64, batch_wait_ms=2.0)
    await log.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def client() -> None:
        while True:
            rec = PredictionRecord(
                prediction_id=new_prediction_id(), served_at=datetime.now(UTC),
                model_name="m", model_version="1", request_id=None, probability=0.5,
                label=True, features=INCIDENT,
            )
            try:
                await log.append([rec])
            except PredictionLogClosedError:
                return
            sys.stdout.write(f"ack {rec.prediction_id}\n")

    clients = [asyncio.create_task(client()) for _ in range(32)]
    print("ready", flush=True)
    await stop.wait()
    # Shut down while appends are in flight: stop() must answer every one of them.
    await log.stop()
    await asyncio.wait_for(asyncio.gather(*clients), 10)
    print("stopped", flush=True)

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_every_acknowledged_prediction_survives_a_signal_under_load(
    log_url: str, sig: signal.Signals
) -> None:
    # Two "workers" on the same store, under load, signalled at once: graceful (SIGTERM) or not.
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, log_url],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    acked: set[str] = set()
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready", child.stderr
        for child in children:
            assert child.stdout is not None
            for _ in range(300):  # let each worker acknowledge a few hundred first
                acked.add(child.stdout.readline().split()[1])
        for child in children:
            child.send_signal(sig)
        for child in children:
            out, err = child.communicate(timeout=60)
            lines = out.splitlines()
            acked.update(line.split()[1] for line in lines if line.startswith("ack "))
            if sig == signal.SIGTERM:
                assert child.returncode == 0, err
                assert lines[-1] == "stopped"
                assert "locked" not in err and "Traceback" not in err, err
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    assert len(acked) >= 600
    missing = acked - stored_ids(log_url)
    assert not missing, f"{len(missing)} acknowledged predictions were lost"
