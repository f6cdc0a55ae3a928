"""Exact Shapley contributions of tree ensembles and linear models, in numpy (no `shap`).

Trees: path-dependent TreeSHAP (Lundberg et al. 2018, "Consistent individualized feature
attribution for tree ensembles"): the value of a coalition S is the tree's expected output when
the features in S follow the row and the others split by training cover. Algorithm 2 of the
paper walks the tree per row; here the same numbers come leaf by leaf, vectorised over all the
leaves of the ensemble. For one leaf with value v and the distinct features F on its path
(d = |F|), let z_j be the share of training cover that follows the path's branches on feature j
and o_j = 1 when the row takes those branches (else 0). The coalition value is
v * prod_{j in S} o_j * prod_{j in F \\ S} z_j, so feature i in F receives

    v * (o_i - z_i) * sum_k w(k, d) * [t^k] prod_{j in F, j != i} (z_j + o_j t),

with the Shapley weight w(k, d) = k! (d - k - 1)! / d!. Repeated splits on one feature merge
into one interval (that is what Algorithm 2's "unwind" does). Summed over leaves this is exact:
contributions + base value = the ensemble's raw output (float rounding aside), tested against
sklearn's own predictions and against brute-force Shapley values on small trees.

Linear models: the exact Shapley values of a linear score with independent features,
coef_j * (x_j - mean_j), about the training mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from math import comb
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

__all__ = [
    "LeafTable",
    "LinearExplainer",
    "UnsupportedModelError",
    "leaf_table",
    "linear_explainer",
]

# Rows per vectorised chunk: the work arrays are rows x leaves x (depth + 1) floats (16 MB).
_CHUNK_FLOATS = 2_000_000


class UnsupportedModelError(TypeError):
    """The classifier has no exact contribution method here."""


@dataclass(frozen=True)
class LeafTable:
    """Every leaf of a tree ensemble with its path conditions, padded to `depth` features.

    A row satisfies a leaf's condition on feature j when lower < x <= upper (or, for NaN,
    when `nan_ok`). Padding slots have `active` False and z = 1, o = 0: a factor of 1.
    """

    feature: np.ndarray  # (L, D) int
    lower: np.ndarray  # (L, D)
    upper: np.ndarray  # (L, D)
    nan_ok: np.ndarray  # (L, D) bool
    zero_fraction: np.ndarray  # (L, D) z
    active: np.ndarray  # (L, D) bool
    value: np.ndarray  # (L,) leaf value, already divided by the trees averaged over
    n_unique: np.ndarray  # (L,) d
    base_value: float  # expected raw output under the training cover
    offset: float  # the raw output's constant (HGB's baseline log-odds), part of base_value
    n_features: int
    float32_input: bool  # sklearn's DecisionTree compares float32 copies of the input
    method: str
    scale: str

    def shap_values(self, X: np.ndarray) -> np.ndarray:
        """(n, n_features) contributions; each row sums with `base_value` to the raw output."""
        X = np.asarray(X, dtype="float64")
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} columns, got shape {X.shape}")
        if self.float32_input:
            X = X.astype("float32").astype("float64")
        leaves, depth = self.feature.shape
        step = max(1, _CHUNK_FLOATS // max(1, leaves * (depth + 1)))
        parts = [self._chunk(X[start : start + step]) for start in range(0, len(X), step)]
        return np.vstack(parts) if parts else np.zeros((0, self.n_features))

    def raw_output(self, X: np.ndarray) -> np.ndarray:
        """The ensemble's raw output recomputed from the leaves (for checks)."""
        X = np.asarray(X, dtype="float64")
        if self.float32_input:
            X = X.astype("float32").astype("float64")
        o = self._satisfied(X)
        reached = np.all(o | ~self.active, axis=2)
        return self.offset + reached.astype("float64") @ self.value

    def _satisfied(self, X: np.ndarray) -> np.ndarray:
        """(n, L, D) whether each row takes each leaf's branches on each path feature."""
        xv = X[:, self.feature]
        inside = (xv > self.lower) & (xv <= self.upper)
        return np.where(np.isnan(xv), self.nan_ok, inside) & self.active

    def _chunk(self, X: np.ndarray) -> np.ndarray:
        """`shap_values` of a few rows at once, bucket by bucket of path lengths."""
        n = len(X)
        totals = np.zeros(self.n_features * n)
        rows = np.arange(n)
        for bucket in self._buckets:
            per_slot = bucket.values(X)  # (depth, L_b, n)
            flat = (bucket.feature.T[..., None] * n + rows).ravel()
            totals += np.bincount(flat, weights=per_slot.ravel(), minlength=self.n_features * n)
        return totals.reshape(self.n_features, n).T

    @cached_property
    def _buckets(self) -> list[_Bucket]:
        """Leaves grouped by path length (a few groups): short paths skip the long ones' work."""
        edges = (0, 4, 7, 10, 13)
        weights = _shapley_weights(self.feature.shape[1])
        buckets = []
        for low, high in zip(edges, (*edges[1:], np.inf), strict=True):
            leaves = np.flatnonzero((self.n_unique > low) & (self.n_unique <= high))
            if leaves.size:
                depth = int(self.n_unique[leaves].max())
                buckets.append(
                    _Bucket(
                        feature=self.feature[leaves, :depth],
                        lower=self.lower[leaves, :depth],
                        upper=self.upper[leaves, :depth],
                        nan_ok=self.nan_ok[leaves, :depth],
                        zero_fraction=self.zero_fraction[leaves, :depth],
                        active=self.active[leaves, :depth],
                        weights=weights[self.n_unique[leaves], :depth],
                        value=self.value[leaves],
                    )
                )
        return buckets


