"""Model lifecycle and micro-batching: atomic swaps, one snapshot per batch, failure handling.

Loading a model from the registry is tested in tests/stores/test_serving.py.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from api.model_service import (
    MicroBatcher,
    ModelHolder,
    ModelReloadError,
    ModelUnavailableError,
)
from crimeflow.contract.incident import CanonicalIncident
from crimeflow.contract.settings import Settings
from crimeflow.domain.features import is_canonical
from crimeflow.stores.serving import ServingModel

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def incident(ward: int) -> CanonicalIncident:
    """A valid incident whose ward identifies it (the fake models score by ward)."""
    return CanonicalIncident(
        date=datetime(2024, 5, 1, 14, 30),
        iucr="0486",
        primary_type="BATTERY",
        description=None,
        location_description=None,
        domestic=None,
        beat=None,
        district=None,
        ward=ward,
        community_area=None,
        fbi_code=None,
        x_coordinate=None,
        y_coordinate=None,
        latitude=41.75,
        longitude=-87.63,
        id=None,
        case_number=None,
        block=None,
        year=None,
        updated_on=None,
    )


class WardModel:
    """A fake model: P(arrest) = ward / 1000 + offset; records the size of every call."""

    def __init__(self, offset: float = 0.0, gate: threading.Event | None = None) -> None:
        self.offset = offset
        self.gate = gate
        self.calls: list[int] = []
        self.canonical_inputs = True

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        if self.gate is not None:
            assert self.gate.wait(5), "test gate never opened"
        self.calls.append(len(frame))
        self.canonical_inputs &= is_canonical(frame)
        p = frame["ward"].to_numpy(dtype="float64") / 1000.0 + self.offset
        return np.column_stack([1 - p, p])


class BrokenModel:
    """A fake model that fails or returns garbage."""

    def __init__(self, result: Any = None) -> None:
        self.result = result

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        if self.result is None:
            raise ValueError("boom")
        return np.asarray(self.result)


def serving(model: Any, version: str = "1") -> ServingModel:
    """A ServingModel around a fake model."""
    return ServingModel(
        model=model,
        name="chicago-arrest",
        version=version,
        alias="champion",
        run_id=None,
        loaded_at=datetime.now(UTC),
        threshold=0.3,
        metrics={},
    )


class FakeRegistry:
    """Resolver + loader for ModelHolder: `alias` names the version; loads are counted."""

    def __init__(self, version: str | None = "1", fail_load: bool = False) -> None:
        self.version = version
        self.fail_load = fail_load
        self.loads: list[str] = []

    def resolve(self, settings: Settings, alias: str) -> str | None:
        return self.version

    def load(self, settings: Settings, alias: str) -> ServingModel:
        if self.fail_load:
            raise OSError("artifact store unreachable")
        assert self.version is not None
        self.loads.append(self.version)
        return serving(WardModel(offset=float(self.version) / 10), self.version)


def holder_for(registry: FakeRegistry, **kwargs: Any) -> ModelHolder:
    """A ModelHolder on the fake registry."""
    settings = Settings(_env_file=None)
    return ModelHolder(settings, loader=registry.load, resolver=registry.resolve, **kwargs)


def holder_with(model: ServingModel | None) -> ModelHolder:
    """A ModelHolder whose current model is `model` (no registry involved)."""
    holder = holder_for(FakeRegistry(None))
    holder._current = model
    return holder


# --- ModelHolder -----------------------------------------------------------------------------


async def test_reload_loads_a_new_version_and_skips_the_served_one() -> None:
    registry = FakeRegistry("1")
    swaps: list[tuple[str | None, str]] = []
    holder = holder_for(
        registry, on_swap=lambda old, new: swaps.append((old and old.version, new.version))
    )
    assert holder.current is None
    first = await holder.reload()
    assert first.changed and first.version == "1" and holder.current.version == "1"
    again = await holder.reload()
    assert not again.changed and registry.loads == ["1"]
    registry.version = "2"
    second = await holder.reload()
    assert (second.changed, second.version, second.previous_version) == (True, "2", "1")
    assert swaps == [(None, "1"), ("1", "2")]


async def test_without_an_alias_nothing_is_served_and_the_reason_is_kept() -> None:
    holder = holder_for(FakeRegistry(None))
    outcome = await holder.reload()
    assert not outcome.changed and holder.current is None
    with pytest.raises(ModelUnavailableError, match="has alias 'champion'"):
        holder.require()


async def test_a_failed_load_keeps_the_old_model_serving() -> None:
    registry = FakeRegistry("1")
    holder = holder_for(registry)
    await holder.reload()
    old = holder.current
    registry.version, registry.fail_load = "2", True
    with pytest.raises(ModelReloadError, match="artifact store unreachable"):
        await holder.reload()
    assert holder.current is old


async def test_a_registry_outage_is_a_reload_error() -> None:
    def unreachable(settings: Settings, alias: str) -> str | None:
        raise ConnectionError("registry down")

    holder = ModelHolder(Settings(_env_file=None), resolver=unreachable)
    with pytest.raises(ModelReloadError, match="registry down"):
        await holder.reload()


async def test_concurrent_reloads_load_a_version_once() -> None:
    registry = FakeRegistry("3")
    holder = holder_for(registry)
    outcomes = await asyncio.gather(*(holder.reload() for _ in range(5)))
    assert registry.loads == ["3"]
    assert sum(o.changed for o in outcomes) == 1


async def test_poll_picks_up_a_moved_alias() -> None:
    registry = FakeRegistry("1")
    holder = holder_for(registry)
    poll = asyncio.create_task(holder.poll(0.01))
    try:
        for _ in range(200):
            if holder.current is not None:
                break
            await asyncio.sleep(0.01)
        registry.version = "2"
        for _ in range(200):
            if holder.current.version == "2":
                break
            await asyncio.sleep(0.01)
    finally:
        poll.cancel()
    assert holder.current.version == "2"


# --- MicroBatcher ----------------------------------------------------------------------------


async def test_concurrent_rows_are_scored_together_each_getting_its_own_answer() -> None:
    model = WardModel()
    batcher = MicroBatcher(holder_with(serving(model)), max_rows=8, wait_ms=5)
    batcher.start()
    try:
        results = await asyncio.gather(*(batcher.predict(incident(ward)) for ward in range(20)))
    finally:
        await batcher.stop()
    assert [p for _, p in results] == pytest.approx([w / 1000 for w in range(20)])
    assert sum(model.calls) == 20 and max(model.calls) <= 8 and len(model.calls) <= 4
    assert model.canonical_inputs  # the pipeline gets canonical frames: no to_canonical
    assert batcher.batches == len(model.calls) and batcher.rows == 20


async def test_a_batch_is_answered_by_the_model_that_scored_it() -> None:
    gate = threading.Event()
    old, new = serving(WardModel(0.1, gate), "1"), serving(WardModel(0.2), "2")
    holder = holder_with(old)
    batcher = MicroBatcher(holder, max_rows=64, wait_ms=0)
    batcher.start()
    try:
        first = asyncio.gather(*(batcher.predict(incident(w)) for w in range(3)))
        await asyncio.sleep(0.05)  # the first batch is now inside the (gated) old model
        holder._current = new  # the swap happens while it is being scored
        second = asyncio.gather(*(batcher.predict(incident(w)) for w in range(3)))
        gate.set()
        before, after = await first, await second
    finally:
        await batcher.stop()
    assert {m.version for m, _ in before} == {"1"}
    assert [p for _, p in before] == pytest.approx([0.1, 0.101, 0.102])
    assert {m.version for m, _ in after} == {"2"}
    assert [p for _, p in after] == pytest.approx([0.2, 0.201, 0.202])


async def test_no_model_means_unavailable_and_failures_reach_every_waiter() -> None:
    holder = holder_with(None)
    batcher = MicroBatcher(holder, max_rows=4, wait_ms=1)
    batcher.start()
    try:
        with pytest.raises(ModelUnavailableError):
            await batcher.predict(incident(1))
        holder._current = serving(BrokenModel())
        results = await asyncio.gather(
            *(batcher.predict(incident(w)) for w in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, RuntimeError) and "boom" in str(r) for r in results)
        assert len({id(r) for r in results}) == 3  # one exception each, no shared traceback
        holder._current = serving(BrokenModel([[0.5, float("nan")]]))
        with pytest.raises(RuntimeError, match="invalid probabilities"):
            await batcher.predict(incident(1))
        holder._current = serving(WardModel())  # the worker survived all of that
        assert (await batcher.predict(incident(7)))[1] == pytest.approx(0.007)
    finally:
        await batcher.stop()


async def test_a_cancelled_request_does_not_disturb_its_batch_mates() -> None:
    gate = threading.Event()
    batcher = MicroBatcher(holder_with(serving(WardModel(gate=gate))), max_rows=64, wait_ms=0)
    batcher.start()
    try:
        blocker = asyncio.ensure_future(batcher.predict(incident(1)))
        await asyncio.sleep(0.05)  # the worker is inside the gated model
        doomed = asyncio.ensure_future(batcher.predict(incident(2)))
        kept = asyncio.ensure_future(batcher.predict(incident(3)))
        await asyncio.sleep(0)
        doomed.cancel()
        gate.set()
        assert (await kept)[1] == pytest.approx(0.003)
        assert (await blocker)[1] == pytest.approx(0.001)
    finally:
        await batcher.stop()


async def test_stop_answers_queued_rows_then_refuses_new_ones() -> None:
    gate = threading.Event()
    batcher = MicroBatcher(holder_with(serving(WardModel(gate=gate))), max_rows=2, wait_ms=0)
    batcher.start()
    pending = [asyncio.ensure_future(batcher.predict(incident(w))) for w in range(5)]
    await asyncio.sleep(0.05)
    stopping = asyncio.ensure_future(batcher.stop())
    await asyncio.sleep(0.01)
    gate.set()
    await stopping
    assert [p for _, p in await asyncio.gather(*pending)] == pytest.approx(
        [w / 1000 for w in range(5)]
    )
    with pytest.raises(ModelUnavailableError, match="shutting down"):
        await batcher.predict(incident(1))


def test_invalid_batcher_settings_are_rejected() -> None:
    with pytest.raises(ValueError):
        MicroBatcher(holder_with(None), max_rows=0)
    with pytest.raises(ValueError):
        MicroBatcher(holder_with(None), wait_ms=-1)
