"""What a training run records of the audit: artifact names, metrics, the artifact section."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
from shapely.geometry import box

from crimeflow.contract.links import Links
from crimeflow.domain.audit_report import (
    MAP_ARTIFACT,
    NO_BOUNDARIES,
    audit_markdown,
    audit_metrics,
    holdout_audit,
)


class ByLatitude:
    """A stand-in estimator whose probability is the row's `latitude` column."""

    def predict_proba(self, rows: pd.DataFrame) -> np.ndarray:
        p = rows["latitude"].to_numpy(dtype="float64")
        return np.column_stack([1 - p, p])


def holdout(seed: int = 1) -> pd.DataFrame:
    """Two districts of 600 labelled rows (one ranked well, one at random), some unlabelled."""
    rng = np.random.default_rng(seed)
    y = rng.random(1200) < 0.3
    good = np.where(y, rng.uniform(0.3, 0.9, 1200), rng.uniform(0.0, 0.5, 1200))
    district = np.repeat(["001", "009"], 600)
    latitude = np.where(district == "001", good, rng.uniform(0, 0.6, 1200))
    frame = pd.DataFrame(
        {
            "district": district,
            "community_area": pd.array(np.repeat([1, 2, 3], 400), dtype="Int64"),
            "latitude": latitude,
            "arrest": pd.array(y, dtype="boolean"),
        }
    )
    unlabelled = frame.head(5).assign(arrest=pd.array([pd.NA] * 5, dtype="boolean"))
    return pd.concat([frame, unlabelled], ignore_index=True)


def test_without_boundaries_the_map_is_skipped_and_said_so():
    audit = holdout_audit(ByLatitude(), holdout(), 0.4, None)
    assert audit.map_figure is None and audit.map_note == NO_BOUNDARIES
    assert audit.tables["per_district"]["rows"].sum() == 1200  # unlabelled rows left out
    assert audit.artifact_names() == [
        "audit/per_district.csv",
        "audit/per_community_area.csv",
        "audit/largest_gaps.csv",
    ]
    text = audit_markdown(audit, "http://unused")
    assert "map skipped" in text and "http://unused" not in text
    assert "| district | PR-AUC | 009:" in text  # the random district is the worst
    assert "2 districts audited on their own." in text


def test_with_boundaries_the_map_is_embedded_and_metrics_name_the_worst():
    areas = gpd.GeoDataFrame(
        {"community_area": pd.array([1, 2, 3, 4], dtype="Int64"), "name": list("abcd")},
        geometry=[box(i, 0, i + 1, 1) for i in range(4)],
        crs="EPSG:3435",
    )
    audit = holdout_audit(ByLatitude(), holdout(), 0.4, areas)
    assert audit.map_figure is not None and audit.artifact_names()[-1] == MAP_ARTIFACT
    url = Links("http://api", "http://mlflow:5000/", "http://prefect").mlflow_artifact(
        "abc123", MAP_ARTIFACT
    )
    assert url == (
        "http://mlflow:5000/get-artifact?path=audit%2Fcommunity_area_pr_auc.png&run_uuid=abc123"
    )
    assert f"![{MAP_ARTIFACT}]({url})" in audit_markdown(audit, url)
    metrics = audit_metrics(audit)
    per_district = audit.tables["per_district"].set_index("area")
    assert metrics["audit.district.worst_pr_auc"] == per_district.loc["009", "pr_auc"]
    assert "audit.community_area.max_abs_calibration_gap" in metrics
