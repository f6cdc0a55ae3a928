"""The prediction log's reads: windows typed like the contract, round trips, Parquet export."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from crimeflow.contract.incident import incidents_from_frame
from crimeflow.contract.schema import LABEL, chicago, empty_canonical, to_canonical
from crimeflow.contract.settings import Settings
from crimeflow.stores.prediction_log import (
    INPUT_COLUMNS,
    LOG_COLUMNS,
    PREDICTIONS,
    PredictionLog,
    empty_log_frame,
    export_predictions,
    read_predictions,
    record_to_row,
)
from tests.stores.test_prediction_log.records import (
    REAL_DATA_DIR,
    T0,
    record,
)

# A writer that strands its waiters would hang a test: fail it instead.
pytestmark = pytest.mark.timeout(120)


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
        in_chicago = (T0 + timedelta(hours=2)).astimezone(chicago())
        assert len(log.read_window(since=in_chicago)) == 1
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
        features = incidents_from_frame(incidents)
        await asyncio.gather(*(log.append([record(incident=f)]) for f in features))
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
        await log.append([record(incident=f) for f in incidents_from_frame(raw)])
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


@pytest.mark.anyio
async def test_one_stored_out_of_range_row_does_not_stop_a_read(
    log_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Old data: a row stored before the API range-checked timestamps, inserted as it was.
    settings = Settings(home=tmp_path / "home", prediction_log_url=log_url, _env_file=None)
    log = PredictionLog.from_settings(settings)
    await log.start()
    try:
        await log.append([record(served_at=T0, id=1)])
        bad = {**record_to_row(record(served_at=T0 + timedelta(hours=1), id=2))}
        bad.update(
            updated_on=datetime(1, 1, 1),
            date=datetime(9999, 12, 31),
            feedback_arrest=True,
            feedback_at=datetime(1, 1, 1, tzinfo=UTC),
        )
        with log.engine.begin() as connection:
            connection.execute(sa.insert(PREDICTIONS).values(**bad))
    finally:
        await log.stop()
    with caplog.at_level(logging.WARNING, logger="crimeflow.stores.prediction_log.reads"):
        frame = read_predictions(settings)
    assert frame["id"].tolist() == [1, 2]
    assert frame["updated_on"].isna().tolist() == [False, True]
    assert frame["date"].isna().tolist() == [False, True]
    assert frame["feedback_at"].isna().tolist() == [True, True]
    assert frame["feedback_arrest"].tolist()[1] is True  # the rest of the row is intact
    warned = " ".join(r.getMessage() for r in caplog.records)
    for column in ("updated_on", "date", "feedback_at"):
        assert f"1 stored {column} value(s)" in warned
    # The export and the monitor's reader go through the same path.
    assert export_predictions(settings, None, None, tmp_path / "out.parquet") == 2


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
