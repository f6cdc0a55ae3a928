"""The arrest-model pipeline: transformers, training, the skops artifact and behavioural tests.

Fast tests train tiny models on generated incidents. Tests marked `real_data` train on the real
2018 Chicago data in ../shared (skipped when it is absent) and check the issue's targets.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.impute import SimpleImputer
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import OneHotEncoder, TargetEncoder

from crimeflow.contract.schema import SODA_COLUMNS, normalize_header, to_canonical
from crimeflow.domain.enrich import StationIndex, add_station_distance
from crimeflow.domain.evaluate import binary_metrics
from crimeflow.domain.features import (
    MISSING_CATEGORY,
    CanonicalIncidents,
    CodeOneHotEncoder,
    CodeTargetEncoder,
    ColumnEncoders,
    DistanceOutliers,
    FeatureMatrix,
    IncidentEnricher,
    MutualInfoSelector,
    report_time_features,
)
from crimeflow.domain.model import (
    CLASSIFIERS,
    MODEL_INPUT_COLUMNS,
    SKOPS_TRUSTED_TYPES,
    ArrestModel,
    CandidateScore,
    ModelConfig,
    TrainedModel,
    build_pipeline,
    calibrate,
    candidate_plan,
    choose_threshold,
    fit_calibrator,
    labels_of,
    model_input,
    pick_candidate,
    time_split,
    train_model,
)
from crimeflow.standins.generate import generate_incidents

REAL_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
CRIMES_2018 = REAL_DATA / "crimes_2018-01_to_2018-10_chicagocrimedata-datastore.csv.gz"
SEPT_2024 = "crimes_2024-09_ntropy86_sanitized.parquet"
CRIMES_2025_API = REAL_DATA / "crimes_2025-10-18_to_2025-11-03_api_jean-carlos-l.csv"

# Small models: the fast tests check behaviour, not accuracy.
TINY = ModelConfig(hgb_max_iter=25, rf_n_estimators=15, rf_max_depth=8, n_jobs=1, select_k=25)


def soda_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows as a SODA JSON page has them: every value a string, ISO dates, None for null."""
    out = pd.DataFrame(index=frame.index)
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_datetime64_any_dtype(values):
            text = values.dt.strftime("%Y-%m-%dT%H:%M:%S.000")
        elif pd.api.types.is_bool_dtype(values):
            text = values.map({True: "true", False: "false"}, na_action="ignore")
        else:
            text = values.astype("string")
        out[column] = text.astype(object).where(values.notna(), None)
    return out


@pytest.fixture(scope="module")
def incidents() -> pd.DataFrame:
    """Four generated months (canonical frame), 1500 incidents each."""
    return generate_incidents("2018-01", "2018-04", rows_per_month=1500, seed=7)


