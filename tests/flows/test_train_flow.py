"""The training flow against a real (embedded SQLite) MLflow registry."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from crimeflow.contract.schema import SODA_COLUMNS
from crimeflow.contract.settings import child_environment
from crimeflow.standins.generate import generate_incidents
from crimeflow.stores.lake import CLEAN_CRIMES, Lake
from crimeflow.stores.registry import (
    CHALLENGER,
    CHAMPION,
    UntrustedModelError,
    load_model,
    mlflow_client,
    record_content_hash,
)
from flows.train import train

MONTHS = ("2024-01", "2024-04")
MLFLOW_UI = "https://mlflow.example.org"
PREFECT_UI = "https://prefect.example.org"


@pytest.fixture
def trained_lake(configure):
    """Settings whose lake holds four generated clean months (the ETL's output)."""
    settings = configure()
    frame = generate_incidents(*MONTHS, rows_per_month=1500, seed=21)
    lake = Lake.from_settings(settings)
    for month, rows in frame.groupby(frame["date"].dt.strftime("%Y-%m")):
        lake.write(CLEAN_CRIMES, rows.reset_index(drop=True), month)
    return settings


def test_training_registers_a_challenger_with_everything_logged(trained_lake, configure):
    settings = configure(mlflow_public_url=f"{MLFLOW_UI}/", prefect_public_url=PREFECT_UI)
    first = train(holdout_months=1, promote_if_none=True, classifier="logistic_regression")
    second = train(holdout_months=1, promote_if_none=True, classifier="logistic_regression")

    client = MlflowClient(settings.mlflow.tracking_uri)
    name = settings.model_name
    assert first["promoted"] and not second["promoted"]
    champion = client.get_model_version_by_alias(name, CHAMPION)
    challenger = client.get_model_version_by_alias(name, CHALLENGER)
    assert str(champion.version) == first["version"] == "1"
    assert str(challenger.version) == second["version"] == "2"

    run = client.get_run(first["run_id"])
    # Links at the public URLs: the run and version pages, and back to the Prefect flow run.
    assert (
        first["run_url"]
        == f"{MLFLOW_UI}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    )
    assert first["version_url"] == f"{MLFLOW_UI}/#/models/{name}/versions/1"
    flow_run_url = run.data.tags["prefect.flow_run_url"]
    assert re.fullmatch(rf"{PREFECT_UI}/runs/flow-run/[0-9a-f-]{{36}}", flow_run_url)
    assert champion.tags["prefect.flow_run_url"] == flow_run_url
    assert run.data.params["split.holdout"] == "2024-04..2024-04"
    assert run.data.params["split.validation"] == "2024-03..2024-03"
    assert 0.5 < run.data.metrics["holdout.model.roc_auc"] <= 1
    assert run.data.metrics["holdout.baseline.roc_auc"] == 0.5
    assert {i.dataset.name.split("-")[0] for i in run.inputs.dataset_inputs} >= {"train"}
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {f"plots/{p}.png" for p in ("roc", "calibration", "permutation_importance")} <= artifacts

    lineage = json.loads(
        Path(client.download_artifacts(run.info.run_id, "lineage.json")).read_text()
    )
    assert lineage["months"] == ["2024-01", "2024-02", "2024-03", "2024-04"]
    assert all(len(h) == 64 for h in lineage["clean_sha256"].values())
    reference = pd.read_parquet(client.download_artifacts(run.info.run_id, "reference"))
    assert list(reference.columns) == [*SODA_COLUMNS, "arrest_probability"]
    assert reference["date"].max() < pd.Timestamp("2024-04-01")  # training period only
    assert reference["arrest_probability"].between(0, 1).all()
    # The per-area audit: tables always; the map skipped (no boundaries in this lake), said so.
    audit = {a.path for a in client.list_artifacts(run.info.run_id, "audit")}
    assert audit == {
        f"audit/{t}.csv" for t in ("per_district", "per_community_area", "largest_gaps")
    }
    assert "map skipped" in _artifact_markdown("training-summary")


def test_champion_loads_with_the_reviewed_allow_list_and_scores_raw_rows(trained_lake):
    train(holdout_months=1, promote_if_none=True, classifier="logistic_regression")
    loaded = load_model(trained_lake, CHAMPION)
    rows = generate_incidents("2024-05", "2024-05", rows_per_month=50, seed=2)
    proba = loaded.model.predict_proba(rows)[:, 1]
    assert loaded.version == "1" and loaded.alias == CHAMPION
    assert np.isfinite(proba).all() and ((proba >= 0) & (proba <= 1)).all()


def test_a_tampered_allow_list_is_refused(trained_lake):
    train(holdout_months=1, promote_if_none=True, classifier="logistic_regression")
    [mlmodel] = (Path(trained_lake.home) / "mlartifacts").rglob("MLmodel")
    text = mlmodel.read_text()
    mlmodel.write_text(
        text.replace("skops_trusted_types:", "skops_trusted_types:\n    - os.system", 1)
    )
    # Two layers refuse it: the files no longer match the hash recorded at registration...
    with pytest.raises(UntrustedModelError, match="changed after registration"):
        load_model(trained_lake, CHAMPION)
    # ...and with the hash re-recorded (a registry writer), the allow-list check still does.
    client = mlflow_client(trained_lake)
    record_content_hash(client, trained_lake, "1")
    with pytest.raises(UntrustedModelError, match=r"os\.system"):
        load_model(trained_lake, CHAMPION)


def test_no_champion_is_a_clear_lookup_error(trained_lake):
    with pytest.raises(LookupError, match="champion"):
        load_model(trained_lake, CHAMPION)


@pytest.mark.slow
def test_mlflow_loads_the_champion_in_a_fresh_process(trained_lake, tmp_path):
    train(holdout_months=1, promote_if_none=True, classifier="logistic_regression")
    rows = generate_incidents("2024-05", "2024-05", rows_per_month=20, seed=2)
    rows.to_parquet(tmp_path / "rows.parquet")
    script = f"""
import mlflow, pandas as pd
mlflow.set_tracking_uri({trained_lake.mlflow.tracking_uri!r})
rows = pd.read_parquet({str(tmp_path / "rows.parquet")!r})
sk = mlflow.sklearn.load_model("models:/chicago-arrest@champion")
print(sk.predict_proba(rows)[:, 1].round(6).tolist())
py = mlflow.pyfunc.load_model("models:/chicago-arrest@champion")
print(pd.DataFrame(py.predict(rows)).iloc[:, 1].round(6).tolist())
"""
    # MLflow 3.17 refuses to deserialize any model unless this is set
    # (see crimeflow/stores/registry.py).
    env = child_environment({"MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"})
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    sklearn_line, pyfunc_line = done.stdout.strip().splitlines()[-2:]
    expected = load_model(trained_lake, CHAMPION).model.predict_proba(rows)[:, 1].round(6)
    assert json.loads(sklearn_line) == expected.tolist()
    assert json.loads(pyfunc_line) == expected.tolist()


def _artifact_markdown(key: str) -> str:
    """The newest Prefect artifact with `key`, as markdown."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    return sorted(found, key=lambda a: a.created)[-1].data


@pytest.fixture
def audit_lake(configure):
    """Like `trained_lake`, with a holdout month large enough for districts of ≥ 200 rows."""
    settings = configure()
    lake = Lake.from_settings(settings)
    for month, rows in (("2024-01", 1500), ("2024-02", 1500), ("2024-03", 1500), ("2024-04", 6000)):
        frame = generate_incidents(month, month, rows_per_month=rows, seed=21)
        lake.write(CLEAN_CRIMES, frame.reset_index(drop=True), month)
    return settings


def test_every_run_logs_the_per_area_audit_and_maps_it_with_boundaries(audit_lake):
    import geopandas as gpd
    from shapely.geometry import box

    from crimeflow.domain.geography import COMMUNITY_AREAS
    from crimeflow.stores.boundaries import write_boundaries

    # Community areas in the lake (squares standing in for the real shapes): the map is drawn.
    # (Without them the map is skipped and said so: the first test of this module.)
    squares = gpd.GeoDataFrame(
        {"community_area": pd.array(range(1, 78), dtype="Int64"), "name": "area"},
        geometry=[box(i % 10, i // 10, i % 10 + 1, i // 10 + 1) for i in range(77)],
        crs="EPSG:3435",
    )
    write_boundaries(Lake.from_settings(audit_lake), COMMUNITY_AREAS, squares)
    result = train(holdout_months=1, classifier="logistic_regression")

    client = MlflowClient(audit_lake.mlflow.tracking_uri)
    audit = {a.path for a in client.list_artifacts(result["run_id"], "audit")}
    assert audit == {
        "audit/per_district.csv",
        "audit/per_community_area.csv",
        "audit/largest_gaps.csv",
        "audit/community_area_pr_auc.png",
    }
    per_district = pd.read_csv(
        client.download_artifacts(result["run_id"], "audit/per_district.csv"), dtype={"area": str}
    )
    assert per_district["rows"].sum() == result["splits"]["holdout"]  # every holdout row, once
    assert per_district["area"].str.fullmatch(r"\d{3}|pooled").all()
    assert (~per_district["pooled"]).sum() >= 5  # districts audited on their own
    metrics = client.get_run(result["run_id"]).data.metrics
    own = per_district[~per_district["pooled"]]
    assert metrics["audit.district.worst_pr_auc"] == own["pr_auc"].min()
    summary = _artifact_markdown("training-summary")
    assert "## Per-area audit (holdout)" in summary and "map skipped" not in summary
    assert f"run_uuid={result['run_id']}" in summary
    assert "| district | PR-AUC |" in summary
