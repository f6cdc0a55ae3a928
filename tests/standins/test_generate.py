"""The seeded incident generator: shape, realism, learnability, drift knobs and file output."""

from __future__ import annotations

import gzip
import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyproj import Transformer
from sklearn.metrics import roc_auc_score

from crimeflow.contract.incident import chicago_now
from crimeflow.contract.months import previous_month
from crimeflow.contract.schema import (
    CHICAGO_BOUNDS,
    KNOWN_DISTRICTS,
    SODA_COLUMNS,
    coercion_errors,
    empty_canonical,
    to_canonical,
)
from crimeflow.standins.generate import (
    BAD_ARREST_TEXT,
    BAD_ROW_KINDS,
    LATE_ARREST_SHARE,
    LOCATION_RENAMES_2020,
    PROFILE_PATH,
    UNKNOWN_DISTRICT,
    Drift,
    _generate,
    add_bad_rows,
    arrest_probability,
    generate_incidents,
    load_profile,
    nearest_station_km,
    to_soda_strings,
    write_incidents,
)

# Six months at 8k rows: big enough for rate checks (SE of the overall rate ~0.002), ~0.3 s.
ROWS_PER_MONTH = 8_000


@pytest.fixture(scope="module")
def incidents() -> pd.DataFrame:
    """Six 2018-like months, no drift."""
    return generate_incidents("2018-01", "2018-06", rows_per_month=ROWS_PER_MONTH, seed=11)


@pytest.fixture(scope="module")
def profile() -> dict:
    """The packaged generator profile."""
    return load_profile()


def test_same_arguments_give_identical_frames_and_seeds_differ() -> None:
    first = generate_incidents("2018-03", "2018-04", rows_per_month=500, seed=5)
    again = generate_incidents("2018-03", "2018-04", rows_per_month=500, seed=5)
    other = generate_incidents("2018-03", "2018-04", rows_per_month=500, seed=6)
    pd.testing.assert_frame_equal(first, again)
    assert not first["primary_type"].equals(other["primary_type"])


def test_output_has_the_canonical_columns_and_dtypes(incidents: pd.DataFrame) -> None:
    assert tuple(incidents.columns) == SODA_COLUMNS
    pd.testing.assert_series_equal(incidents.dtypes, empty_canonical().dtypes)
    # Already canonical: the schema's coercion changes nothing.
    pd.testing.assert_frame_equal(to_canonical(incidents), incidents)


def test_every_month_gets_its_rows_and_dates_stay_inside_it() -> None:
    frame = generate_incidents("2018-11", "2019-02", rows_per_month=300, seed=1)
    months = frame["date"].dt.strftime("%Y-%m").value_counts().sort_index()
    assert months.to_dict() == {"2018-11": 300, "2018-12": 300, "2019-01": 300, "2019-02": 300}
    assert (frame["year"] == frame["date"].dt.year).all()
    assert (frame["date"].dt.second == 0).all()


def test_ids_and_case_numbers_increase_with_date() -> None:
    frame = generate_incidents("2024-12", "2025-01", rows_per_month=400, seed=2, start_id=1000)
    assert frame["date"].is_monotonic_increasing
    assert frame["id"].tolist() == list(range(1000, 1800))
    cases = frame["case_number"]
    assert cases.str.fullmatch(r"J[A-Z]\d{6}").all()
    assert set(cases[frame["year"] == 2024].str[:2]) == {"JH"}  # CPD's 2024 prefix
    assert set(cases[frame["year"] == 2025].str[:2]) == {"JJ"}  # 'I' is skipped
    for _, year in frame.groupby("year"):
        assert year["case_number"].is_monotonic_increasing and year["case_number"].is_unique


def test_updated_on_follows_date_and_arrests_are_often_recorded_late(
    incidents: pd.DataFrame,
) -> None:
    lag = incidents["updated_on"] - incidents["date"]
    assert (lag >= pd.Timedelta(hours=1)).all()
    arrested = incidents["arrest"].astype(bool)
    # First records come within hours to a few days; a week later means a late arrest.
    late = lag > pd.Timedelta(days=7)
    assert late[~arrested].mean() < 0.03
    assert 0.5 * LATE_ARREST_SHARE < late[arrested].mean() < LATE_ARREST_SHARE
    assert lag[arrested].max() > pd.Timedelta(days=28)