@pytest.fixture(scope="module")
def splits(incidents: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train on Jan-Mar, validate on Apr."""
    train, valid, _ = time_split(incidents, valid_months=1)
    return train, valid


@pytest.fixture(scope="module")
def trained(splits: tuple[pd.DataFrame, pd.DataFrame]) -> TrainedModel:
    """Every candidate compared on the generated data."""
    train, valid = splits
    return train_model(train, valid, TINY)


# --- contract and splits ----------------------------------------------------------------------


def test_model_input_is_the_api_body_without_label_and_bookkeeping() -> None:
    assert "arrest" not in MODEL_INPUT_COLUMNS
    assert "id" not in MODEL_INPUT_COLUMNS and "updated_on" not in MODEL_INPUT_COLUMNS
    assert {"case_number", "block", "date", "iucr", "x_coordinate"} <= set(MODEL_INPUT_COLUMNS)
    assert set(MODEL_INPUT_COLUMNS) < set(SODA_COLUMNS)


def test_time_split_puts_newest_months_last(incidents: pd.DataFrame) -> None:
    train, valid, holdout = time_split(incidents, valid_months=1, holdout_months=1)
    assert train["date"].max() < valid["date"].min()
    assert valid["date"].max() < holdout["date"].min()
    assert set(train["date"].dt.month) == {1, 2}
    assert set(valid["date"].dt.month) == {3} and set(holdout["date"].dt.month) == {4}
    assert len(train) + len(valid) + len(holdout) == len(incidents)


def test_time_split_drops_unlabelled_rows_and_needs_enough_months(
    incidents: pd.DataFrame,
) -> None:
    frame = incidents.copy()
    frame.loc[frame.index[:5], "arrest"] = pd.NA
    train, valid, _ = time_split(frame)
    assert len(train) + len(valid) == len(frame) - 5
    with pytest.raises(ValueError, match="at least 5 months"):
        time_split(incidents, valid_months=2, holdout_months=2)


def test_model_config_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="unknown classifier"):
        ModelConfig(classifier="xgboost")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="smote_ratio"):
        ModelConfig(smote_ratio=0.9, undersample_ratio=0.5)
    with pytest.raises(ValueError, match="concrete classifier"):
        build_pipeline(ModelConfig())
    with pytest.raises(ValueError, match="unknown balance mode"):
        ModelConfig(balance_mode="adasyn")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown balance mode"):
        ModelConfig(balanced_variants=(("hist_gradient_boosting", "oversample"),))  # type: ignore[arg-type]


def test_candidate_plan_adds_balanced_variants_to_the_auto_search_only() -> None:
    def plan(config: ModelConfig) -> list[tuple[str, str]]:
        return [(c.classifier, c.fit_balance) for c in candidate_plan(config)]

    assert plan(ModelConfig()) == [
        ("logistic_regression", "none"),
        ("random_forest", "none"),
        ("hist_gradient_boosting", "none"),
        ("hist_gradient_boosting", "class_weight"),
    ]
    smote = ModelConfig(balanced_variants=(("hist_gradient_boosting", "smote"),))
    assert plan(smote)[-1] == ("hist_gradient_boosting", "smote")
    # A named classifier is fitted as asked; forced balancing applies to every candidate.
    assert plan(ModelConfig(classifier="random_forest")) == [("random_forest", "none")]
    assert plan(ModelConfig(balance=True)) == [(name, "smote") for name in CLASSIFIERS]
    assert plan(ModelConfig(balanced_variants=())) == [(name, "none") for name in CLASSIFIERS]
    # A variant equal to a plain candidate is not fitted twice.
    same = ModelConfig(balance_mode="class_weight", candidates=("hist_gradient_boosting",))
    assert plan(same) == [("hist_gradient_boosting", "class_weight")]


# --- transformers -----------------------------------------------------------------------------


def test_canonical_frames_pass_through_and_raw_strings_are_coerced(
    incidents: pd.DataFrame,
) -> None:
    step = CanonicalIncidents().fit(incidents)
    assert step.transform(incidents) is incidents  # no copy on the serving fast path
    raw = soda_strings(incidents.head(50))
    coerced = step.transform(raw)
    pd.testing.assert_series_equal(coerced["beat"], incidents.head(50)["beat"])
    assert coerced["date"].equals(incidents.head(50)["date"])


def test_enricher_reuses_the_etl_station_distance(incidents: pd.DataFrame) -> None:
    stations = StationIndex.packaged()
    rows = incidents.head(200)
    enriched = IncidentEnricher(stations).fit(rows).transform(rows)
    expected = add_station_distance(rows, stations)
    np.testing.assert_allclose(
        enriched["station_distance_m"], expected["station_distance_m"], equal_nan=True
    )
    assert (enriched["nearest_station_district"] != MISSING_CATEGORY).sum() == expected[
        "nearest_station_district"
    ].notna().sum()
    assert len(enriched) == len(rows) and enriched.index.equals(rows.index)


def test_report_time_flags() -> None:
    dates = pd.Series(
        pd.to_datetime(["2018-03-01 00:00", "2018-03-02 12:00", "2018-03-02 13:37", None])
    )
    flags = report_time_features(dates)
    np.testing.assert_array_equal(flags["time_midnight"][:3], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(flags["time_noon"][:3], [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(flags["time_on_hour"][:3], [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(flags["first_of_month"][:3], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(flags["minute"][:3], [0.0, 0.0, 37.0])
    assert all(np.isnan(values[3]) for values in flags.values())


def test_distance_outliers_clip_to_training_bounds_and_keep_every_row() -> None:
    train = pd.DataFrame({"station_distance_m": [100.0, 200.0, 300.0, 400.0, np.nan]})
    step = DistanceOutliers(lower_quantile=0.0, upper_quantile=1.0).fit(train)
    test = pd.DataFrame({"station_distance_m": [50.0, 250.0, 25_000.0, np.nan]})
    out = step.transform(test)["station_distance_m"].to_numpy()
    assert len(out) == 4
    np.testing.assert_allclose(out[:3], np.log1p([100.0, 250.0, 400.0]))
    assert out[3] == pytest.approx(np.log1p(250.0))  # training median fills gaps
    with pytest.raises(ValueError, match="quantile"):
        DistanceOutliers(lower_quantile=0.5, upper_quantile=0.5).fit(train)


def test_feature_matrix_gives_rare_and_unseen_categories_code_zero(
    incidents: pd.DataFrame,
) -> None:
    enriched = IncidentEnricher().fit(incidents).transform(incidents)
    matrix = FeatureMatrix(min_count=10).fit(enriched)
    column = matrix.categorical_.index("iucr")
    counts = enriched["iucr"].value_counts()
    frequent, rare = counts.index[0], counts.index[counts < 10][0]
    unseen = enriched.head(3).copy()
    unseen["iucr"] = np.array([frequent, rare, "NEVER-SEEN"], dtype=object)
    codes = matrix.transform(unseen)[:, column]
    assert codes[0] > 0 and codes[1] == 0 and codes[2] == 0


def _per_value_codes(matrix: FeatureMatrix, frame: pd.DataFrame) -> np.ndarray:
    """FeatureMatrix.transform as it was before factorizing: one dict lookup per value."""
    categories = matrix._categories(frame)
    out = np.empty((len(frame), len(matrix.categorical_) + len(matrix.numeric_)))
    for j, name in enumerate(matrix.categorical_):
        lookup = matrix.vocabularies_[name].get
        out[:, j] = [lookup(value, 0) for value in categories[name]]
    out[:, len(matrix.categorical_) :] = frame[matrix.numeric_].to_numpy(dtype="float64")
    return out


def test_feature_matrix_factorized_codes_equal_per_value_lookups(
    incidents: pd.DataFrame,
) -> None:
    enriched = IncidentEnricher().fit(incidents).transform(incidents)
    matrix = FeatureMatrix(min_count=10).fit(enriched)
    fitted_state = set(vars(matrix))
    rng = np.random.default_rng(3)
    edge = enriched.sample(300, replace=True, random_state=3).reset_index(drop=True)
    texts = ["NEVER-SEEN", "", MISSING_CATEGORY, "a|b", "|", "Ünïcode", "0", "nan"]
    for name in ("iucr", "primary_type", "location_description", "beat", "domestic"):
        at = rng.choice(len(edge), size=60, replace=False)
        edge.loc[at, name] = rng.choice(texts, size=60)
    # Crossed sides that only differ in where the "|" falls ("a|b" + "c" vs "a" + "b|c").
    edge.loc[0, ["primary_type", "location_description"]] = ["a|b", "c"]
    edge.loc[1, ["primary_type", "location_description"]] = ["a", "b|c"]
    frames = [enriched, edge, enriched.head(64), enriched.head(63), enriched.head(1)]
    for frame in frames:
        fast, slow = matrix.transform(frame), _per_value_codes(matrix, frame)
        assert fast.dtype == slow.dtype and fast.tobytes() == slow.tobytes()  # bit-identical
    # The fitted state (what skops saves) is the vocabularies alone: nothing cached on it.
    assert set(vars(matrix)) == fitted_state
    # A missing value (never produced by IncidentEnricher) gets the per-value answer too.
    holes = edge.copy()
    holes.loc[5, "ward"] = None
    assert matrix.transform(holes).tobytes() == _per_value_codes(matrix, holes).tobytes()


def test_code_target_encoder_transform_equals_sklearn() -> None:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 40, size=(3000, 3)).astype("float64")
    y = (rng.random(3000) < 0.2 + 0.01 * X[:, 0]).astype(int)
    encoder = CodeTargetEncoder(target_type="binary").fit(X, y)
    test = np.vstack([X[:50], [[99.0, 0.0, -1.0], [1.0, 77.0, 3.0]]])  # unseen codes included
    np.testing.assert_allclose(encoder.transform(test), TargetEncoder.transform(encoder, test))


def test_code_one_hot_encoder_transform_equals_sklearn() -> None:
    rng = np.random.default_rng(2)
    X = rng.integers(0, 6, size=(500, 3)).astype("float64")
    encoder = CodeOneHotEncoder().fit(X)
    test = np.vstack([X[:40], [[9.0, 0.0, -1.0]]])  # unseen codes -> all-zero blocks
    expected = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(X).transform(test)
    np.testing.assert_array_equal(encoder.transform(test), expected)


def test_column_encoders_cross_fit_the_target_encoding() -> None:
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 30, size=2000).astype("float64")
    y = (rng.random(2000) < 0.1 + 0.02 * (codes % 10)).astype(int)
    X = np.column_stack([codes % 3, codes, rng.normal(size=2000)])
    X[:5, 2] = np.nan
    encoders = make_encoder_for_test()
    train_encoded = encoders.fit_transform(X, y)
    refit_encoded = encoders.transform(X)
    assert train_encoded.shape == refit_encoded.shape == (2000, 3 + 1 + 1)
    # Cross-fitting: a training row's target encoding never saw its own label.
    assert not np.allclose(train_encoded[:, 3], refit_encoded[:, 3])
    np.testing.assert_array_equal(train_encoded[:, :3], refit_encoded[:, :3])  # one-hot
    assert not np.isnan(refit_encoded).any()  # numbers imputed


def make_encoder_for_test() -> ColumnEncoders:
    """Three blocks like `make_encoder`'s: one-hot, target, imputed numbers."""
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    return ColumnEncoders(
        [
            ("onehot", CodeOneHotEncoder(), [0]),
            ("target", CodeTargetEncoder(target_type="binary", cv=folds), [1]),
            ("numeric", SimpleImputer(strategy="median"), [2]),
        ]
    )


def test_mutual_info_selector_keeps_the_informative_column() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 5000)
    informative = y + rng.normal(0, 0.3, 5000)
    X = np.column_stack([rng.normal(size=5000), informative, rng.integers(0, 2, 5000)])
    selector = MutualInfoSelector(k=1, max_rows=2000, random_state=0).fit(X, y)
    np.testing.assert_array_equal(selector.get_support(), [False, True, False])
    again = MutualInfoSelector(k=1, max_rows=2000, random_state=0).fit(X, y)
    np.testing.assert_array_equal(selector.scores_, again.scores_)  # seeded subsample


