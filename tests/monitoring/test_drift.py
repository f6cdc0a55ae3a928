"""The drift monitor core: sampling, method choice, Evidently verdicts, knobs, real data."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pytest

from crimeflow.standins.generate import Drift, arrest_probability, generate_incidents
from monitoring.drift import (
    CATEGORICAL_COLUMNS,
    MISSING,
    MONITORED_COLUMNS,
    OTHER,
    ColumnDrift,
    DriftConfig,
    DriftResult,
    compute_drift,
    exceeds,
    js_chance_floor,
    monitored_frame,
    pool_rare_levels,
    regime,
    sample_by_day,
    unseen_share,
)

CONFIG = DriftConfig()
WINDOW = (datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 8, tzinfo=UTC))
P_VALUE_METHODS = {"chisquare", "ks"}
DISTANCE_METHODS = {"jensenshannon", "wasserstein"}


def reference_sample(rows: int = 6000, seed: int = 11) -> pd.DataFrame:
    """A reference as training logs it: a year of incidents plus the model's probability."""
    frame = generate_incidents("2024-01", "2024-12", rows_per_month=rows // 12, seed=seed)
    return frame.assign(arrest_probability=arrest_probability(frame))


def prediction_log(
    rows: int, seed: int, drift: str | None = None, labelled_share: float = 0.0
) -> pd.DataFrame:
    """Served traffic as the prediction log returns it (inputs, score, feedback for a share)."""
    knobs = Drift.parse(drift) if drift else None
    frame = generate_incidents("2025-03", "2025-03", rows_per_month=rows, seed=seed, drift=knobs)
    probability = arrest_probability(frame)
    feedback = frame["arrest"].astype("boolean").copy()
    unlabelled = np.random.default_rng(seed).random(len(frame)) >= labelled_share
    feedback[unlabelled] = pd.NA
    return frame.drop(columns=["arrest"]).assign(
        prediction_id=[f"p{i}" for i in range(len(frame))],
        served_at=frame["date"].dt.tz_localize("UTC"),
        model_name="chicago-arrest",
        model_version="3",
        probability=probability,
        label=probability >= 0.5,
        feedback_arrest=feedback,
    )


def run(reference: pd.DataFrame, current: pd.DataFrame, **config: object) -> tuple:
    """compute_drift with the default config (overridable) and a fixed window."""
    return compute_drift(
        reference,
        current,
        DriftConfig(**config),  # type: ignore[arg-type]
        window_start=WINDOW[0],
        window_end=WINDOW[1],
        model_version="3",
    )


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return reference_sample()


@pytest.fixture(scope="module")
def narcotics_small(reference: pd.DataFrame) -> tuple:
    return run(reference, prediction_log(600, 21, "type_mix=NARCOTICS:4"))


@pytest.fixture(scope="module")
def narcotics_large(reference: pd.DataFrame) -> tuple:
    return run(reference, prediction_log(3000, 22, "type_mix=NARCOTICS:4", labelled_share=0.4))


@pytest.fixture(scope="module")
def fresh_small(reference: pd.DataFrame) -> tuple:
    return run(reference, prediction_log(600, 23))


@pytest.fixture(scope="module")
def fresh_large(reference: pd.DataFrame) -> tuple:
    return run(reference, prediction_log(3000, 24, labelled_share=0.4))


# --- pure pieces -------------------------------------------------------------------------------


def _days_frame(rows_per_day: list[int]) -> pd.DataFrame:
    """A frame whose `served_at` spreads `rows_per_day[i]` rows over day i (UTC)."""
    stamps = [
        pd.Timestamp("2025-03-01", tz="UTC") + pd.Timedelta(days=day, minutes=minute)
        for day, count in enumerate(rows_per_day)
        for minute in range(count)
    ]
    return pd.DataFrame({"served_at": stamps, "n": range(len(stamps))})


def test_sample_by_day_keeps_each_days_share_and_exact_size() -> None:
    frame = _days_frame([1000, 300, 50, 650])
    sample = sample_by_day(frame, 500, seed=3, time_column="served_at")
    assert len(sample) == 500
    per_day = sample["served_at"].dt.day.value_counts().sort_index().tolist()
    expected = [250, 75, 12.5, 162.5]
    assert all(abs(got - want) <= 1 for got, want in zip(per_day, expected, strict=True))
    # Order of the input is kept and no row is repeated.
    assert sample["n"].is_monotonic_increasing and sample["n"].is_unique


def test_sample_by_day_is_seeded() -> None:
    frame = _days_frame([400, 400, 400])
    first = sample_by_day(frame, 300, seed=1, time_column="served_at")["n"].tolist()
    again = sample_by_day(frame, 300, seed=1, time_column="served_at")["n"].tolist()
    other = sample_by_day(frame, 300, seed=2, time_column="served_at")["n"].tolist()
    assert first == again
    assert first != other


def test_sample_by_day_small_frame_and_missing_times() -> None:
    frame = _days_frame([10, 10])
    assert sample_by_day(frame, 100, seed=0, time_column="served_at") is frame
    frame.loc[:9, "served_at"] = pd.NaT
    sample = sample_by_day(frame, 10, seed=0, time_column="served_at")
    # Rows without a time are a stratum of their own: half the rows, half the sample.
    assert sample["served_at"].isna().sum() == 5
    # A frame without the time column is sampled as one stratum.
    assert len(sample_by_day(frame.drop(columns="served_at"), 7, 0, "served_at")) == 7


def test_exceeds_reads_p_values_and_distances_in_opposite_directions() -> None:
    assert exceeds(0.001, 0.01, "p_value") and not exceeds(0.2, 0.01, "p_value")
    assert exceeds(0.2, 0.1, "distance") and not exceeds(0.05, 0.1, "distance")
    assert exceeds(0.1, 0.1, "distance")
    assert not exceeds(None, 0.1, "distance") and not exceeds(float("nan"), 0.01, "p_value")


def test_regime_is_decided_by_the_smaller_side() -> None:
    assert regime(20_000, 300, CONFIG) == "p_value"
    assert regime(800, 50_000, CONFIG) == "p_value"
    assert regime(1_001, 5_000, CONFIG) == "distance"


def test_js_chance_floor_matches_simulated_same_distribution_samples() -> None:
    from scipy.spatial import distance

    rng = np.random.default_rng(0)
    shares = rng.dirichlet(np.ones(40))
    n_ref, n_cur, alpha = 20_000, 1_500, 0.05
    floor = js_chance_floor(40, n_ref, n_cur, alpha)
    draws = [
        distance.jensenshannon(rng.multinomial(n_ref, shares), rng.multinomial(n_cur, shares))
        for _ in range(1000)
    ]
    exceeded = float(np.mean(np.asarray(draws) >= floor))
    assert 0.01 <= exceeded <= 0.10
    # More levels or fewer rows raise the floor; a single level has none.
    assert (
        js_chance_floor(200, n_ref, n_cur, alpha)
        > floor
        > js_chance_floor(40, n_ref, 10_000, alpha)
    )
    assert js_chance_floor(1, n_ref, n_cur, alpha) == 0.0


def test_monitored_frame_derives_typed_columns() -> None:
    frame = pd.DataFrame(
        {
            "date": pd.to_datetime(["2025-03-01 13:45", "2025-03-01 02:00"]),
            "primary_type": pd.array(["THEFT", None], dtype="string"),
            "domestic": pd.array([True, None], dtype="boolean"),
            "community_area": pd.array([25, None], dtype="Int64"),
            "latitude": [41.8, np.nan],
            "arrest_probability": [0.2, 0.9],
        }
    )
    out = monitored_frame(frame)
    assert list(out.columns) == [c.name for c in MONITORED_COLUMNS] + ["probability"]
    assert out["hour"].tolist() == [13.0, 2.0]
    assert out["primary_type"].tolist() == ["THEFT", MISSING]
    assert out["domestic"].tolist() == ["true", MISSING]
    assert out["community_area"].tolist() == ["25", MISSING]
    # A code that came through as float (25.0) still matches its integer form.
    as_float = monitored_frame(pd.DataFrame({"community_area": [25.0, np.nan]}))
    assert as_float["community_area"].tolist() == ["25", MISSING]
    # Fields the frame lacks are all missing, not an error.
    assert (out["iucr"] == MISSING).all() and out["longitude"].isna().all()
    assert out["probability"].tolist() == [0.2, 0.9]


def test_rare_and_unknown_levels_pool_into_other() -> None:
    reference = pd.Series(["A"] * 60 + ["B"] * 25 + ["C"] * 9 + ["D"] * 3 + ["E"] * 3)
    current = pd.Series(["A", "B", "C", "D", "NEW"])
    ref, cur = pool_rare_levels(reference, current, min_share=0.05)
    assert set(ref) == {"A", "B", "C", OTHER} and (ref == OTHER).sum() == 6
    assert cur.tolist() == ["A", "B", "C", OTHER, OTHER]
    assert unseen_share(reference, pd.Series(["A", "NEW", MISSING, "NEW"])) == pytest.approx(2 / 3)


def test_other_always_has_reference_mass_to_compare_with() -> None:
    # Without rare levels `__other__` would be empty in the reference: the rarest kept level
    # joins it, so one unseen value in the window cannot look like a certain drift.
    reference = pd.Series(["false"] * 80 + ["true"] * 20)
    ref, cur = pool_rare_levels(reference, pd.Series(["false", "true", MISSING]), 0.005)
    assert set(ref) == {"false", OTHER} and (ref == OTHER).mean() == pytest.approx(0.2)
    assert cur.tolist() == ["false", OTHER, OTHER]
    # A reference with a single level keeps it (nothing to pool it with).
    single, _ = pool_rare_levels(pd.Series(["X"] * 10), pd.Series(["Y"]), 0.005)
    assert set(single) == {"X"}


def test_one_new_missing_value_is_not_drift_in_small_windows(reference: pd.DataFrame) -> None:
    current = prediction_log(500, 33)
    current["domestic"] = current["domestic"].astype("boolean")
    current.loc[current.index[0], "domestic"] = pd.NA
    assert reference["domestic"].notna().all()
    result, _ = run(reference, current)
    domestic = {c.name: c for c in result.columns}["domestic"]
    assert domestic.statistic == "p_value" and not domestic.drifted


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="drift_share"):
        DriftConfig(drift_share=0)
    with pytest.raises(ValueError, match="max_rows"):
        DriftConfig(max_rows=10, min_current_rows=200)
    with pytest.raises(ValueError, match="min_category_share"):
        DriftConfig(min_category_share=1.5)