def test_no_record_of_last_month_is_updated_in_the_future() -> None:
    # Late arrests of last month's incidents would be recorded weeks ahead; a feed read now
    # cannot hold them (the API refuses an updated_on after now + 1 day).
    month = previous_month(chicago_now().date())
    frame = generate_incidents(month, month, rows_per_month=2000, seed=5)
    # The clock read after generating: the generator's own "now" is at most this.
    now = pd.Timestamp(chicago_now())
    assert (frame["updated_on"] <= now).all(), frame["updated_on"].max()
    assert (frame["updated_on"] >= frame["date"]).all()


def test_coordinates_fall_inside_chicago_and_agree_with_lat_lon(incidents: pd.DataFrame) -> None:
    located = incidents.dropna(subset=["x_coordinate"])
    for column, (low, high) in CHICAGO_BOUNDS.items():
        assert located[column].between(low, high).all(), column
    # Missing coordinates are missing together, at about the real 0.4 %.
    missing = incidents["x_coordinate"].isna()
    assert missing.equals(incidents["latitude"].isna())
    assert 0.001 < missing.mean() < 0.01
    # Independent direction: lat/lon back to State Plane lands on x/y within a foot.
    to_feet = Transformer.from_crs("EPSG:4326", "EPSG:3435", always_xy=True)
    x, y = to_feet.transform(located["longitude"].to_numpy(), located["latitude"].to_numpy())
    assert np.abs(x - located["x_coordinate"]).max() < 1.0
    assert np.abs(y - located["y_coordinate"]).max() < 1.0
    assert (located["x_coordinate"] % 1 == 0).all()  # whole feet, as SODA gives them


def test_beats_wards_and_areas_are_consistent(incidents: pd.DataFrame, profile: dict) -> None:
    # CPD beats are numbered within their district: beat 0614 is in district 006.
    assert (incidents["beat"].str[:2] == incidents["district"].str[1:]).all()
    assert set(incidents["district"]) <= KNOWN_DISTRICTS
    for beat, rows in incidents.groupby("beat"):
        entry = profile["beats"][beat]
        assert set(rows["ward"]) <= {w for w, _ in entry["wards"]}
        assert set(rows["community_area"]) <= {c for c, _ in entry["community_areas"]}
        x_low, x_high = entry["x"][2:]
        assert rows["x_coordinate"].dropna().between(x_low, x_high).all()


def test_blocks_look_like_cpd_blocks_and_match_the_grid(incidents: pd.DataFrame) -> None:
    parts = incidents["block"].str.extract(r"^(\d{3}XX|0000X) ([NSEW]) (.+)$")
    assert parts.notna().all().all()
    # Madison St (y ~ 1,900,000 ft) splits N from S addresses.
    y = incidents["y_coordinate"]
    assert (y[parts[1] == "N"].dropna() > 1_895_000).all()
    assert (y[parts[1] == "S"].dropna() < 1_906_000).all()


def test_overall_and_per_type_arrest_rates_match_the_real_profile(
    incidents: pd.DataFrame, profile: dict
) -> None:
    arrested = incidents["arrest"].astype(bool)
    assert abs(arrested.mean() - profile["arrest_rate"]) < 0.008
    by_type = arrested.groupby(incidents["primary_type"]).mean()
    for name in ("THEFT", "BATTERY", "CRIMINAL DAMAGE", "ASSAULT", "NARCOTICS", "BURGLARY"):
        assert abs(by_type[name] - profile["primary_types"][name]["arrest_rate"]) < 0.025, name
    # The ordering that makes the task learnable resembles reality.
    assert by_type["BURGLARY"] < by_type["THEFT"] < by_type["BATTERY"]
    assert by_type["BATTERY"] < by_type["CRIMINAL TRESPASS"] < by_type["NARCOTICS"]
    assert by_type["NARCOTICS"] > 0.95 and by_type["THEFT"] < 0.15


