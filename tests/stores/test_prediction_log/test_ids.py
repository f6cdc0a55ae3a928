"""Prediction ids: the /feedback format, unique, time-ordered within a batch and across calls."""

from __future__ import annotations

import itertools
import re
import threading
import time
import uuid

import pytest

from crimeflow.stores.prediction_log import PredictionIds, new_prediction_id
from crimeflow.stores.prediction_log.ids import PredictionIds as Direct

FEEDBACK_ID = re.compile(r"[0-9a-f]{32}")  # api.schemas.FeedbackIn's pattern


def _check_format(ids: list[str]) -> None:
    for text in ids:
        assert FEEDBACK_ID.fullmatch(text), text
        parsed = uuid.UUID(hex=text)
        assert parsed.hex == text and parsed.variant == uuid.RFC_4122 and parsed.version == 7


def test_ids_have_the_feedback_format_and_the_uuid7_layout() -> None:
    ids = PredictionIds(ids_per_refill=4)  # several refills of the single-id pool
    singles = [ids() for _ in range(50)]
    _check_format([*singles, *ids.many(1), *ids.many(3000), new_prediction_id()])
    assert Direct is PredictionIds and ids.many(0) == [] and ids.many(-1) == []


def test_the_leading_48_bits_are_the_unix_time_in_ms() -> None:
    before = time.time_ns() // 1_000_000
    single, batch = PredictionIds()(), PredictionIds().many(5)
    after = time.time_ns() // 1_000_000
    for text in [single, *batch]:
        assert before <= int(text[:12], 16) <= after


def test_ids_are_unique_and_strictly_increasing_in_a_batch_and_across_calls() -> None:
    ids = PredictionIds()
    made: list[str] = []
    for _ in range(20):
        made.append(ids())
        made.extend(ids.many(500))
        made.append(ids())
    assert len(set(made)) == len(made)
    assert all(a < b for a, b in itertools.pairwise(made))


def test_ids_increase_even_when_the_clock_steps_back(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = PredictionIds()
    first = ids.many(10)
    earlier = time.time_ns() - 5_000_000_000  # NTP stepped the clock 5 s back
    monkeypatch.setattr(time, "time_ns", lambda: earlier)
    later = [ids(), *ids.many(10), ids()]
    assert all(a < b for a, b in itertools.pairwise([*first, *later]))


def test_ids_from_many_threads_are_unique_and_each_threads_are_increasing() -> None:
    ids = PredictionIds(ids_per_refill=16)
    out: list[list[str]] = [[] for _ in range(4)]

    def make(into: list[str]) -> None:
        for _ in range(200):
            into.append(ids())
            into.extend(ids.many(7))

    threads = [threading.Thread(target=make, args=(into,)) for into in out]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [text for into in out for text in into]
    assert len(set(every)) == len(every) == 4 * 200 * 8
    for into in out:
        assert into == sorted(into)
