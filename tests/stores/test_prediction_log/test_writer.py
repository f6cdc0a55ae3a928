"""The prediction log's writing: group commit, durability, failure isolation, feedback, signals.

Every behaviour is checked on SQLite (a file under tmp_path) and on PostgreSQL (a fresh schema
per test in the session's throwaway database, see conftest.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from crimeflow.contract.incident import columns_of
from crimeflow.stores.prediction_log import (
    PREDICTIONS,
    PredictionBatch,
    PredictionLog,
    PredictionLogClosedError,
    PredictionLogError,
    PredictionLogUnavailableError,
    PredictionLogWriteError,
    WriterHooks,
)
from crimeflow.stores.prediction_log import writer as writer_module
from tests.stores.test_prediction_log.records import (
    REPO,
    T0,
    record,
    stored_ids,
)

# A writer that strands its waiters would hang a test: fail it instead.
pytestmark = pytest.mark.timeout(120)


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
async def test_a_failed_commit_reaches_every_waiter_and_the_writer_recovers(
    log_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = PredictionLog(log_url, batch_wait_ms=50)
    await log.start()
    broken = {"on": True}
    real_insert = writer_module.insert_rows

    # At the insert itself: PostgreSQL's COPY bypasses SQLAlchemy's cursor events.
    def fail_inserts(connection: sa.Connection, rows: Any) -> None:
        if broken["on"]:
            raise RuntimeError("disk on fire")
        real_insert(connection, rows)

    monkeypatch.setattr(writer_module, "insert_rows", fail_inserts)
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


@pytest.mark.anyio
async def test_feedback_keeps_a_history_and_says_what_it_replaced(log_url: str) -> None:
    log = PredictionLog(log_url, batch_wait_ms=0)
    await log.start()
    try:
        one = record()
        await log.append([one])
        first = await log.add_feedback(one.prediction_id, True, request_id="r1")
        assert first is not None and not first.replaced and first.previous_arrest is None
        again = await log.add_feedback(one.prediction_id, False, request_id="r2")
        assert again is not None and again.replaced and again.previous_arrest is True
        same = await log.add_feedback(one.prediction_id, False)
        assert same is not None and same.replaced and same.previous_arrest is False
        history = log.feedback_history(one.prediction_id)
        assert [(h.arrest, h.previous_arrest, h.request_id) for h in history] == [
            (True, None, "r1"),
            (False, True, "r2"),
            (False, False, None),
        ]
        assert [h.received_at for h in history] == sorted(h.received_at for h in history)
        assert all(h.received_at.tzinfo is not None for h in history)
        # The latest outcome is what the monitor reads.
        assert log.read_window()["feedback_arrest"].tolist() == [False]
        assert log.feedback_history("no-such-prediction") == []
    finally:
        await log.stop()


@pytest.mark.anyio
async def test_a_log_created_before_the_feedback_history_gains_it_on_start(log_url: str) -> None:
    # A database of an earlier release: predictions with feedback, no `feedback` table.
    old = PredictionLog(log_url, batch_wait_ms=0)
    await old.start()
    one = record()
    await old.append([one])
    with old.engine.begin() as connection:
        connection.execute(
            sa.update(PREDICTIONS).values(feedback_arrest=True, feedback_at=datetime.now(UTC))
        )
        connection.execute(sa.text("DROP TABLE feedback"))
    await old.stop()
    log = PredictionLog(log_url, batch_wait_ms=0)
    await log.start()
    try:
        outcome = await log.add_feedback(one.prediction_id, False)
        # The outcome stored before the history existed is what this one replaced.
        assert outcome is not None and outcome.replaced and outcome.previous_arrest is True
        assert len(log.feedback_history(one.prediction_id)) == 1
        assert log.count() == 1
    finally:
        await log.stop()


@pytest.mark.anyio
async def test_feedback_on_an_unreachable_store_is_a_log_error(tmp_path: Path) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path / 'home' / 'p.db'}", batch_wait_ms=0)
    await log.start()
    try:
        one = record()
        await log.append([one])
        # What a database that went away looks like to the feedback statement.
        with log.engine.begin() as connection:
            connection.execute(sa.text("DROP TABLE predictions"))
        with pytest.raises(PredictionLogUnavailableError, match="unavailable") as raised:
            await log.add_feedback(one.prediction_id, True)
        assert isinstance(raised.value, PredictionLogError)
    finally:
        await log.stop()


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
from crimeflow.contract.incident import columns_of
from crimeflow.stores.prediction_log import writer as writer_module
from crimeflow.stores.prediction_log import (
    PredictionBatch,
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
                label=True, incident=INCIDENT,
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


# --- hooks: what the API's metrics see ---------------------------------------------------------


class Watch:
    """WriterHooks that record every call, with the rows in flight after each."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.commits: list[float] = []
        self.failures = 0

    def hooks(self) -> WriterHooks:
        return WriterHooks(
            queued=self._queued,
            settled=self._settled,
            committed=self.commits.append,
            failed=self._failed,
        )

    def _queued(self, rows: int) -> None:
        self.in_flight += rows
        self.peak = max(self.peak, self.in_flight)

    def _settled(self, rows: int) -> None:
        self.in_flight -= rows

    def _failed(self) -> None:
        self.failures += 1


