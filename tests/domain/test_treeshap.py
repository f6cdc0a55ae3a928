"""Exact contributions: additivity on random ensembles, brute-force Shapley on small trees."""

from __future__ import annotations

import itertools
from math import factorial

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from crimeflow.domain.treeshap import (
    UnsupportedModelError,
    leaf_table,
    linear_explainer,
)


def _data(
    rows: int, columns: int, seed: int, missing: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Random features with interactions in the label, some values NaN."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, columns))
    y = (X[:, 0] + X[:, 1] * X[:, 2] + 0.5 * rng.normal(size=rows) > 0).astype(int)
    if missing:
        X[rng.random(X.shape) < missing] = np.nan
    return X, y


def _conditional_expectation(nodes: np.ndarray, x: np.ndarray, known: set[int]) -> float:
    """E[tree | x_S] the path-dependent way: follow x on known features, split by cover else."""

    def walk(at: int) -> float:
        node = nodes[at]
        if node["is_leaf"]:
            return float(node["value"])
        left, right = int(node["left"]), int(node["right"])
        feature = int(node["feature_idx"])
        if feature in known:
            value = x[feature]
            go_left = (
                node["missing_go_to_left"] if np.isnan(value) else value <= node["num_threshold"]
            )
            return walk(left if go_left else right)
        total = float(node["count"])
        return (nodes[left]["count"] * walk(left) + nodes[right]["count"] * walk(right)) / total

    return walk(0)


def _brute_force(nodes: np.ndarray, x: np.ndarray, n_features: int) -> np.ndarray:
    """Shapley values by enumerating every coalition (2^n_features games)."""
    phi = np.zeros(n_features)
    players = range(n_features)
    for i in players:
        others = [j for j in players if j != i]
        for size in range(n_features):
            weight = factorial(size) * factorial(n_features - size - 1) / factorial(n_features)
            for subset in itertools.combinations(others, size):
                known = set(subset)
                gain = _conditional_expectation(nodes, x, known | {i})
                phi[i] += weight * (gain - _conditional_expectation(nodes, x, known))
    return phi


@pytest.mark.parametrize("missing", [0.0, 0.1])
def test_hgb_contributions_add_up_to_the_raw_score(missing: float) -> None:
    X, y = _data(2000, 7, seed=1, missing=missing)
    model = HistGradientBoostingClassifier(max_iter=40, max_leaf_nodes=31, random_state=0)
    model.fit(X, y)
    table = leaf_table(model)
    raw = model._raw_predict(X[:40])[:, 0]
    phi = table.shap_values(X[:40])
    assert phi.shape == (40, 7)
    np.testing.assert_allclose(phi.sum(axis=1) + table.base_value, raw, atol=1e-9)
    np.testing.assert_allclose(table.raw_output(X[:40]), raw, atol=1e-9)


def test_forest_contributions_add_up_to_the_probability() -> None:
    X, y = _data(1500, 6, seed=2)
    model = RandomForestClassifier(n_estimators=12, max_depth=7, random_state=0).fit(X, y)
    table = leaf_table(model)
    proba = model.predict_proba(X[:30])[:, 1]
    phi = table.shap_values(X[:30])
    np.testing.assert_allclose(phi.sum(axis=1) + table.base_value, proba, atol=1e-9)
    assert table.scale == "probability"


def test_single_tree_matches_brute_force_shapley() -> None:
    """One deep-ish tree, 5 features, NaN included: equal to enumerating all coalitions."""
    X, y = _data(1500, 5, seed=3, missing=0.1)
    model = HistGradientBoostingClassifier(
        max_iter=1, max_leaf_nodes=16, min_samples_leaf=5, random_state=0
    ).fit(X, y)
    nodes = model._predictors[0][0].nodes
    table = leaf_table(model)
    for x in X[:6]:
        expected = _brute_force(nodes, x, 5)
        np.testing.assert_allclose(table.shap_values(x[None, :])[0], expected, atol=1e-12)


def test_a_feature_never_split_on_gets_nothing() -> None:
    X, y = _data(1000, 4, seed=4)
    X[:, 3] = 0.0  # constant: no tree can split on it
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, y)
    phi = leaf_table(model).shap_values(X[:20])
    assert np.all(phi[:, 3] == 0.0)
    assert np.abs(phi[:, 0]).mean() > 0.1


def test_linear_contributions_are_coef_times_deviation() -> None:
    X, y = _data(800, 3, seed=5)
    model = LogisticRegression().fit(X, y)
    mean = X.mean(axis=0)
    explainer = linear_explainer(model, mean)
    phi = explainer.shap_values(X[:10])
    np.testing.assert_allclose(phi, (X[:10] - mean) * model.coef_[0])
    np.testing.assert_allclose(
        phi.sum(axis=1) + explainer.base_value, model.decision_function(X[:10]), atol=1e-9
    )


def test_wrong_width_and_unsupported_models_are_refused() -> None:
    X, y = _data(500, 3, seed=6)
    table = leaf_table(HistGradientBoostingClassifier(max_iter=5).fit(X, y))
    with pytest.raises(ValueError, match="expected 3 columns"):
        table.shap_values(X[:, :2])
    with pytest.raises(UnsupportedModelError, match="LogisticRegression"):
        leaf_table(LogisticRegression().fit(X, y))
