"""The arrest model: one imblearn Pipeline from a raw incident to a probability, plus its training.

`build_pipeline` assembles canonicalisation -> enrichment (`domain.enrich`) -> category codes ->
distance outliers -> encoding -> mutual-information selection -> scaling -> (fit time only)
SMOTE + undersampling -> classifier. `train_model` fits every candidate (each classifier, plus
the balanced variants: SMOTE + undersampling or class weights) on the older months, picks one by
PR-AUC on the newest training month, calibrates it on that month (balancing distorts
probabilities; time moves the base rate) and stores the decision threshold with the artifact
(`ArrestModel`). Whether balancing helps is thus decided by the data of each training run.

No MLflow here: the flow logs `TrainedModel.estimator` with `SKOPS_TRUSTED_TYPES`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import pandas as pd
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import Pipeline
from imblearn.under_sampling import RandomUnderSampler
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import ThreadpoolController

from crimeflow.contract.schema import LABEL
from crimeflow.domain.enrich import StationIndex
from crimeflow.domain.evaluate import threshold_curve
from crimeflow.domain.features import (
    CROSSES,
    MODEL_INPUT_COLUMNS,
    CanonicalIncidents,
    DistanceOutliers,
    FeatureMatrix,
    IncidentEnricher,
    MutualInfoSelector,
    distance_position,
    encoded_feature_names,
    make_encoder,
)

__all__ = [
    "BALANCE_MODES",
    "CLASSIFIERS",
    "MODEL_INPUT_COLUMNS",
    "SKOPS_TRUSTED_TYPES",
    "ArrestModel",
    "CandidateScore",
    "ModelConfig",
    "TrainedModel",
    "build_pipeline",
    "calibrate",
    "candidate_key",
    "candidate_plan",
    "choose_threshold",
    "fit_calibrator",
    "fit_pipeline",
    "labels_of",
    "pick_candidate",
    "time_split",
    "train_model",
]

ClassifierName = Literal["logistic_regression", "random_forest", "hist_gradient_boosting"]
CLASSIFIERS: tuple[ClassifierName, ...] = (
    "logistic_regression",
    "random_forest",
    "hist_gradient_boosting",
)
# How a candidate treats the rare class while fitting: not at all, SMOTE + random undersampling
# (imblearn samplers, fit time only), or sklearn's `class_weight="balanced"` (no extra rows).
BalanceMode = Literal["none", "smote", "class_weight"]
BALANCE_MODES: tuple[BalanceMode, ...] = ("none", "smote", "class_weight")

# The types in a fitted ArrestModel that skops does not trust by default, reviewed by hand: this
# project's own transformers, imbalanced-learn's pipeline and samplers, and sklearn internals
# that are plain fitted state (trees, a CV splitter). Nothing here executes code on
# load beyond setting attributes. tests/unit/test_model.py checks that every ArrestModel the
# configs can produce needs no other type, and that every entry is needed by some config.
SKOPS_TRUSTED_TYPES: list[str] = [
    # crimeflow
    "crimeflow.domain.model.ArrestModel",
    "crimeflow.domain.features.CanonicalIncidents",
    "crimeflow.domain.features.IncidentEnricher",
    "crimeflow.domain.features.DistanceOutliers",
    "crimeflow.domain.features.FeatureMatrix",
    "crimeflow.domain.features.CodeTargetEncoder",
    "crimeflow.domain.features.CodeOneHotEncoder",
    "crimeflow.domain.features.ColumnEncoders",
    "crimeflow.domain.features.MutualInfoSelector",
    "crimeflow.domain.enrich.StationIndex",
    # imbalanced-learn
    "imblearn.pipeline.Pipeline",
    "imblearn.over_sampling._smote.base.SMOTE",
    "imblearn.under_sampling._prototype_selection._random_under_sampler.RandomUnderSampler",
    # scikit-learn fitted internals
    "sklearn.model_selection._split.StratifiedKFold",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    # numpy
    "numpy.dtype",
]


@dataclass(frozen=True)
class ModelConfig:
    """Everything that shapes the model; the defaults are the measured 2018 choice."""

    classifier: ClassifierName | Literal["auto"] = "auto"
    candidates: tuple[ClassifierName, ...] = CLASSIFIERS
    # True forces SMOTE + undersampling on every candidate (no search); see `balance_mode`.
    balance: bool = False
    # How `build_pipeline` balances when `balance` is off; `train_model` sets it per candidate.
    balance_mode: BalanceMode = "none"
    # Balanced variants searched beside the plain candidates (classifier "auto", balance off),
    # picked like any candidate by validation PR-AUC. HGB with class weights costs one more HGB
    # fit (~1.3x the search); SMOTE is not searched by default: on 2018 it lost 0.02 PR-AUC and
    # both variants took the search to 1.6x (docs/model-and-data.md). Add
    # ("hist_gradient_boosting", "smote") here to search it too.
    balanced_variants: tuple[tuple[ClassifierName, BalanceMode], ...] = (
        ("hist_gradient_boosting", "class_weight"),
    )
    smote_ratio: float = 0.5  # minority/majority after SMOTE
    undersample_ratio: float = 0.8  # minority/majority after undersampling the majority
    smote_k_neighbors: int = 5
    select_k: int | None = 35  # of 59 encoded features; None keeps all (scores still computed)
    mi_max_rows: int = 20_000
    distance_quantiles: tuple[float, float] = (0.0, 0.995)
    seasonal_features: bool = False
    crosses: tuple[tuple[str, str], ...] = CROSSES
    min_category_count: int = 10  # rarer categories share the code of unseen ones
    # Candidates this close to the best validation PR-AUC count as tied (the standard error of
    # PR-AUC on Aug 2018, 25k rows, is 0.005 by bootstrap); the tie goes to the fastest to score
    # one row.
    pr_auc_tolerance: float = 0.002
    # Platt scaling keeps the ranking (isotonic ties cost 0.01 PR-AUC on the 2018 holdout).
    calibration: Literal["sigmoid", "isotonic", "none"] = "sigmoid"
    threshold_metric: Literal["f1", "mcc"] = "f1"
    random_state: int = 42
    n_jobs: int = 2
    # 100 trees of 63 leaves: as good on validation as 300 of 31, and 3x cheaper to score.
    hgb_max_iter: int = 100
    hgb_learning_rate: float = 0.1
    hgb_max_leaf_nodes: int = 63
    hgb_l2_regularization: float = 0.0
    rf_n_estimators: int = 100
    rf_max_depth: int = 16
    rf_min_samples_leaf: int = 5
    logreg_c: float = 1.0

    def __post_init__(self) -> None:
        names = (self.classifier,) if self.classifier != "auto" else self.candidates
        unknown = [n for n in names if n not in CLASSIFIERS]
        if unknown or not names:
            raise ValueError(f"unknown classifier(s) {unknown}; choose from {CLASSIFIERS}")
        if not 0 < self.smote_ratio <= self.undersample_ratio <= 1:
            raise ValueError("need 0 < smote_ratio <= undersample_ratio <= 1")
        modes = [self.balance_mode, *(mode for _, mode in self.balanced_variants)]
        bad = [m for m in modes if m not in BALANCE_MODES]
        bad += [n for n, _ in self.balanced_variants if n not in CLASSIFIERS]
        if bad:
            raise ValueError(f"unknown balance mode or classifier {bad}; modes are {BALANCE_MODES}")

    @property
    def fit_balance(self) -> BalanceMode:
        """The balancing `build_pipeline` applies: `balance` wins over `balance_mode`."""
        return "smote" if self.balance else self.balance_mode


def candidate_key(classifier: str, balance: str) -> str:
    """A candidate's name: the classifier, suffixed with its balance mode when it balances."""
    # "-": MLflow metric names (candidate.<key>.pr_auc) allow it, not "+" or "@".
    return classifier if balance == "none" else f"{classifier}-{balance}"