@pytest.mark.anyio
async def test_hooks_see_queued_rows_commits_and_failed_transactions(log_url: str) -> None:
    watch = Watch()
    log = PredictionLog(log_url, batch_wait_ms=50, hooks=watch.hooks())
    await log.start()
    try:
        original = record()
        await asyncio.gather(log.append([original, record()]), log.append([record()]))
        assert (watch.peak, watch.in_flight) == (3, 0)  # queued together, then all settled
        assert len(watch.commits) == 1 and 0 < watch.commits[0] < 10
        assert watch.failures == 0
        with pytest.raises(PredictionLogWriteError):
            await log.append([record(prediction_id=original.prediction_id)])
        assert (watch.failures, watch.in_flight, len(watch.commits)) == (1, 0, 1)
    finally:
        await log.stop()


# --- batches held column by column ---------------------------------------------------------


@pytest.mark.anyio
async def test_a_column_batch_is_stored_like_the_same_records(log_url: str) -> None:
    log = PredictionLog(log_url, batch_wait_ms=0)
    await log.start()
    try:
        records = [
            record(T0),
            record(T0, ward=None, beat="0912", latitude=None, longitude=None, updated_on=None),
            record(T0, domestic=None, description=None, id=None, year=None, x_coordinate=None),
            record(T0, domestic=False, date=datetime(2001, 1, 1, 0, 0, 0, 1)),
        ]
        await log.append(records)
        batch = PredictionBatch(
            incidents=columns_of([r.incident for r in records]),
            prediction_ids=[f"z{r.prediction_id[1:]}" for r in records],  # z: not hex
            served_at=T0,
            model_name="chicago-arrest",
            model_version="3",
            request_id="req-1",
            probabilities=[0.25, 0.0, 1.0, 0.5],
            labels=[False, False, True, True],
        )
        await log.append_batch(batch)
        assert log.stats.committed_batches == 2  # one transaction per append
        frame = log.read_window().sort_values("prediction_id", key=lambda s: s.str[1:])
        by_row = frame.drop(columns=["prediction_id", "probability", "label"]).reset_index(
            drop=True
        )
        pairs = by_row.iloc[0::2].reset_index(drop=True), by_row.iloc[1::2].reset_index(drop=True)
        pd.testing.assert_frame_equal(*pairs)  # each record next to its batch twin
        stored = frame.set_index("prediction_id").loc[batch.prediction_ids]
        assert stored.probability.tolist() == [0.25, 0.0, 1.0, 0.5]
        assert stored.label.tolist() == [False, False, True, True]
        with pytest.raises(ValueError, match="probabilities"):
            await log.append_batch(dataclasses.replace(batch, probabilities=[0.1, 0.2, 1.5, 0.3]))
        with pytest.raises(ValueError, match="timezone-aware"):
            await log.append_batch(dataclasses.replace(batch, served_at=datetime(2025, 1, 1)))
        assert log.count() == 8
    finally:
        await log.stop()


@pytest.mark.anyio
async def test_text_with_copy_escapes_and_exact_floats_round_trip(log_url: str) -> None:
    # PostgreSQL takes rows through COPY's text format: tabs, newlines, backslashes and a
    # literal \N must come back as sent, and floats bit for bit.
    log = PredictionLog(log_url, batch_wait_ms=0)
    await log.start()
    try:
        tricky = record(block="A\tB\nC\\D \\N é")
        tricky = msgspec.structs.replace(tricky, probability=0.1 + 0.2)
        await log.append([tricky])
    finally:
        await log.stop()
    engine = sa.create_engine(log_url, poolclass=NullPool)
    with engine.connect() as connection:
        block, probability = connection.execute(
            sa.select(PREDICTIONS.c.block, PREDICTIONS.c.probability)
        ).one()
    engine.dispose()
    assert block == "A\tB\nC\\D \\N é" and probability == 0.1 + 0.2
