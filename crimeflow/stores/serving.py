"""The serving model: a registry model loaded the way the API serves it, and how it scores.

`load_serving_model` loads `models:/<name>@<alias>`, reads its decision threshold and holdout
metrics and warms it up, so the API's hot reload and the retrain flow's staging of a candidate
load a model the same way. `score_rows` scores canonical incidents in one model call;
`explain_rows` / `explain_columns` give their exact feature contributions
(`crimeflow.domain.explain`), with the explainer built once per loaded model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from crimeflow.contract.incident import (
    CanonicalIncident,
    IncidentColumns,
    columns_frame,
    incidents_frame,
)
from crimeflow.contract.settings import Settings
from crimeflow.domain.explain import Explainer, Explanation, UnsupportedModelError, explain_many
from crimeflow.stores.registry import (
    CHAMPION,
    LoadedModel,
    load_model,
    mlflow_client,
    version_by_alias,
)

HOLDOUT_METRIC_PREFIX = "holdout.model."
DEFAULT_THRESHOLD = 0.5

# Scored once right after loading, before the model is swapped in: the first prediction pays
# for lazy set-up (KD-tree, projection, thread-pool inspection) that no request should wait on.
WARM_UP_ROWS = (
    CanonicalIncident(
        date=datetime(2024, 5, 1, 14, 30),
        iucr="0486",
        primary_type="BATTERY",
        description="DOMESTIC BATTERY SIMPLE",
        location_description="APARTMENT",
        domestic=True,
        beat="0614",
        district="006",
        ward=17,
        community_area=44,
        fbi_code="08B",
        x_coordinate=None,
        y_coordinate=None,
        latitude=41.7512,
        longitude=-87.6321,
        id=None,
        case_number=None,
        block=None,
        year=None,
        updated_on=None,
    ),
)


@dataclass
class ServingModel(LoadedModel):
    """A loaded registry model plus what serving needs: the decision threshold, holdout metrics.

    `experiment_id` (of its training run) is what a link to the run's MLflow page needs.
    """

    threshold: float = DEFAULT_THRESHOLD
    metrics: dict[str, float] = field(default_factory=dict)
    experiment_id: str | None = None
    # Built on first use (or at load): the leaf table of an ensemble takes ~0.1-2 s.
    _explainer: Explainer | UnsupportedModelError | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def explainer(self) -> Explainer:
        """The model's explainer; UnsupportedModelError when it has no exact method."""
        found = self._explainer
        if found is None:
            try:
                found = Explainer(self.model)
            except (UnsupportedModelError, AttributeError, KeyError) as error:
                reason = f"model {self.name} v{self.version} cannot be explained: {error}"
                found = UnsupportedModelError(reason)
            self._explainer = found  # a race builds it twice, harmlessly
        if isinstance(found, UnsupportedModelError):
            raise found
        return found


def score_rows(model: ServingModel, rows: Sequence[CanonicalIncident]) -> np.ndarray:
    """Arrest probabilities of `rows` in one model call (blocking: run it off the event loop)."""
    return _score_frame(model, incidents_frame(rows))


def score_columns(model: ServingModel, columns: IncidentColumns) -> np.ndarray:
    """`score_rows` of validated columns (a batch, without a record per row)."""
    return _score_frame(model, columns_frame(columns))


def explain_rows(
    model: ServingModel, rows: Sequence[CanonicalIncident], top: int
) -> Sequence[Explanation]:
    """The `top` readable contributions of each row (blocking: run it off the event loop)."""
    return explain_many(model.explainer(), incidents_frame(rows), top)


def explain_columns(
    model: ServingModel, columns: IncidentColumns, top: int
) -> Sequence[Explanation]:
    """`explain_rows` of validated columns (a batch)."""
    return explain_many(model.explainer(), columns_frame(columns), top)


def _score_frame(model: ServingModel, frame: pd.DataFrame) -> np.ndarray:
    """Arrest probabilities of a canonical frame, checked: one per row, inside [0, 1]."""
    proba = np.asarray(model.model.predict_proba(frame)[:, 1], dtype="float64")
    if proba.shape != (len(frame),) or not np.all((proba >= 0.0) & (proba <= 1.0)):
        # NaN fails the range test too: a broken artifact must not answer with garbage.
        raise RuntimeError(f"model {model.name} v{model.version} returned invalid probabilities")
    return proba


def training_run_facts(
    settings: Settings, run_id: str | None
) -> tuple[str | None, dict[str, float]]:
    """The run's experiment id and `holdout.model.*` metrics, prefix stripped (None, {} without
    a run)."""
    if run_id is None:
        return None, {}
    run = mlflow_client(settings).get_run(run_id)
    metrics = {
        name.removeprefix(HOLDOUT_METRIC_PREFIX): float(value)
        for name, value in sorted(run.data.metrics.items())
        if name.startswith(HOLDOUT_METRIC_PREFIX)
    }
    return run.info.experiment_id, metrics


def load_serving_model(
    settings: Settings, alias: str = CHAMPION, warm_explainer: bool = False
) -> ServingModel:
    """Load `models:/<name>@<alias>`, read its threshold and holdout metrics, and warm it up."""
    loaded = load_model(settings, alias)
    threshold = float(getattr(loaded.model, "decision_threshold_", DEFAULT_THRESHOLD))
    experiment_id, metrics = training_run_facts(settings, loaded.run_id)
    serving = ServingModel(
        model=loaded.model,
        name=loaded.name,
        version=loaded.version,
        alias=loaded.alias,
        run_id=loaded.run_id,
        loaded_at=loaded.loaded_at,
        threshold=threshold,
        metrics=metrics,
        experiment_id=experiment_id,
    )
    score_rows(serving, WARM_UP_ROWS)
    if warm_explainer:
        # The API builds the explainer now, so that no explain=true request pays for it (the
        # retrain's staging loads never explain and skip it). A model without an exact method
        # still serves; explain=true then answers 501 with the reason.
        with contextlib.suppress(UnsupportedModelError):
            explain_rows(serving, WARM_UP_ROWS, 1)
    return serving


def alias_version(settings: Settings, alias: str = CHAMPION) -> str | None:
    """The version the alias points at now, or None when there is none."""
    found = version_by_alias(mlflow_client(settings), settings.model_name, alias)
    return None if found is None else str(found.version)
