"""The serving model: loaded from the registry as the API serves it, and scored in one call."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import pytest

from crimeflow.contract.settings import Settings
from crimeflow.domain.features import is_canonical
from crimeflow.stores.registry import mlflow_client
from crimeflow.stores.serving import (
    WARM_UP_ROWS,
    ServingModel,
    alias_version,
    load_serving_model,
    score_rows,
)


class FixedModel:
    """A fake model answering `result` (or P = ward / 1000 when None); records its inputs."""

    def __init__(self, result: Any = None) -> None:
        self.result = result
        self.frames: list[pd.DataFrame] = []

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        self.frames.append(frame)
        if self.result is not None:
            return np.asarray(self.result)
        p = frame["ward"].to_numpy(dtype="float64") / 1000.0
        return np.column_stack([1 - p, p])


def serving(model: Any) -> ServingModel:
    """A ServingModel around a fake model."""
    return ServingModel(
        model=model,
        name="chicago-arrest",
        version="1",
        alias="champion",
        run_id=None,
        loaded_at=datetime.now(UTC),
    )


def test_score_rows_feeds_the_model_a_canonical_frame_and_checks_its_answer() -> None:
    model = FixedModel()
    rows = [msgspec.structs.replace(WARM_UP_ROWS[0], ward=w) for w in (1, 20, 42)]
    assert score_rows(serving(model), rows).tolist() == pytest.approx([0.001, 0.02, 0.042])
    (frame,) = model.frames
    assert is_canonical(frame) and len(frame) == 3
    assert serving(model).threshold == 0.5 and serving(model).metrics == {}


@pytest.mark.parametrize(
    "result",
    [[[0.5, 0.5]], [[1.0, 0.0], [0.0, float("nan")]], [[1.0, 0.0], [-0.1, 1.1]]],
    ids=["one-row-short", "nan", "out-of-range"],
)
def test_score_rows_refuses_garbage_from_a_broken_model(result: Any) -> None:
    with pytest.raises(RuntimeError, match="invalid probabilities"):
        score_rows(serving(FixedModel(result)), [WARM_UP_ROWS[0], WARM_UP_ROWS[0]])


# --- the real registry ---------------------------------------------------------------------


def test_load_serving_model_reads_threshold_and_holdout_metrics(
    registry_settings: Settings,
) -> None:
    model = load_serving_model(registry_settings)
    assert (model.name, model.version, model.alias) == ("chicago-arrest", "1", "champion")
    assert model.run_id and model.threshold == model.model.decision_threshold_
    # Its training run's experiment: what a link to the run's MLflow page needs.
    experiment = mlflow_client(registry_settings).get_experiment_by_name("crimeflow")
    assert experiment is not None and model.experiment_id == experiment.experiment_id
    assert set(model.metrics) == {"roc_auc"} and 0.5 < model.metrics["roc_auc"] <= 1.0
    rows = [msgspec.structs.replace(WARM_UP_ROWS[0], ward=w) for w in (1, 20, 42)]
    proba = score_rows(model, rows)
    assert proba.shape == (3,) and np.all((proba > 0) & (proba < 1))
    assert alias_version(registry_settings) == "1"
    assert alias_version(registry_settings, "no-such-alias") is None