# --- verdicts ----------------------------------------------------------------------------------


def _assert_verdicts_consistent(result: DriftResult, methods: set[str]) -> None:
    """Every column (and the prediction) uses the regime's methods; the flag follows the rule."""
    checked = [*result.columns, result.prediction_drift]
    assert all(c is not None for c in checked)
    for column in checked:
        assert column is not None
        assert column.method in methods
        assert column.drifted == exceeds(column.score, column.threshold, column.statistic)


def test_small_windows_use_p_values_and_read_them_as_p_values(narcotics_small, fresh_small):
    for result, _ in (narcotics_small, fresh_small):
        assert result.sampled_current_rows == 600
        assert {c.statistic for c in result.columns} == {"p_value"}
        _assert_verdicts_consistent(result, P_VALUE_METHODS)
    drifted, _ = narcotics_small
    offence = {c.name: c for c in drifted.columns}["primary_type"]
    assert offence.drifted and offence.score is not None and offence.score < 1e-6
    fresh, _ = fresh_small
    assert fresh.status == "no_drift" and fresh.drift_detected is False


def test_large_windows_use_distances_and_read_them_as_distances(narcotics_large, fresh_large):
    for result, _ in (narcotics_large, fresh_large):
        assert result.sampled_current_rows == 3000
        assert {c.statistic for c in result.columns} == {"distance"}
        _assert_verdicts_consistent(result, DISTANCE_METHODS)
        # Distance thresholds are never below the configured ones (chance floor only raises).
        assert all(c.threshold >= 0.1 for c in result.columns)
    drifted, _ = narcotics_large
    offence = {c.name: c for c in drifted.columns}["primary_type"]
    assert offence.drifted and offence.score is not None and offence.score > offence.threshold
    fresh, _ = fresh_large
    assert fresh.status == "no_drift" and fresh.drifted_columns == []


