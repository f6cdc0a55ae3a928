"""Flow-test fixtures: one Prefect test harness per session, settings from a temp env."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness

import flows.train
from crimeflow.contract.settings import Settings, get_settings
from crimeflow.domain.model import ModelConfig


@pytest.fixture(scope="session", autouse=True)
def prefect_harness() -> Iterator[None]:
    """A throwaway Prefect API (SQLite) for every flow test in the session."""
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def configure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Settings]]:
    """Point the process-wide settings at a temp CRIMEFLOW_HOME plus the given overrides."""

    def apply(**values: object) -> Settings:
        monkeypatch.setenv("CRIMEFLOW_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("CRIMEFLOW_SOCRATA_BACKOFF_S", "0.01")
        # The gate's latency rule has its own tests (tests/domain/test_gate.py); here the load of
        # a parallel test worker must not decide whether a flow promotes.
        monkeypatch.setenv("CRIMEFLOW_GATE_MAX_P99_MS", "1000")
        for name, value in values.items():
            monkeypatch.setenv(f"CRIMEFLOW_{name.upper()}", str(value))
        get_settings.cache_clear()
        return get_settings()

    yield apply
    get_settings.cache_clear()


@pytest.fixture
def hgb_candidate_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trainings that search candidates try HGB only, the classifier the search picks.

    For tests of what happens around a training (the gate, aliases, the loop): four candidates
    roughly tripled their time, and the search itself is tested in tests/domain/test_model.py
    and on real data in test_train_real.py.
    """
    monkeypatch.setattr(
        flows.train,
        "ModelConfig",
        functools.partial(
            ModelConfig, candidates=("hist_gradient_boosting",), balanced_variants=()
        ),
    )