# --- training ---------------------------------------------------------------------------------


def test_train_model_picks_the_best_validation_pr_auc(trained: TrainedModel) -> None:
    assert set(trained.candidates) == {*CLASSIFIERS, "hist_gradient_boosting-class_weight"}
    assert trained.candidates["hist_gradient_boosting-class_weight"].balance == "class_weight"
    best = max(trained.candidates.values(), key=lambda s: s.pr_auc)
    assert (trained.classifier, trained.balance) == (best.classifier, best.balance)
    assert all(0.0 <= s.pr_auc <= 1.0 and s.fit_seconds > 0 for s in trained.candidates.values())
    assert len(trained.selected_features) == TINY.select_k


def test_threshold_is_stored_on_the_artifact_and_drives_predict(
    trained: TrainedModel, splits: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    model = trained.estimator
    assert 0.0 < model.decision_threshold_ == trained.threshold < 1.0
    rows = model_input(splits[1])
    proba = model.predict_proba(rows)[:, 1]
    np.testing.assert_array_equal(model.predict(rows), (proba >= trained.threshold).astype(int))
    assert model.prior_ == pytest.approx(labels_of(splits[0]).mean())


def test_calibrated_mean_matches_the_validation_rate(
    trained: TrainedModel, splits: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    valid = splits[1]
    proba = trained.estimator.predict_proba(model_input(valid))[:, 1]
    assert abs(proba.mean() - labels_of(valid).mean()) < 0.02


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_calibrator_undoes_a_balancing_distortion(method: str) -> None:
    rng = np.random.default_rng(5)
    truth = rng.beta(0.5, 2.0, 20_000)  # real arrest probabilities, mean 0.2
    y = (rng.random(20_000) < truth).astype(int)
    inflated = truth**0.5  # what a model trained on balanced classes says: far too high
    calibrator = fit_calibrator(inflated, y, method)  # type: ignore[arg-type]
    fixed = calibrate(calibrator, inflated)
    assert abs(inflated.mean() - y.mean()) > 0.15
    assert abs(fixed.mean() - y.mean()) < 0.005
    assert ((fixed >= 0) & (fixed <= 1)).all()
    if method == "sigmoid":  # monotone: the ranking, hence ROC/PR-AUC, is untouched
        assert (np.diff(fixed[np.argsort(inflated)]) >= 0).all()


def test_choose_threshold_maximises_f1_or_mcc() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    threshold, f1 = choose_threshold(y, p, "f1")
    assert threshold == pytest.approx(0.4) and f1 == pytest.approx(10 / 11)
    threshold, mcc = choose_threshold(y, p, "mcc")
    assert threshold == pytest.approx(0.4) and mcc > 0.6


class _Recorder(ClassifierMixin, BaseEstimator):
    """A classifier that remembers what reached it (rows and class mix) in fit and predict."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> _Recorder:
        self.classes_ = np.array([0, 1])
        self.fit_rows_ = len(y)
        self.fit_positive_share_ = float(np.mean(y))
        self.fit_columns_ = X.shape[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self.predict_rows_ = len(X)
        return np.tile([0.5, 0.5], (len(X), 1))


def test_balancing_resamples_at_fit_only(splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, valid = splits
    config = replace(TINY, classifier="logistic_regression", balance=True)
    config = replace(config, smote_ratio=0.5, undersample_ratio=0.8)
    pipeline = build_pipeline(config).set_params(classifier=_Recorder())
    pipeline.fit(model_input(train), labels_of(train))
    recorder = pipeline.named_steps["classifier"]
    # SMOTE lifts positives to 0.5 x negatives, undersampling cuts negatives to positives / 0.8.
    assert recorder.fit_positive_share_ == pytest.approx(0.8 / 1.8, abs=0.01)
    assert recorder.fit_rows_ != len(train)
    assert recorder.fit_columns_ == TINY.select_k
    assert pipeline.predict_proba(model_input(valid)).shape == (len(valid), 2)
    assert recorder.predict_rows_ == len(valid)  # nothing resampled at predict time


def test_balancing_can_be_switched_off() -> None:
    steps = dict(build_pipeline(replace(TINY, classifier="random_forest")).steps)
    assert "oversample" not in steps and "undersample" not in steps
    assert steps["scale"] == "passthrough"  # trees need no scaling
    balanced = dict(build_pipeline(replace(TINY, classifier="random_forest", balance=True)).steps)
    assert {"oversample", "undersample"} <= set(balanced) and balanced["scale"] != "passthrough"


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_class_weight_mode_weights_the_classifier_and_keeps_the_steps(name: str) -> None:
    plain = build_pipeline(replace(TINY, classifier=name))
    weighted = build_pipeline(replace(TINY, classifier=name, balance_mode="class_weight"))
    # Same step names (the explanations read them), no sampler: only the weights differ.
    assert [n for n, _ in weighted.steps] == [n for n, _ in plain.steps]
    assert weighted.named_steps["classifier"].class_weight == "balanced"
    assert plain.named_steps["classifier"].class_weight is None
    smote = build_pipeline(replace(TINY, classifier=name, balance_mode="smote"))
    assert {"oversample", "undersample"} <= set(smote.named_steps)
    assert smote.named_steps["classifier"].class_weight is None


# --- artifact ---------------------------------------------------------------------------------


ARTIFACT_CONFIGS = {
    "hgb_balanced": replace(TINY, classifier="hist_gradient_boosting", balance=True),
    "hgb_weighted": replace(TINY, classifier="hist_gradient_boosting", balance_mode="class_weight"),
    "rf_isotonic": replace(TINY, classifier="random_forest", calibration="isotonic"),
    "logreg": replace(TINY, classifier="logistic_regression"),
}


@pytest.fixture(scope="module")
def artifacts(splits: tuple[pd.DataFrame, pd.DataFrame]) -> dict[str, ArrestModel]:
    """One small trained artifact per classifier (balancing and both calibrations covered)."""
    return {
        name: train_model(*splits, config).estimator for name, config in ARTIFACT_CONFIGS.items()
    }


@pytest.mark.parametrize("name", sorted(ARTIFACT_CONFIGS))
def test_skops_round_trip_with_the_trusted_list(
    artifacts: dict[str, ArrestModel], splits: tuple[pd.DataFrame, pd.DataFrame], name: str
) -> None:
    model = artifacts[name]
    data = sio.dumps(model)
    untrusted = sio.get_untrusted_types(data=data)
    assert set(untrusted) <= set(SKOPS_TRUSTED_TYPES), set(untrusted) - set(SKOPS_TRUSTED_TYPES)
    loaded = sio.loads(data, trusted=SKOPS_TRUSTED_TYPES)
    rows = model_input(splits[1].head(300))
    np.testing.assert_array_equal(loaded.predict_proba(rows), model.predict_proba(rows))
    assert loaded.decision_threshold_ == model.decision_threshold_


def test_trusted_list_is_minimal(artifacts: dict[str, ArrestModel]) -> None:
    needed: set[str] = set()
    for model in artifacts.values():
        needed |= set(sio.get_untrusted_types(data=sio.dumps(model)))
    assert len(SKOPS_TRUSTED_TYPES) == len(set(SKOPS_TRUSTED_TYPES))
    assert set(SKOPS_TRUSTED_TYPES) == needed  # nothing listed "just in case"


@pytest.mark.slow
def test_skops_artifact_loads_in_a_fresh_process(
    trained: TrainedModel, splits: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    path = tmp_path / "model.skops"
    sio.dump(trained.estimator, path)
    rows = model_input(splits[1].head(20))
    rows.to_pickle(tmp_path / "rows.pkl")
    expected = trained.estimator.predict_proba(rows)[:, 1]
    script = textwrap.dedent(
        f"""
        import pandas as pd, skops.io as sio
        from crimeflow.domain.model import SKOPS_TRUSTED_TYPES
        model = sio.load({str(path)!r}, trusted=SKOPS_TRUSTED_TYPES)
        rows = pd.read_pickle({str(tmp_path / "rows.pkl")!r})
        print(repr(model.decision_threshold_))
        print(",".join(repr(float(p)) for p in model.predict_proba(rows)[:, 1]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    threshold_line, proba_line = done.stdout.strip().splitlines()[-2:]
    assert float(threshold_line) == trained.estimator.decision_threshold_
    np.testing.assert_allclose([float(v) for v in proba_line.split(",")], expected)


# --- behavioural tests on generated data ------------------------------------------------------


def test_invariance_case_number_and_block_do_not_move_the_probability(
    trained: TrainedModel, splits: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    rows = model_input(splits[1].head(200))
    changed = rows.copy()
    changed["case_number"] = pd.array([f"ZZ{i:06d}" for i in range(len(rows))], dtype="string")
    changed["block"] = pd.array(["001XX N FAKE ST"] * len(rows), dtype="string")
    np.testing.assert_array_equal(
        trained.estimator.predict_proba(changed), trained.estimator.predict_proba(rows)
    )


def test_minimum_functionality_unseen_and_missing_values(
    trained: TrainedModel, splits: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    rows = model_input(splits[1].head(8)).copy()
    rows["iucr"] = pd.array(["9999", "0000", None, "X1", "0486", "0820", "1811", "2027"], "string")
    rows.loc[rows.index[0], "location_description"] = "RESIDENCE - PORCH / HALLWAY"  # 2020 name
    rows.loc[rows.index[1], "beat"] = "9999"
    rows.loc[rows.index[1], "district"] = "099"
    rows.loc[rows.index[2], ["x_coordinate", "y_coordinate", "latitude", "longitude"]] = np.nan
    rows.loc[rows.index[3], "domestic"] = pd.NA
    rows.loc[rows.index[4], "ward"] = pd.NA
    rows.loc[rows.index[5], "primary_type"] = "A BRAND NEW OFFENCE"
    proba = trained.estimator.predict_proba(rows)
    assert proba.shape == (8, 2)
    assert np.isfinite(proba).all() and ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_soda_strings_score_like_canonical_rows(
    trained: TrainedModel, splits: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    rows = model_input(splits[1].head(100))
    np.testing.assert_allclose(
        trained.estimator.predict_proba(soda_strings(rows)), trained.estimator.predict_proba(rows)
    )


def test_predict_proba_rejects_non_frames(trained: TrainedModel) -> None:
    with pytest.raises(TypeError, match="DataFrame"):
        trained.estimator.predict_proba(np.zeros((1, len(MODEL_INPUT_COLUMNS))))


# --- real 2018 data: the targets --------------------------------------------------------


@pytest.fixture(scope="module")
def real_2018() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(raw strings with SODA names, canonical frame) of the 2018 file; skips when absent."""
    if not CRIMES_2018.is_file():
        pytest.skip(f"real data not available at {CRIMES_2018}")
    raw = pd.read_csv(CRIMES_2018, dtype=str)
    raw = raw.rename(columns={c: normalize_header(c) for c in raw.columns})
    return raw, to_canonical(raw)


@pytest.fixture(scope="module")
def real_model(real_2018: tuple[pd.DataFrame, pd.DataFrame]) -> TrainedModel:
    """The default model trained on Jan-Jul 2018, calibrated and thresholded on Aug."""
    train, valid, _ = time_split(real_2018[1], valid_months=1, holdout_months=2)
    return train_model(train, valid, ModelConfig(classifier="hist_gradient_boosting"))


@pytest.mark.real_data
@pytest.mark.slow
def test_real_2018_holdout_meets_the_targets(
    real_2018: tuple[pd.DataFrame, pd.DataFrame], real_model: TrainedModel
) -> None:
    raw, canonical = real_2018
    _, _, holdout = time_split(canonical, valid_months=1, holdout_months=2)
    assert set(holdout["date"].dt.month) == {9, 10}
    # Scored as a SODA client sends them: strings, no label, no bookkeeping fields.
    client_rows = raw.loc[holdout.index].reindex(columns=list(MODEL_INPUT_COLUMNS))
    proba = real_model.estimator.predict_proba(client_rows)[:, 1]
    metrics = binary_metrics(labels_of(holdout), proba, real_model.threshold)
    assert metrics["roc_auc"] >= 0.90
    assert metrics["pr_auc"] >= 0.78
    assert abs(metrics["calibration_gap"]) <= 0.02
    assert metrics["mcc"] > 0.55  # the stored threshold is a sensible cut, not 0 or 1


@pytest.mark.real_data
@pytest.mark.slow
def test_real_direction_narcotics_scores_above_theft(
    real_2018: tuple[pd.DataFrame, pd.DataFrame], real_model: TrainedModel
) -> None:
    _, canonical = real_2018
    _, _, holdout = time_split(canonical, valid_months=1, holdout_months=2)
    places = model_input(holdout.sample(300, random_state=3))
    narcotics = places.assign(
        iucr="2027", primary_type="NARCOTICS", description="POSS: CRACK", fbi_code="18"
    )
    theft = places.assign(
        iucr="0820", primary_type="THEFT", description="$500 AND UNDER", fbi_code="06"
    )
    for frame in (narcotics, theft):
        for column in ("iucr", "primary_type", "description", "fbi_code"):
            frame[column] = frame[column].astype("string")
    p_narcotics = real_model.estimator.predict_proba(narcotics)[:, 1]
    p_theft = real_model.estimator.predict_proba(theft)[:, 1]
    assert (p_narcotics > p_theft).all()


@pytest.mark.real_data
@pytest.mark.slow
def test_real_minimum_functionality_on_2025_api_rows(real_model: TrainedModel) -> None:
    if not CRIMES_2025_API.is_file():
        pytest.skip(f"real data not available at {CRIMES_2025_API}")
    # Seven years later: renamed location descriptions, new codes, rows without coordinates.
    raw = pd.read_csv(CRIMES_2025_API, dtype=str)
    rows = raw.reindex(columns=list(MODEL_INPUT_COLUMNS))
    proba = real_model.estimator.predict_proba(rows)
    assert proba.shape == (len(raw), 2)
    assert np.isfinite(proba).all() and ((proba >= 0) & (proba <= 1)).all()
    assert rows["x_coordinate"].isna().any()  # the file really has rows without a position


def test_pick_candidate_breaks_near_ties_by_latency() -> None:
    def score(name: str, pr_auc: float, one_row_ms: float) -> CandidateScore:
        return CandidateScore(name, pr_auc, 0.9, 1.0, 1.0, one_row_ms)

    scores = {
        "random_forest": score("random_forest", 0.7874, 9.0),
        "hist_gradient_boosting": score("hist_gradient_boosting", 0.7871, 1.0),
        "logistic_regression": score("logistic_regression", 0.7695, 0.5),
    }
    assert pick_candidate(scores, tolerance=0.0) == "random_forest"
    assert pick_candidate(scores, tolerance=0.002) == "hist_gradient_boosting"
    assert pick_candidate(scores, tolerance=0.1) == "logistic_regression"
    # A balanced variant is one more candidate, named by its key.
    scores["hist_gradient_boosting-smote"] = CandidateScore(
        "hist_gradient_boosting", 0.7900, 0.9, 1.0, 1.0, 1.0, balance="smote"
    )
    assert pick_candidate(scores, tolerance=0.0) == "hist_gradient_boosting-smote"


@pytest.mark.real_data
@pytest.mark.slow
def test_real_2024_traffic_drifts_from_the_2018_model_reference_and_2018_does_not(
    real_2018: tuple[pd.DataFrame, pd.DataFrame], real_model: TrainedModel
) -> None:
    """The drift issue's real-data check, with the model trained on 2018 data scoring both."""
    from crimeflow.stores.files import read_incidents_file
    from monitoring.drift import DriftConfig, compute_drift

    _, canonical = real_2018
    train_period = canonical[canonical["date"] < "2018-09-01"]
    shuffled = train_period.sample(frac=1.0, random_state=3)
    reference, held_out = shuffled.iloc[:20_000], shuffled.iloc[20_000:27_000]
    september_2024 = read_incidents_file(CRIMES_2018.with_name(SEPT_2024)).drop(columns=["arrest"])

    def scored(frame: pd.DataFrame, column: str) -> pd.DataFrame:
        proba = real_model.estimator.predict_proba(frame)[:, 1]
        return frame.assign(**{column: proba})

    reference = scored(reference, "arrest_probability")
    verdicts = {
        name: compute_drift(reference, scored(current, "probability"), DriftConfig())[0]
        for name, current in (
            ("2018", held_out.drop(columns=["arrest"])),
            ("2024", september_2024),
        )
    }
    assert verdicts["2018"].drift_detected is False
    assert verdicts["2024"].drift_detected is True