def test_arrests_depend_on_location_and_domestic_as_in_reality(incidents: pd.DataFrame) -> None:
    arrested = incidents["arrest"].astype(bool)
    theft = incidents["primary_type"] == "THEFT"
    place = incidents["location_description"]
    # Shoplifters get caught; street thefts rarely end in an arrest.
    in_store = arrested[theft & place.isin(["DEPARTMENT STORE", "SMALL RETAIL STORE"])].mean()
    on_street = arrested[theft & (place == "STREET")].mean()
    assert in_store > 5 * on_street
    # IUCR and domestic are drawn jointly: domestic battery is (almost) always domestic.
    simple = incidents["description"] == "DOMESTIC BATTERY SIMPLE"
    assert incidents["domestic"][simple].mean() > 0.75
    assert incidents["domestic"][incidents["primary_type"] == "NARCOTICS"].mean() < 0.02


def test_the_oracle_reproduces_generation_and_leaves_room_to_learn() -> None:
    frame, used = _generate(
        "2018-01",
        "2018-02",
        rows_per_month=5000,
        seed=3,
        drift=None,
        start_id=1,
        profile=None,
    )
    oracle = arrest_probability(frame)
    located = frame["x_coordinate"].notna().to_numpy()
    np.testing.assert_allclose(oracle[located], used[located], atol=1e-12)
    # Learnable but not trivial: the best possible model ranks well, short of perfectly.
    auc = roc_auc_score(frame["arrest"].to_numpy(dtype=bool), oracle)
    assert 0.85 < auc < 0.95


def test_distance_to_the_nearest_station_nudges_arrests(incidents: pd.DataFrame) -> None:
    sample = incidents.dropna(subset=["x_coordinate"]).head(2000).copy()
    station_x, station_y = 1176569.052, 1891771.704  # district 1 station, 1718 S State St
    near, far = sample.copy(), sample.copy()
    near["x_coordinate"], near["y_coordinate"] = station_x + 300, station_y
    far["x_coordinate"], far["y_coordinate"] = station_x + 16_000, station_y  # ~4.9 km east
    assert nearest_station_km(far["x_coordinate"].to_numpy(), far["y_coordinate"].to_numpy())[
        0
    ] == pytest.approx(16_000 * 0.3048 / 1000, rel=0.25)
    lift = arrest_probability(near) - arrest_probability(far)
    assert (lift > 0).all() and 0.005 < lift.mean() < 0.05  # a little, not a lot


def test_nearest_station_km_is_zero_at_a_station_and_nan_without_coordinates() -> None:
    km = nearest_station_km(np.array([1176569.052, np.nan]), np.array([1891771.704, 1.0]))
    assert km[0] == pytest.approx(0.0, abs=1e-9)
    assert np.isnan(km[1])


# --- drift knobs -------------------------------------------------------------------------------


def test_type_mix_multiplies_the_share_of_a_type(incidents: pd.DataFrame) -> None:
    drifted = generate_incidents(
        "2018-01",
        "2018-06",
        rows_per_month=ROWS_PER_MONTH,
        seed=11,
        drift=Drift.parse("type_mix=NARCOTICS:4,THEFT:0.5"),
    )
    before = incidents["primary_type"].value_counts(normalize=True)
    after = drifted["primary_type"].value_counts(normalize=True)
    assert 3.0 < after["NARCOTICS"] / before["NARCOTICS"] < 4.0  # 4x, then renormalised
    assert 0.4 < after["THEFT"] / before["THEFT"] < 0.6
    # More narcotics (nearly always an arrest) raises the overall rate on its own.
    assert drifted["arrest"].mean() > incidents["arrest"].mean() + 0.05


def test_type_mix_zero_removes_a_type_and_unknown_types_are_rejected() -> None:
    frame = generate_incidents(
        "2018-01", "2018-01", rows_per_month=2000, drift=Drift(type_mix={"theft": 0})
    )
    assert "THEFT" not in set(frame["primary_type"])
    with pytest.raises(ValueError, match=r"unknown primary types.*'MURDER'"):
        generate_incidents("2018-01", "2018-01", rows_per_month=10, drift=Drift({"MURDER": 2}))