def test_type_mix_shift_is_drift(narcotics_small, narcotics_large) -> None:
    for result, snapshot in (narcotics_small, narcotics_large):
        assert result.status == "drift" and result.drift_detected is True
        assert {"primary_type", "fbi_code"} <= set(result.drifted_columns)
        assert result.prediction_drift is not None and result.prediction_drift.drifted
        assert snapshot is not None
    # Evidently's share is the drifted share over the monitored columns.
    result, _ = narcotics_large
    assert result.drift_share == pytest.approx(len(result.drifted_columns) / len(result.columns))


def test_location_vocabulary_change_is_drift_on_its_own(reference: pd.DataFrame) -> None:
    result, _ = run(reference, prediction_log(3000, 25, "location_vocabulary=modern"))
    by_name = {c.name: c for c in result.columns}
    assert result.status == "drift"
    assert by_name["location_description"].drifted
    assert by_name["location_description"].unseen_share >= 0.05
    # The knob renames locations only: the offence columns and the prediction stay put, so the
    # verdict rests on the unseen vocabulary, not on a column share.
    assert not by_name["primary_type"].drifted
    assert result.drift_share < CONFIG.drift_share
    assert any(r.startswith("location_description:") for r in result.reasons)


def test_arrest_rate_shift_moves_performance_not_inputs(reference: pd.DataFrame) -> None:
    result, snapshot = run(reference, prediction_log(3000, 26, "arrest_rate=2", labelled_share=0.5))
    assert result.status == "no_drift"
    assert result.performance is not None
    current, ref = result.performance["current"], result.performance["reference"]
    assert current["arrest_rate"] > ref["arrest_rate"] + 0.05
    # The score did not move with the labels, so the model now under-predicts arrests.
    assert current["arrest_rate"] > current["mean_probability"] + 0.05
    metric_types = {m["config"]["type"] for m in snapshot.dict()["metrics"]}
    assert "evidently:metric_v2:RocAuc" in metric_types