@dataclass(frozen=True)
class _Bucket:
    """The leaves of one path-length group, cut to that group's longest path (`depth`)."""

    feature: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    nan_ok: np.ndarray
    zero_fraction: np.ndarray
    active: np.ndarray
    weights: np.ndarray  # (L_b, depth): w(k, d) of each leaf's own d
    value: np.ndarray

    def values(self, X: np.ndarray) -> np.ndarray:
        """(depth, L_b, n) the contribution of each leaf's path slot to its feature.

        Slot-major layout (slot or coefficient, leaf, row): every step below works on whole
        contiguous blocks, several times faster than slicing a trailing coefficient axis.
        """
        feature = self.feature.T  # (D, L)
        xv = np.ascontiguousarray(X.T)[feature]  # (D, L, n)
        inside = (xv > self.lower.T[..., None]) & (xv <= self.upper.T[..., None])
        o = np.where(np.isnan(xv), self.nan_ok.T[..., None], inside) & self.active.T[..., None]
        o = o.astype("float64")
        z = self.zero_fraction.T[..., None]  # (D, L, 1)
        weights = self.weights.T  # (D, L): w(k, d) of each leaf's own d
        depth = feature.shape[0]
        # prod_j (z_j + o_j t): coefficients of t^0..t^depth, one multiplication per slot.
        poly = np.zeros((depth + 1, *o.shape[1:]))
        poly[0] = 1.0
        for j in range(depth):
            top = poly[:-1] * o[j]
            poly *= z[j]
            poly[1:] += top
        # Divide out each slot's own factor and weight the quotient's coefficients: by z_i
        # where o_i = 0 (then the top coefficient is 0); by (t + z_i) where o_i = 1, by
        # synthetic division from the top degree (stable: 0 < z_i <= 1), summing as it goes.
        weighted = np.einsum("kln,kl->ln", poly[:depth], weights)
        summed_zero = weighted[None] / np.maximum(z, 1e-300)
        carry = np.zeros(o.shape)
        summed_one = np.zeros(o.shape)
        for k in range(depth, 0, -1):
            carry = poly[k][None] - z * carry
            summed_one += carry * weights[k - 1][None, :, None]
        summed = np.where(o > 0, summed_one, summed_zero)
        return self.value[None, :, None] * (o - z) * summed * self.active.T[..., None]