@dataclass
class CandidateScore:
    """Validation scores and costs of one fitted candidate (uncalibrated)."""

    classifier: str
    pr_auc: float
    roc_auc: float
    fit_seconds: float
    predict_seconds: float  # the whole validation month
    one_row_ms: float  # median latency of one incident, single-threaded
    balance: BalanceMode = "none"

    @property
    def key(self) -> str:
        """The candidate's name, e.g. `hist_gradient_boosting-smote`."""
        return candidate_key(self.classifier, self.balance)


@dataclass
class TrainedModel:
    """The outcome of `train_model`: the serving artifact and how it was chosen."""

    estimator: ArrestModel
    classifier: str
    threshold: float
    threshold_metric: str
    candidates: dict[str, CandidateScore]
    validation: dict[str, float]
    selected_features: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    config: ModelConfig = field(default_factory=ModelConfig)
    balance: BalanceMode = "none"  # the chosen candidate's balance mode


Calibrator = LogisticRegression | IsotonicRegression


class ArrestModel(ClassifierMixin, BaseEstimator):
    """The serving artifact: the fitted pipeline, its calibrator and the decision threshold.

    `predict_proba` takes raw incidents (SODA fields, see `MODEL_INPUT_COLUMNS`) and returns
    calibrated probabilities; `predict` applies `decision_threshold_`, which the API reads after
    loading the model. `prior_` is the training arrest rate.
    """

    def __init__(
        self,
        pipeline: Pipeline | None = None,
        calibrator: Calibrator | None = None,
        decision_threshold: float = 0.5,
        prior: float | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.calibrator = calibrator
        self.decision_threshold = decision_threshold
        self.prior = prior

    def fit(self, X: Any = None, y: Any = None) -> ArrestModel:
        """Adopt the already fitted pipeline and calibrator (nothing is refitted)."""
        check_is_fitted(self.pipeline)
        if self.calibrator is not None:
            check_is_fitted(self.calibrator)
        if not 0.0 <= self.decision_threshold <= 1.0:
            raise ValueError("decision_threshold must lie in [0, 1]")
        self.classes_ = np.array([0, 1])
        self.decision_threshold_ = float(self.decision_threshold)
        # The training arrest rate: the baseline's constant and a reference for monitoring.
        self.prior_ = None if self.prior is None else float(self.prior)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """(n, 2) calibrated probabilities of [no arrest, arrest] for raw-incident rows."""
        check_is_fitted(self, "decision_threshold_")
        # One thread: an API row is scored in a fraction of a millisecond, while waking an
        # OpenMP team on a busy 2-core host costs ~10 ms (and 10k rows ran 13x slower).
        with _threadpools().limit(limits=1):
            raw = self.pipeline.predict_proba(X)[:, 1]
        proba = raw if self.calibrator is None else calibrate(self.calibrator, raw)
        return np.column_stack([1.0 - proba, proba])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """1 where the arrest probability reaches the stored threshold, else 0."""
        return (self.predict_proba(X)[:, 1] >= self.decision_threshold_).astype(np.int64)


def _log_odds(proba: np.ndarray) -> np.ndarray:
    """logit(p) as a column, clipped so that 0 and 1 (forests say both) stay finite."""
    p = np.clip(np.asarray(proba, dtype="float64"), 1e-6, 1 - 1e-6)
    return np.log(p / (1.0 - p)).reshape(-1, 1)


def fit_calibrator(
    proba: np.ndarray, y: np.ndarray, method: Literal["sigmoid", "isotonic"]
) -> Calibrator:
    """Fit a map from the pipeline's probability to a calibrated one (on a later time slice).

    "sigmoid" is Platt scaling (a logistic regression on the log-odds: monotone, so ranking
    metrics are unchanged); "isotonic" is a step function. This is what
    `CalibratedClassifierCV(FrozenEstimator(...))` fits, without its ~0.8 ms per-call
    overhead on a single API row (label encoding, namespace and tag checks).
    """
    if method == "sigmoid":
        return LogisticRegression(C=1e6).fit(_log_odds(proba), y)
    if method == "isotonic":
        return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(proba, y)
    raise ValueError(f"unknown calibration method {method!r}")


def calibrate(calibrator: Calibrator, proba: np.ndarray) -> np.ndarray:
    """Calibrated arrest probabilities for the pipeline's raw ones."""
    if isinstance(calibrator, LogisticRegression):
        return calibrator.predict_proba(_log_odds(proba))[:, 1]
    return np.asarray(calibrator.predict(np.asarray(proba, dtype="float64")), dtype="float64")


@lru_cache(maxsize=1)
def _threadpools() -> ThreadpoolController:
    """The process's native thread pools, inspected once on first prediction."""
    return ThreadpoolController()


def labels_of(frame: pd.DataFrame) -> np.ndarray:
    """The `arrest` label as 0/1 int (rows must have a label)."""
    label = frame[LABEL]
    if label.isna().any():
        raise ValueError("frame has rows without an arrest label; drop them first")
    return label.astype("int64").to_numpy()


def model_input(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns the model reads, in contract order (label and bookkeeping dropped)."""
    return frame.reindex(columns=list(MODEL_INPUT_COLUMNS))


def time_split(
    frame: pd.DataFrame, valid_months: int = 1, holdout_months: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Split by calendar month of `date`: older months, then validation, then holdout (newest).

    Rows without a date or a label are dropped: they cannot be placed in time or scored.
    """
    usable = frame[frame["date"].notna() & frame[LABEL].notna()]
    months = usable["date"].dt.to_period("M")
    distinct = sorted(months.unique())
    if len(distinct) < valid_months + holdout_months + 1:
        raise ValueError(
            f"need at least {valid_months + holdout_months + 1} months, got {len(distinct)}"
        )
    holdout_start = distinct[len(distinct) - holdout_months] if holdout_months else None
    valid_start = distinct[len(distinct) - holdout_months - valid_months]
    train = usable[months < valid_start]
    if holdout_start is None:
        return train, usable[months >= valid_start], usable.iloc[0:0]
    valid = usable[(months >= valid_start) & (months < holdout_start)]
    return train, valid, usable[months >= holdout_start]


def _make_classifier(name: str, config: ModelConfig) -> BaseEstimator:
    """A fresh, untrained classifier sized to train 170k rows in well under a minute."""
    weights = "balanced" if config.fit_balance == "class_weight" else None
    if name == "logistic_regression":
        return LogisticRegression(
            C=config.logreg_c, max_iter=2000, solver="lbfgs", class_weight=weights
        )
    if name == "random_forest":
        return RandomForestClassifier(
            n_estimators=config.rf_n_estimators,
            max_depth=config.rf_max_depth,
            min_samples_leaf=config.rf_min_samples_leaf,
            max_features="sqrt",
            n_jobs=config.n_jobs,
            random_state=config.random_state,
            class_weight=weights,
        )
    if name == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(
            max_iter=config.hgb_max_iter,
            learning_rate=config.hgb_learning_rate,
            max_leaf_nodes=config.hgb_max_leaf_nodes,
            l2_regularization=config.hgb_l2_regularization,
            early_stopping=False,  # a random inner split would decide the size: keep it fixed
            random_state=config.random_state,
            class_weight=weights,
        )
    raise ValueError(f"unknown classifier {name!r}; choose from {CLASSIFIERS}")


def build_pipeline(
    config: ModelConfig, stations: pd.DataFrame | StationIndex | None = None
) -> Pipeline:
    """The unfitted pipeline for `config.classifier` (a concrete name, not "auto").

    `stations` is the police-stations frame (SODA or export headers) or a ready StationIndex;
    None uses the stations packaged with crimeflow.
    """
    if config.classifier == "auto":
        raise ValueError('build_pipeline needs a concrete classifier, not "auto"')
    if isinstance(stations, pd.DataFrame):
        stations = StationIndex.from_frame(stations)
    # SMOTE interpolates between k-NN neighbours, so it needs comparable scales as much as
    # logistic regression does; trees do not care.
    smote = config.fit_balance == "smote"
    scale = config.classifier == "logistic_regression" or smote
    low_q, high_q = config.distance_quantiles
    distance_at = distance_position(seasonal=config.seasonal_features, crosses=config.crosses)
    steps: list[tuple[str, Any]] = [
        ("canonical", CanonicalIncidents()),
        ("enrich", IncidentEnricher(stations)),
        (
            "matrix",
            FeatureMatrix(
                seasonal=config.seasonal_features,
                crosses=config.crosses,
                min_count=config.min_category_count,
            ),
        ),
        ("distance", DistanceOutliers(low_q, high_q, column=distance_at)),
        (
            "encode",
            make_encoder(
                seasonal=config.seasonal_features,
                crosses=config.crosses,
                random_state=config.random_state,
            ),
        ),
        (
            "select",
            MutualInfoSelector(
                k=config.select_k, max_rows=config.mi_max_rows, random_state=config.random_state
            ),
        ),
        ("scale", StandardScaler() if scale else "passthrough"),
    ]
    if smote:
        # Samplers act in fit only (imblearn skips them in predict): no synthetic or dropped
        # row ever reaches validation, calibration or the holdout.
        steps += [
            (
                "oversample",
                SMOTE(
                    sampling_strategy=config.smote_ratio,
                    k_neighbors=config.smote_k_neighbors,
                    random_state=config.random_state,
                ),
            ),
            (
                "undersample",
                RandomUnderSampler(
                    sampling_strategy=config.undersample_ratio, random_state=config.random_state
                ),
            ),
        ]
    steps.append(("classifier", _make_classifier(config.classifier, config)))
    return Pipeline(steps)


def choose_threshold(
    y_true: np.ndarray, proba: np.ndarray, metric: Literal["f1", "mcc"] = "f1"
) -> tuple[float, float]:
    """The probability cut that maximises F1 or MCC on (validation) data, and that score."""
    curve = threshold_curve(y_true, proba)
    if curve.empty:
        raise ValueError("cannot choose a threshold without data")
    best = curve.iloc[int(np.argmax(curve[metric].to_numpy()))]
    return float(best["threshold"]), float(best[metric])


def selected_feature_names(pipeline: Pipeline) -> list[str]:
    """Encoded feature names the selector kept (in encoder order)."""
    names = encoded_feature_names(pipeline.named_steps["encode"], pipeline.named_steps["matrix"])
    keep = pipeline.named_steps["select"].get_support()
    return [name for name, kept in zip(names, keep, strict=True) if kept]


def _serving_ready(pipeline: Pipeline) -> Pipeline:
    """Single-threaded prediction: a thread pool costs more than one API row takes to score."""
    classifier = pipeline.named_steps["classifier"]
    if "n_jobs" in classifier.get_params():
        classifier.set_params(n_jobs=1)
    return pipeline


def pick_candidate(scores: dict[str, CandidateScore], tolerance: float = 0.0) -> str:
    """The candidate (key) with the best PR-AUC; among those within `tolerance` of it, the
    fastest to score one row."""
    if not scores:
        raise ValueError("no candidates to pick from")
    best = max(score.pr_auc for score in scores.values())
    tied = [score for score in scores.values() if score.pr_auc >= best - tolerance]
    return min(tied, key=lambda score: (score.one_row_ms, -score.pr_auc)).key


def candidate_plan(config: ModelConfig) -> list[ModelConfig]:
    """One concrete config per candidate: each classifier (balanced as `config` says), then,
    for "auto" without forced balancing, the balanced variants not already among them."""
    names = config.candidates if config.classifier == "auto" else (config.classifier,)
    plan = [replace(config, classifier=name) for name in names]
    if config.classifier == "auto" and not config.balance:
        plain = {(each.classifier, each.fit_balance) for each in plan}
        plan += [
            replace(config, classifier=name, balance_mode=mode)
            for name, mode in config.balanced_variants
            if (name, mode) not in plain
        ]
    return plan


def _one_row_ms(pipeline: Pipeline, X: pd.DataFrame, repeats: int = 15) -> float:
    """Median single-threaded latency of scoring one incident (after a warm-up)."""
    row = X.iloc[:1]
    times = []
    with _threadpools().limit(limits=1):
        for attempt in range(repeats + 3):
            tick = time.perf_counter()
            pipeline.predict_proba(row)
            if attempt >= 3:
                times.append(time.perf_counter() - tick)
    return 1000.0 * float(np.median(times))


def _fit_limited(pipeline: Pipeline, X: pd.DataFrame, y: np.ndarray, n_jobs: int) -> None:
    """Fit with native thread pools (OpenMP for HGB, BLAS) capped at `n_jobs` threads.

    More threads than free cores make OpenMP spin against itself: HGB fitted 2x slower with two
    threads than with one on a busy 2-core host.
    """
    with _threadpools().limit(limits=n_jobs):
        pipeline.fit(X, y)


def fit_pipeline(
    frame: pd.DataFrame, config: ModelConfig, stations: pd.DataFrame | StationIndex | None = None
) -> Pipeline:
    """Build and fit the pipeline for `config.classifier` on labelled incidents (no selection)."""
    pipeline = build_pipeline(config, stations)
    _fit_limited(pipeline, model_input(frame), labels_of(frame), config.n_jobs)
    return pipeline


def train_model(
    train_df: pd.DataFrame,
    valid_df: pd.DataFrame,
    config: ModelConfig | None = None,
    stations: pd.DataFrame | StationIndex | None = None,
) -> TrainedModel:
    """Fit candidates on `train_df`, pick by PR-AUC on `valid_df` (a later time slice),
    calibrate the winner on `valid_df` and choose its decision threshold there.

    Candidates within `config.pr_auc_tolerance` of the best PR-AUC are a statistical tie; the
    one that scores a single incident fastest wins it (see `pick_candidate`).
    """
    config = config or ModelConfig()
    started = time.perf_counter()
    if isinstance(stations, pd.DataFrame):
        stations = StationIndex.from_frame(stations)
    X_train, y_train = model_input(train_df), labels_of(train_df)
    X_valid, y_valid = model_input(valid_df), labels_of(valid_df)
    if len(np.unique(y_valid)) < 2:
        raise ValueError("validation data needs both arrests and non-arrests")

    scores: dict[str, CandidateScore] = {}
    pipelines: dict[str, Pipeline] = {}
    for candidate in candidate_plan(config):
        name = candidate_key(candidate.classifier, candidate.fit_balance)
        pipeline = build_pipeline(candidate, stations)
        tick = time.perf_counter()
        _fit_limited(pipeline, X_train, y_train, config.n_jobs)
        fit_seconds = time.perf_counter() - tick
        tick = time.perf_counter()
        proba = pipeline.predict_proba(X_valid)[:, 1]
        predict_seconds = time.perf_counter() - tick
        pipelines[name] = _serving_ready(pipeline)
        scores[name] = CandidateScore(
            classifier=candidate.classifier,
            pr_auc=float(average_precision_score(y_valid, proba)),
            roc_auc=float(roc_auc_score(y_valid, proba)),
            fit_seconds=fit_seconds,
            predict_seconds=predict_seconds,
            one_row_ms=_one_row_ms(pipeline, X_valid),
            balance=candidate.fit_balance,
        )
    best_name = pick_candidate(scores, config.pr_auc_tolerance)
    best_pipeline = pipelines[best_name]

    tick = time.perf_counter()
    with _threadpools().limit(limits=config.n_jobs):
        raw_valid = best_pipeline.predict_proba(X_valid)[:, 1]
    calibrator = None
    if config.calibration != "none":
        calibrator = fit_calibrator(raw_valid, y_valid, config.calibration)
    calibrated_proba = raw_valid if calibrator is None else calibrate(calibrator, raw_valid)
    threshold, threshold_score = choose_threshold(
        y_valid, calibrated_proba, config.threshold_metric
    )
    calibrate_seconds = time.perf_counter() - tick
    model = ArrestModel(best_pipeline, calibrator, threshold, prior=float(y_train.mean())).fit()

    validation = {
        "pr_auc": float(average_precision_score(y_valid, calibrated_proba)),
        "roc_auc": float(roc_auc_score(y_valid, calibrated_proba)),
        "mean_predicted": float(calibrated_proba.mean()),
        "positive_rate": float(y_valid.mean()),
        f"{config.threshold_metric}_at_threshold": threshold_score,
    }
    timings = {f"fit_{n}_s": s.fit_seconds for n, s in scores.items()}
    timings["calibrate_s"] = calibrate_seconds
    timings["total_s"] = time.perf_counter() - started
    return TrainedModel(
        estimator=model,
        classifier=scores[best_name].classifier,
        threshold=threshold,
        threshold_metric=config.threshold_metric,
        candidates=scores,
        validation=validation,
        selected_features=selected_feature_names(best_pipeline),
        timings=timings,
        config=config,
        balance=scores[best_name].balance,
    )