def test_performance_needs_enough_labelled_rows(reference: pd.DataFrame, fresh_large) -> None:
    result, _ = fresh_large
    assert result.labelled_rows > 1000 and result.performance is not None
    assert 0.5 < result.performance["current"]["roc_auc"] <= 1.0
    assert result.performance["labelled_rows"] == result.labelled_rows
    few, snapshot = run(reference, prediction_log(3000, 27, labelled_share=0.02))
    assert 0 < few.labelled_rows < CONFIG.min_labelled_rows
    assert few.performance is None
    metric_types = {m["config"]["type"] for m in snapshot.dict()["metrics"]}
    assert "evidently:metric_v2:RocAuc" not in metric_types


def test_tiny_windows_are_insufficient_data_not_no_drift(reference: pd.DataFrame) -> None:
    result, snapshot = run(reference, prediction_log(150, 28, "type_mix=NARCOTICS:4"))
    assert snapshot is None
    assert result.status == "insufficient_data"
    assert result.drift_detected is None and result.drift_share is None
    assert result.current_rows == 150 and result.columns == []
    assert "150 current rows" in result.reasons[0]
    tiny_reference, _ = run(reference.head(100), prediction_log(3000, 29))
    assert tiny_reference.status == "insufficient_data"


def test_large_windows_are_sampled(reference: pd.DataFrame) -> None:
    result, _ = run(reference, prediction_log(3000, 30), max_rows=1500)
    assert result.current_rows == 3000 and result.sampled_current_rows == 1500
    assert result.reference_rows == len(reference) and result.sampled_reference_rows == 1500


def test_a_column_empty_on_one_side_is_skipped(reference: pd.DataFrame) -> None:
    current = prediction_log(1500, 31).assign(latitude=np.nan)
    result, _ = run(current=current, reference=reference)
    assert result.skipped_columns == ["latitude"]
    assert "latitude" not in {c.name for c in result.columns}


def test_result_round_trips_through_json(narcotics_large, reference: pd.DataFrame) -> None:
    result, _ = narcotics_large
    decoded = DriftResult.from_json(result.to_json())
    assert decoded == result
    assert isinstance(decoded.columns[0], ColumnDrift)
    as_json = json.loads(json.dumps(result.to_dict()))
    assert datetime.fromisoformat(as_json["window_start"]) == WINDOW[0]
    insufficient, _ = run(reference, prediction_log(20, 32))
    assert DriftResult.from_json(insufficient.to_json()) == insufficient
    with pytest.raises(msgspec.ValidationError):
        DriftResult.from_json(b'{"status": "maybe"}')


def test_categorical_columns_cover_the_offence_and_the_place() -> None:
    assert {"primary_type", "iucr", "location_description", "district"} <= set(CATEGORICAL_COLUMNS)
    # Identifiers, free text and datetimes are never monitored.
    names = {c.name for c in MONITORED_COLUMNS}
    assert not names & {"id", "case_number", "block", "date", "updated_on"}


@pytest.mark.slow
def test_fresh_samples_rarely_raise_false_alarms(reference: pd.DataFrame) -> None:
    # 20 seeded windows from the reference's own distribution, in both regimes.
    verdicts = [
        run(reference, prediction_log(600 if seed % 2 else 2500, 100 + seed), seed=seed)[0]
        for seed in range(20)
    ]
    assert {v.status for v in verdicts} <= {"drift", "no_drift"}
    false_alarms = sum(v.drift_detected for v in verdicts)
    assert false_alarms / len(verdicts) <= 0.05