@lru_cache(maxsize=8)
def _shapley_weights(depth: int) -> np.ndarray:
    """(depth + 1, depth): row d holds w(k, d) = k! (d - k - 1)! / d! for k < d, else 0."""
    table = np.zeros((depth + 1, max(depth, 1)))
    for d in range(1, depth + 1):
        for k in range(d):
            table[d, k] = 1.0 / (d * comb(d - 1, k))
    return table


@dataclass
class _Paths:
    """Leaves collected while walking trees: per leaf, {feature: [lower, upper, nan_ok, z]}."""

    conditions: list[dict[int, list[Any]]]
    values: list[float]


def _walk(tree: _TreeView, scale: float, out: _Paths) -> None:
    """Collect the tree's leaves with the conditions of the path to each."""
    stack: list[tuple[int, dict[int, list[Any]]]] = [(0, {})]
    while stack:
        at, conditions = stack.pop()
        if tree.is_leaf(at):
            out.conditions.append(conditions)
            out.values.append(tree.value(at) * scale)
            continue
        feature, threshold, nan_left = tree.split(at)
        for child, goes_left in ((tree.left(at), True), (tree.right(at), False)):
            lower, upper, nan_ok, z = conditions.get(feature, [-np.inf, np.inf, True, 1.0])
            if goes_left:
                upper = min(upper, threshold)
            else:
                lower = max(lower, threshold)
            nan_ok = nan_ok and (nan_left == goes_left)
            z = z * tree.cover(child) / tree.cover(at)
            stack.append((child, {**conditions, feature: [lower, upper, nan_ok, z]}))


class _TreeView:
    """One fitted tree behind a common interface (sklearn Tree or HGB TreePredictor)."""

    def __init__(self, nodes: Any, kind: str, positive: int = 1) -> None:
        self.nodes = nodes
        self.kind = kind
        self.positive = positive

    def is_leaf(self, at: int) -> bool:
        """Whether node `at` is a leaf."""
        if self.kind == "hgb":
            return bool(self.nodes["is_leaf"][at])
        return bool(self.nodes.children_left[at] == -1)

    def split(self, at: int) -> tuple[int, float, bool]:
        """(feature, threshold, whether NaN goes left) of an inner node."""
        if self.kind == "hgb":
            row = self.nodes[at]
            if row["is_categorical"]:
                raise UnsupportedModelError("HGB categorical splits are not supported")
            return (
                int(row["feature_idx"]),
                float(row["num_threshold"]),
                bool(row["missing_go_to_left"]),
            )
        missing = getattr(self.nodes, "missing_go_to_left", None)
        nan_left = bool(missing[at]) if missing is not None else False
        return int(self.nodes.feature[at]), float(self.nodes.threshold[at]), nan_left

    def left(self, at: int) -> int:
        """Left child (x <= threshold)."""
        if self.kind == "hgb":
            return int(self.nodes["left"][at])
        return int(self.nodes.children_left[at])

    def right(self, at: int) -> int:
        """Right child."""
        if self.kind == "hgb":
            return int(self.nodes["right"][at])
        return int(self.nodes.children_right[at])

    def cover(self, at: int) -> float:
        """Training samples (weighted for sklearn trees) that reached node `at`."""
        if self.kind == "hgb":
            return float(self.nodes["count"][at])
        return float(self.nodes.weighted_n_node_samples[at])

    def value(self, at: int) -> float:
        """The leaf's output: HGB's shrunk raw value, or a tree's positive-class share."""
        if self.kind == "hgb":
            return float(self.nodes["value"][at])
        counts = self.nodes.value[at, 0]
        return float(counts[self.positive] / counts.sum())


