"""The per-area audit: metrics and intervals per district and community area, pooling, gaps, map."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import box

from crimeflow.domain.audit import (
    MIN_AREA_ROWS,
    POOLED,
    area_metrics,
    audit_by,
    audit_tables,
    hanley_mcneil_interval,
    largest_gaps,
    logit_interval,
    wilson_interval,
)
from crimeflow.domain.plots import area_map_figure


def test_wilson_interval_matches_the_textbook_value():
    low, high = wilson_interval(10, 100)
    assert (round(low, 4), round(high, 4)) == (0.0552, 0.1744)
    assert wilson_interval(0, 0) == (None, None)
    assert wilson_interval(0, 50)[0] == pytest.approx(0.0, abs=1e-12)


def test_hanley_mcneil_interval_by_hand():
    # AUC 0.8, 50 positives, 50 negatives: Q1 = 2/3, Q2 = 0.7111, SE = 0.04450.
    low, high = hanley_mcneil_interval(0.8, 50, 50)
    assert high - 0.8 == pytest.approx(1.96 * 0.04450, abs=1e-3)
    assert 0.8 - low == pytest.approx(high - 0.8)
    assert hanley_mcneil_interval(0.8, 0, 50) == (None, None)


def test_logit_interval_is_asymmetric_and_narrows_with_positives():
    low, high = logit_interval(0.9, 100)
    assert low < 0.9 < high <= 1 and (0.9 - low) > (high - 0.9)
    wider = logit_interval(0.9, 25)
    assert wider[0] < low and wider[1] > high


def test_area_metrics_counts_errors_at_the_threshold():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    proba = np.array([0.9, 0.8, 0.3, 0.2, 0.7, 0.1, 0.1, 0.1, 0.1, 0.1])
    row = area_metrics(y, proba, threshold=0.5)
    assert row["rows"] == 10 and row["positives"] == 4
    assert row["fpr"] == pytest.approx(1 / 6)  # one of six non-arrests flagged
    assert row["fnr"] == pytest.approx(2 / 4)  # two of four arrests missed
    assert row["positive_rate"] == pytest.approx(0.4)
    assert row["calibration_gap"] == pytest.approx(proba.mean() - 0.4)
    for name in ("roc_auc", "pr_auc", "calibration_gap", "positive_rate", "fpr", "fnr"):
        assert row[f"{name}_low"] <= row[name] <= row[f"{name}_high"], name


def audited_frame(seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Three big districts (009 ranked at random, 001 and 002 well) and two tiny ones."""
    rng = np.random.default_rng(seed)
    sizes = {"001": 1500, "002": 1200, "009": 1000, "030": 50, "031": 20}
    district = np.repeat(list(sizes), list(sizes.values()))
    n = district.size
    y = rng.random(n) < 0.25
    signal = np.where(y, 0.65, 0.25) + rng.normal(0, 0.12, n)
    proba = np.clip(np.where(district == "009", rng.random(n) * 0.6, signal), 0.01, 0.99)
    area = pd.array(rng.integers(1, 6, n), dtype="Int64")
    area[:40] = pd.NA  # rows without a community area
    frame = pd.DataFrame({"district": pd.array(district, dtype="string"), "community_area": area})
    return frame, y, proba


def test_audit_by_district_pools_small_districts_and_says_so():
    frame, y, proba = audited_frame()
    table = audit_by(frame, y, proba, 0.45, "district")
    assert list(table["area"]) == ["001", "002", "009", POOLED]  # largest first, pool last
    assert list(table["rows"]) == [1500, 1200, 1000, 70]
    pooled = table.set_index("area").loc[POOLED]
    assert pooled["pooled"] and pooled["areas_pooled"] == 2
    assert table["rows"].sum() == len(frame)
    by_area = table.set_index("area")
    # District 009 scores at random: ROC-AUC near 0.5, far below the others, intervals apart.
    assert by_area.loc["009", "roc_auc"] == pytest.approx(0.5, abs=0.06)
    assert by_area.loc["009", "roc_auc_high"] < by_area.loc["001", "roc_auc_low"]
    assert by_area.loc["001", "pr_auc"] > 0.8


