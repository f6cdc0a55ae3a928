"""Explanations of the arrest model: readable features, exact additivity, a decisive feature."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from crimeflow.domain.explain import (
    READABLE,
    Explainer,
    UnsupportedModelError,
    global_importance,
    readable_feature,
)
from crimeflow.domain.model import (
    ArrestModel,
    ModelConfig,
    model_input,
    time_split,
    train_model,
)
from crimeflow.standins.generate import generate_incidents

SMALL = ModelConfig(hgb_max_iter=30, rf_n_estimators=10, rf_max_depth=8, n_jobs=1, select_k=None)


@pytest.fixture(scope="module")
def incidents() -> pd.DataFrame:
    """Three generated months: train, validate, explain."""
    return generate_incidents("2024-01", "2024-03", rows_per_month=1200, seed=11)


def _train(frame: pd.DataFrame, classifier: str) -> tuple[ArrestModel, pd.DataFrame]:
    """A small model of `classifier` and the rows of the last month (model input)."""
    train, valid, holdout = time_split(frame, 1, 1)
    config = ModelConfig(**{**SMALL.__dict__, "classifier": classifier})
    with threadpool_limits(1):
        trained = train_model(train, valid, config)
    return trained.estimator, model_input(holdout.head(60))


@pytest.fixture(scope="module")
def hgb(incidents: pd.DataFrame) -> tuple[ArrestModel, pd.DataFrame]:
    """The production classifier, small, and rows to explain."""
    return _train(incidents, "hist_gradient_boosting")


@pytest.mark.parametrize(
    "classifier", ["hist_gradient_boosting", "random_forest", "logistic_regression"]
)
def test_contributions_add_up_to_the_pipeline_score(
    incidents: pd.DataFrame, classifier: str
) -> None:
    model, rows = _train(incidents, classifier)
    explainer = Explainer(model)
    raw = model.pipeline.predict_proba(rows)[:, 1]
    expected = raw if classifier == "random_forest" else np.log(raw / (1.0 - raw))
    table, _ = explainer.contributions(rows)
    np.testing.assert_allclose(table.sum(axis=1) + explainer.base_value, expected, atol=1e-9)
    explanations = explainer.explain(rows, top=3)
    np.testing.assert_allclose([e.raw_score for e in explanations], expected, atol=1e-9)
    assert all(len(e.contributions) == 3 for e in explanations)
    first = [abs(c.contribution) for c in explanations[0].contributions]
    assert first == sorted(first, reverse=True)
    assert explainer.scale.endswith("before calibration")
    assert set(explainer.features) <= set(READABLE.values())


def test_one_deciding_feature_gets_nearly_all_the_contribution(incidents: pd.DataFrame) -> None:
    """Arrest exactly when the incident happened 08:00-19:59: the hour decides, alone."""
    frame = incidents.copy()
    hours = frame["date"].dt.hour
    frame["arrest"] = (hours >= 8) & (hours < 20)
    model, rows = _train(frame, "hist_gradient_boosting")
    table, _ = Explainer(model).contributions(rows)
    share = table["hour"].abs() / table.abs().sum(axis=1)
    assert share.min() > 0.9, share.describe()
    # And the sign follows the rule: daytime pushes towards arrest, night away from it.
    daytime = ((rows["date"].dt.hour >= 8) & (rows["date"].dt.hour < 20)).to_numpy()
    assert np.all(table["hour"].to_numpy()[daytime] > 0)
    assert np.all(table["hour"].to_numpy()[~daytime] < 0)


def test_values_are_what_the_incident_says(hgb: tuple[ArrestModel, pd.DataFrame]) -> None:
    model, rows = hgb
    (explanation,) = Explainer(model).explain(rows.iloc[:1], top=40)
    values = {c.feature: c.value for c in explanation.contributions}
    row = rows.iloc[0]
    assert values.get("crime type", row["primary_type"]) == row["primary_type"]
    assert values.get("hour", row["date"].hour) == row["date"].hour
    distance = values.get("distance to police station")
    assert distance is None or isinstance(distance, float)


def test_global_importance_is_mean_absolute_contribution(
    hgb: tuple[ArrestModel, pd.DataFrame],
) -> None:
    model, rows = hgb
    explainer = Explainer(model)
    importance = global_importance(explainer, rows)
    table, _ = explainer.contributions(rows)
    top = importance.iloc[0]
    assert top["mean_abs_contribution"] == pytest.approx(table[top["feature"]].abs().mean())
    assert importance["share"].sum() == pytest.approx(1.0)
    assert importance["mean_abs_contribution"].is_monotonic_decreasing


def test_encoded_names_map_to_readable_features() -> None:
    assert readable_feature("district=011") == "district"
    assert readable_feature("target__iucr") == "crime code (IUCR)"
    assert readable_feature("log_station_distance_m") == "distance to police station"
    assert readable_feature("hour_cos") == "hour"
    assert readable_feature("target__shoe_size") == "shoe_size"  # new columns keep their name


def test_a_model_without_an_exact_method_is_refused(incidents: pd.DataFrame) -> None:
    model, _ = _train(incidents, "hist_gradient_boosting")
    pipeline = model.pipeline
    pipeline.steps[-1] = ("classifier", object())
    with pytest.raises(UnsupportedModelError, match="no exact contribution method for object"):
        Explainer(model)