def test_arrest_rate_multiplies_the_odds_and_touches_nothing_else(
    incidents: pd.DataFrame,
) -> None:
    drifted = generate_incidents(
        "2018-01",
        "2018-06",
        rows_per_month=ROWS_PER_MONTH,
        seed=11,
        drift=Drift(arrest_rate=1.5),
    )
    base = incidents["arrest"].astype(bool)
    more = drifted["arrest"].astype(bool)
    # Odds x 1.5 per row: near-certain arrests (narcotics) cannot rise, so the overall rate
    # moves less than the odds of the average row would.
    expected = arrest_probability(incidents, drift=Drift(arrest_rate=1.5)).mean()
    assert abs(more.mean() - expected) < 0.006
    assert more.mean() > base.mean() + 0.025
    assert (more | ~base).all()  # same random draws: every base arrest stays an arrest
    unchanged = [c for c in SODA_COLUMNS if c not in ("arrest", "updated_on")]
    pd.testing.assert_frame_equal(drifted[unchanged], incidents[unchanged])


def test_type_arrest_odds_change_only_that_type_s_arrests(incidents: pd.DataFrame) -> None:
    drift = Drift(type_arrest_odds={"theft": 5.0})
    drifted = generate_incidents(
        "2018-01", "2018-06", rows_per_month=ROWS_PER_MONTH, seed=11, drift=drift
    )
    theft = incidents["primary_type"] == "THEFT"
    base, more = incidents["arrest"].astype(bool), drifted["arrest"].astype(bool)
    assert more[theft].mean() > 2 * base[theft].mean()
    pd.testing.assert_series_equal(more[~theft], base[~theft])  # concept drift for theft only
    expected = arrest_probability(incidents, drift=drift)[theft.to_numpy()].mean()
    assert abs(more[theft].mean() - expected) < 0.01
    with pytest.raises(ValueError, match="type_arrest_odds names unknown primary types"):
        generate_incidents(
            "2018-01",
            "2018-01",
            rows_per_month=10,
            drift=Drift(type_arrest_odds={"NO SUCH TYPE": 2.0}),
        )
    with pytest.raises(ValueError, match="must be > 0"):
        Drift(type_arrest_odds={"THEFT": 0})


def test_modern_vocabulary_renames_locations_and_nothing_else(
    incidents: pd.DataFrame, profile: dict
) -> None:
    drifted = generate_incidents(
        "2018-01",
        "2018-06",
        rows_per_month=ROWS_PER_MONTH,
        seed=11,
        drift=Drift(location_vocabulary="modern"),
    )
    old, new = incidents["location_description"], drifted["location_description"]
    assert not new.isin(list(LOCATION_RENAMES_2020)).any()
    assert (new == "RESIDENCE - PORCH / HALLWAY").sum() == (old == "RESIDENCE PORCH/HALLWAY").sum()
    assert (new != old).mean() > 0.05  # OTHER, PARKING LOT/GARAGE(NON.RESID.), ... renamed
    pd.testing.assert_series_equal(old.replace(dict(LOCATION_RENAMES_2020)), new)
    others = [c for c in SODA_COLUMNS if c != "location_description"]
    pd.testing.assert_frame_equal(drifted[others], incidents[others])
    # The oracle maps modern names back, so the drifted frame scores the same.
    np.testing.assert_allclose(arrest_probability(drifted), arrest_probability(incidents))


def test_rename_table_is_one_to_one_and_lands_in_the_modern_vocabulary(profile: dict) -> None:
    targets = list(LOCATION_RENAMES_2020.values())
    assert len(set(targets)) == len(targets)
    emitted = {row[0] for e in profile["primary_types"].values() for row in e["locations"]}
    assert not set(targets) & emitted  # a target is never also a 2018 value
    assert set(targets) <= set(profile["modern_location_vocabulary"])


# --- Drift.parse -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "arrest_rate=1.3",
        "location_vocabulary=modern",
        "type_mix=NARCOTICS:4,THEFT:0.5;arrest_rate=1.3;location_vocabulary=modern",
        "type_mix=MOTOR VEHICLE THEFT:2,NON-CRIMINAL (SUBJECT SPECIFIED):0",
        "type_mix=NARCOTICS:3;location_vocabulary=modern;type_arrest_odds=NARCOTICS:0.01,THEFT:5",
    ],
)
def test_drift_spec_round_trips(spec: str) -> None:
    drift = Drift.parse(spec)
    assert Drift.parse(drift.to_spec()) == drift
    assert Drift.parse(str(drift)) == drift
    assert hash(Drift.parse(spec)) == hash(drift)