def _trees_of(model: Any) -> tuple[list[_TreeView], float, float, bool, str, str]:
    """(trees, value scale, raw baseline, float32 input, method, scale) of a fitted ensemble."""
    if isinstance(model, HistGradientBoostingClassifier):
        if len(model.classes_) != 2:
            raise UnsupportedModelError("only binary HistGradientBoosting is supported")
        trees = [_TreeView(predictors[0].nodes, "hgb") for predictors in model._predictors]
        baseline = float(np.ravel(model._baseline_prediction)[0])
        return trees, 1.0, baseline, False, "path-dependent TreeSHAP", "log-odds"
    if isinstance(model, RandomForestClassifier):
        positive = int(np.flatnonzero(model.classes_ == 1)[0])
        trees = [_TreeView(tree.tree_, "tree", positive) for tree in model.estimators_]
        scale = 1.0 / len(trees)
        return trees, scale, 0.0, True, "path-dependent TreeSHAP", "probability"
    raise UnsupportedModelError(f"no TreeSHAP for {type(model).__name__}")


def leaf_table(model: Any) -> LeafTable:
    """The leaf table of a fitted HistGradientBoosting or RandomForest binary classifier."""
    trees, scale, baseline, float32_input, method, unit = _trees_of(model)
    paths = _Paths([], [])
    for tree in trees:
        _walk(tree, scale, paths)
    depth = max((len(c) for c in paths.conditions), default=0) or 1
    leaves = len(paths.values)
    feature = np.zeros((leaves, depth), dtype=np.intp)
    lower = np.full((leaves, depth), -np.inf)
    upper = np.full((leaves, depth), np.inf)
    nan_ok = np.zeros((leaves, depth), dtype=bool)
    zero_fraction = np.ones((leaves, depth))
    active = np.zeros((leaves, depth), dtype=bool)
    for leaf, conditions in enumerate(paths.conditions):
        for slot, (j, (low, high, nan, z)) in enumerate(sorted(conditions.items())):
            feature[leaf, slot], lower[leaf, slot], upper[leaf, slot] = j, low, high
            nan_ok[leaf, slot], zero_fraction[leaf, slot], active[leaf, slot] = nan, z, True
    value = np.asarray(paths.values, dtype="float64")
    expected = float(value @ np.prod(zero_fraction, axis=1))
    return LeafTable(
        feature=feature,
        lower=lower,
        upper=upper,
        nan_ok=nan_ok,
        zero_fraction=zero_fraction,
        active=active,
        value=value,
        n_unique=active.sum(axis=1),
        base_value=baseline + expected,
        offset=baseline,
        n_features=int(model.n_features_in_),
        float32_input=float32_input,
        method=method,
        scale=unit,
    )


@dataclass(frozen=True)
class LinearExplainer:
    """Exact Shapley values of a linear score about a reference point (the training mean)."""

    coef: np.ndarray
    mean: np.ndarray
    base_value: float
    method: str = "linear (coefficient x deviation from the training mean)"
    scale: str = "log-odds"

    @property
    def n_features(self) -> int:
        """Number of input columns."""
        return int(self.coef.size)

    def shap_values(self, X: np.ndarray) -> np.ndarray:
        """(n, n_features) coef_j * (x_j - mean_j)."""
        X = np.asarray(X, dtype="float64")
        if X.ndim != 2 or X.shape[1] != self.coef.size:
            raise ValueError(f"expected {self.coef.size} columns, got shape {X.shape}")
        return (X - self.mean) * self.coef


def linear_explainer(model: LogisticRegression, mean: np.ndarray) -> LinearExplainer:
    """The explainer of a fitted binary LogisticRegression about the input mean `mean`."""
    if model.coef_.shape[0] != 1:
        raise UnsupportedModelError("only binary LogisticRegression is supported")
    coef = np.asarray(model.coef_[0], dtype="float64")
    mean = np.asarray(mean, dtype="float64")
    if mean.shape != coef.shape:
        raise ValueError(f"mean has shape {mean.shape}, coefficients {coef.shape}")
    return LinearExplainer(coef, mean, float(model.intercept_[0] + coef @ mean))