def test_integer_areas_are_text_keys_and_missing_areas_go_to_the_pool():
    frame, y, proba = audited_frame()
    table = audit_by(frame, y, proba, 0.45, "community_area", min_rows=10)
    assert set(table["area"]) == {"1", "2", "3", "4", "5", POOLED}
    pooled = table.set_index("area").loc[POOLED]
    assert pooled["rows"] == 40 and pooled["areas_pooled"] == 0


def test_audit_by_names_a_missing_column_and_mismatched_lengths():
    frame, y, proba = audited_frame()
    with pytest.raises(ValueError, match="'beat'"):
        audit_by(frame, y, proba, 0.5, "beat")
    with pytest.raises(ValueError, match="labels"):
        audit_by(frame, y[:-1], proba, 0.5, "district")


def test_largest_gaps_names_the_worst_area_and_leaves_the_pool_out():
    frame, y, proba = audited_frame()
    gaps = largest_gaps(audit_by(frame, y, proba, 0.45, "district"))
    assert POOLED not in set(gaps["area"])
    worst = gaps[gaps["rank"] == 1].set_index("metric")
    assert worst.loc["roc_auc", "area"] == "009" and worst.loc["pr_auc", "area"] == "009"
    assert worst.loc["pr_auc", "intervals_apart"]
    assert worst.loc["pr_auc", "gap_to_best"] > 0.3
    assert set(worst.index) == {"roc_auc", "pr_auc", "calibration_gap", "fpr", "fnr"}


def test_audit_tables_shape_for_the_model_card():
    frame, y, proba = audited_frame()
    tables = audit_tables(frame, y, proba, 0.45)
    assert set(tables) == {"per_district", "per_community_area", "largest_gaps"}
    assert set(tables["largest_gaps"]["by"]) == {"district", "community_area"}
    assert tables["largest_gaps"].columns[0] == "by"
    # 4,770 rows over five community areas: every one has ≥ MIN_AREA_ROWS rows of its own.
    assert (tables["per_community_area"].query("not pooled")["rows"] >= MIN_AREA_ROWS).all()


def test_area_map_shades_areas_with_rows_and_hatches_the_pooled():
    squares = gpd.GeoDataFrame(
        {"community_area": pd.array([1, 2, 3], dtype="Int64"), "name": ["A", "B", "C"]},
        geometry=[box(0, 0, 1, 1), box(1, 0, 2, 1), box(2, 0, 3, 1)],
        crs="EPSG:3435",
    )
    table = pd.DataFrame(
        {"area": ["1", "2", POOLED], "pooled": [False, False, True], "pr_auc": [0.4, 0.8, 0.6]}
    )
    figure = area_map_figure(table, squares)
    map_axes = figure.axes[0]
    hatched = [c for c in map_axes.collections if c.get_hatch()]
    assert len(hatched) == 1  # area 3 has no row of its own
    assert len(figure.axes) == 2  # the map and its colour bar
    # The shaded collection carries the areas' values (mapped to colours when drawn).
    assert list(map_axes.collections[0].get_array()) == [0.4, 0.8]


def test_area_map_on_the_real_community_areas(real_boundaries):
    areas = real_boundaries["community_areas"]
    table = pd.DataFrame(
        {
            "area": [str(a) for a in range(1, 70)],
            "pooled": False,
            "pr_auc": np.linspace(0.4, 0.9, 69),
        }
    )
    figure = area_map_figure(table, areas)
    shaded = figure.axes[0].collections[0].get_array()
    assert len(areas) == 77 and len(shaded) == 69
    assert math.isclose(min(shaded), 0.4) and math.isclose(max(shaded), 0.9)