def test_drift_parse_is_lenient_about_case_and_spaces() -> None:
    drift = Drift.parse(" TYPE_MIX = narcotics : 4 , motor  vehicle theft:2 ; Arrest_Rate=0.8; ")
    assert drift == Drift({"NARCOTICS": 4.0, "MOTOR VEHICLE THEFT": 2.0}, arrest_rate=0.8)
    assert drift.to_spec() == "type_mix=MOTOR VEHICLE THEFT:2,NARCOTICS:4;arrest_rate=0.8"
    assert Drift.parse("") == Drift()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("type_mix=NARCOTICS", "not TYPE:MULT"),
        ("type_mix=THEFT:1,THEFT:2", "given twice"),
        ("type_mix=THEFT:lots", "not a number"),
        ("type_mix=THEFT:-1", "must be >= 0"),
        ("type_mix=THEFT:inf", "not a finite number"),
        ("arrest_rate=abc", "not a number"),
        ("arrest_rate=0", "positive"),
        ("arrest_rate=1.1;arrest_rate=1.2", "given twice"),
        ("location_vocabulary=1999", "one of 2018, modern"),
        ("colour=blue", "unknown drift key 'colour'"),
        ("arrest_rate", "not key=value"),
    ],
)
def test_drift_parse_rejects_bad_specs_clearly(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Drift.parse(spec)


def test_generate_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        generate_incidents("2018-13", "2019-01")
    with pytest.raises(ValueError, match="after last month"):
        generate_incidents("2018-05", "2018-04")
    with pytest.raises(ValueError, match="start_id"):
        generate_incidents("2018-05", "2018-05", start_id=0)
    empty = generate_incidents("2018-05", "2018-06", rows_per_month=0)
    pd.testing.assert_frame_equal(empty, empty_canonical())


# --- files and bad rows ----------------------------------------------------------------------


def test_csv_output_is_soda_text_and_reads_back_identically(tmp_path: Path) -> None:
    frame = generate_incidents("2018-02", "2018-03", rows_per_month=400, seed=4)
    path = write_incidents(frame, tmp_path / "out")
    assert path.name == "crimes_2018-02_2018-03.csv.gz"
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    assert tuple(raw.columns) == SODA_COLUMNS
    assert raw["date"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000").all()
    assert set(raw["arrest"]) <= {"true", "false"}
    assert raw["beat"].str.fullmatch(r"\d{4}").all()
    assert raw["x_coordinate"].dropna().str.fullmatch(r"\d{7}").all()
    pd.testing.assert_frame_equal(to_canonical(raw), frame)
    # Reproducible bytes (gzip without a timestamp), so reruns do not churn files.
    first = path.read_bytes()
    assert write_incidents(frame, tmp_path / "out").read_bytes() == first
    assert gzip.decompress(first).startswith(b"id,case_number,date,")


def test_parquet_output_keeps_canonical_types(tmp_path: Path) -> None:
    frame = generate_incidents("2018-02", "2018-02", rows_per_month=300, seed=4)
    path = write_incidents(frame, tmp_path, fmt="parquet")
    assert path.name == "crimes_2018-02_2018-02.parquet"
    pd.testing.assert_frame_equal(to_canonical(pd.read_parquet(path)), frame)
    with pytest.raises(ValueError, match=r"csv\.gz"):
        write_incidents(frame, tmp_path, fmt="xlsx")


def test_soda_strings_are_all_text_or_none() -> None:
    frame = generate_incidents("2018-02", "2018-02", rows_per_month=300, seed=4)
    text = to_soda_strings(frame)
    values = text.to_numpy().ravel()
    assert all(v is None or isinstance(v, str) for v in values)
    pd.testing.assert_frame_equal(to_canonical(text), frame)


def test_add_bad_rows_corrupts_the_requested_share_in_every_way() -> None:
    frame = generate_incidents("2018-02", "2018-02", rows_per_month=1000, seed=4)
    bad = add_bad_rows(frame, share=0.08, seed=9)
    assert bad.equals(add_bad_rows(frame, share=0.08, seed=9))
    kinds = bad.attrs["bad_rows"]
    assert set(kinds) == set(BAD_ROW_KINDS)
    assert sorted(len(rows) for rows in kinds.values()) == [20, 20, 20, 20]
    labels = [label for rows in kinds.values() for label in rows]
    assert len(set(labels)) == 80

    canonical = to_canonical(bad)
    errors = coercion_errors(bad, canonical)
    assert (bad.loc[kinds["bad_arrest"], "arrest"] == BAD_ARREST_TEXT).all()
    assert errors[kinds["bad_arrest"]].str.contains("arrest").all()
    assert canonical.loc[kinds["missing_date"], "date"].isna().all()
    outside = canonical.loc[kinds["outside_chicago"]]
    low, high = CHICAGO_BOUNDS["latitude"]
    assert not outside["latitude"].between(low, high).any()
    assert (canonical.loc[kinds["unknown_district"], "district"] == UNKNOWN_DISTRICT).all()
    assert UNKNOWN_DISTRICT not in KNOWN_DISTRICTS
    # Rows not chosen are untouched.
    clean = canonical.drop(index=labels)
    pd.testing.assert_frame_equal(clean, frame.drop(index=labels))
    assert (errors.drop(index=labels) == "").all()
    with pytest.raises(ValueError, match="share"):
        add_bad_rows(frame, share=1.5, seed=0)


def test_add_bad_rows_can_limit_the_kinds() -> None:
    frame = generate_incidents("2018-02", "2018-02", rows_per_month=200, seed=4)
    bad = add_bad_rows(frame, share=0.1, seed=1, kinds=("bad_arrest",))
    assert list(bad.attrs["bad_rows"]) == ["bad_arrest"]
    assert (bad["arrest"] == BAD_ARREST_TEXT).sum() == 20
    assert bad["date"].notna().all()
    with pytest.raises(ValueError, match="subset"):
        add_bad_rows(frame, share=0.1, seed=1, kinds=("on_fire",))


# --- the profile -------------------------------------------------------------------------------


def test_profile_is_small_sorted_and_holds_no_rows(profile: dict) -> None:
    text = PROFILE_PATH.read_text(encoding="utf-8")
    assert len(text.encode()) < 300_000
    assert json.dumps(profile, sort_keys=True) == json.dumps(profile)  # keys written sorted
    assert not re.search(r"\bJ[A-Z]\d{6}\b", text)  # no case numbers, i.e. no copied rows
    assert abs(sum(e["share"] for e in profile["primary_types"].values()) - 1) < 1e-3


@pytest.mark.real_data
@pytest.mark.slow
def test_generated_mix_resembles_the_real_2018_data(real_data_dir: Path) -> None:
    raw = pd.read_csv(
        real_data_dir / "crimes_2018-01_to_2018-10_chicagocrimedata-datastore.csv.gz", dtype=str
    )
    real = to_canonical(raw)
    incidents = generate_incidents("2018-01", "2018-10", rows_per_month=20_000, seed=8)

    def distance(column: str) -> float:
        a = real[column].value_counts(normalize=True)
        b = incidents[column].value_counts(normalize=True)
        return 0.5 * a.sub(b, fill_value=0).abs().sum()  # total variation

    # Measured: 0.003, 0.006, 0.015, 0.028 and 0.004 for the hour.
    assert distance("primary_type") < 0.01
    assert distance("district") < 0.02
    assert distance("beat") < 0.04
    assert distance("location_description") < 0.05
    hours = (
        0.5
        * (
            real["date"].dt.hour.value_counts(normalize=True)
            - incidents["date"].dt.hour.value_counts(normalize=True)
        )
        .abs()
        .sum()
    )
    assert hours < 0.02
    assert abs(incidents["domestic"].mean() - real["domestic"].mean()) < 0.01
    # The generator's arrest model ranks real incidents as well as generated ones (~0.90).
    assert roc_auc_score(real["arrest"].to_numpy(dtype=bool), arrest_probability(real)) > 0.87


@pytest.mark.slow
def test_one_million_rows_in_a_few_seconds() -> None:
    generate_incidents("2018-01", "2018-01", rows_per_month=10)  # profile load, pyproj init
    started = time.perf_counter()
    frame = generate_incidents("2018-01", "2018-12", rows_per_month=83_334, seed=1)
    seconds = time.perf_counter() - started
    print(f"\n{len(frame):,} rows in {seconds:.2f} s = {len(frame) / seconds:,.0f} rows/s")
    assert len(frame) == 1_000_008
    assert frame["id"].is_unique and frame["case_number"].is_unique
    assert seconds < 20