# --- real data ---------------------------------------------------------------------------------


def _as_log(frame: pd.DataFrame) -> pd.DataFrame:
    """Real incidents as prediction-log rows, scored by the generator's fixed oracle."""
    probability = arrest_probability(frame)
    return frame.drop(columns=["arrest"]).assign(
        probability=probability,
        served_at=frame["date"],
        feedback_arrest=frame["arrest"],
    )


@pytest.mark.real_data
@pytest.mark.slow
def test_real_2024_traffic_drifts_from_2018_and_2018_holdout_does_not(real_data_dir: Path):
    from crimeflow.stores.files import read_incidents_file

    y2018 = read_incidents_file(
        real_data_dir / "crimes_2018-01_to_2018-10_chicagocrimedata-datastore.csv.gz"
    )
    y2024 = read_incidents_file(real_data_dir / "crimes_2024-09_ntropy86_sanitized.parquet")
    # "A model trained on 2018": its reference is a random 20k of the 2018 months, scored by a
    # fixed function (the generator's logistic arrest model fitted on 2018 data).
    order = np.random.default_rng(7).permutation(len(y2018))
    reference = y2018.iloc[order[:20_000]]
    reference = reference.assign(arrest_probability=arrest_probability(reference))
    holdout = y2018.iloc[order[20_000:27_000]]

    same, _ = run(reference, _as_log(holdout))
    assert same.status == "no_drift", same.reasons
    later, snapshot = run(reference, _as_log(y2024))
    assert later.status == "drift" and snapshot is not None
    drifted = set(later.drifted_columns)
    assert "location_description" in drifted and drifted & {"primary_type", "iucr", "fbi_code"}
    location = {c.name: c for c in later.columns}["location_description"]
    assert location.unseen_share is not None and location.unseen_share > 0.05


# --- a full result pinned ------------------------------------------------------------------------

PINNED_PATH = Path(__file__).resolve().parent / "data" / "drift_pinned.json"


def _pinned_cases() -> dict[str, tuple]:
    """Two fixed inputs covering both regimes, sampling, a skipped column and performance."""
    reference = reference_sample(2400, seed=41)
    vocabulary = prediction_log(400, 42, "type_mix=NARCOTICS:4;location_vocabulary=modern", 0.6)
    rates = prediction_log(2500, 43, "arrest_rate=1.5", labelled_share=0.3)
    return {
        "small_p_values": (reference, vocabulary.assign(latitude=np.nan), {}),
        "sampled_distances": (reference, rates, {"max_rows": 1500, "small_sample_rows": 500}),
    }


def _pinned_view(result: DriftResult, snapshot: object) -> dict[str, object]:
    """Everything a check decides (not when it ran), and what its snapshot holds."""
    view = json.loads(json.dumps(result.to_dict()))
    del view["checked_at"]
    if snapshot is not None:
        metrics = snapshot.dict()["metrics"]  # type: ignore[attr-defined]
        view["snapshot_metrics"] = sorted(
            f"{m['config'].get('type')}:{m['config'].get('column', '')}" for m in metrics
        )
    return view


def _assert_close(actual: object, expected: object, where: str) -> None:
    """Equal, floats to 1e-9 (the same code on the same input; BLAS may sum in another order)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), where
        for key, value in expected.items():
            _assert_close(actual[key], value, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for i, (got, want) in enumerate(zip(actual, expected, strict=True)):
            _assert_close(got, want, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=1e-9, abs=1e-12), where
    else:
        assert actual == expected, where


def write_pinned() -> None:
    """Re-record the pinned results (only after a change that means to alter them)."""
    views = {
        name: _pinned_view(*run(*case[:2], **case[2])) for name, case in _pinned_cases().items()
    }
    PINNED_PATH.write_text(json.dumps(views, indent=1, sort_keys=True) + "\n")


@pytest.mark.parametrize("name", ["small_p_values", "sampled_distances"])
def test_full_result_on_a_fixed_input_is_pinned(name: str) -> None:
    # Recorded before compute_drift was split into parts; re-record with write_pinned().
    reference, current, config = _pinned_cases()[name]
    expected = json.loads(PINNED_PATH.read_text())[name]
    _assert_close(_pinned_view(*run(reference, current, **config)), expected, name)
