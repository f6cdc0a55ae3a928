"""Issue #16 on real data: the per-district table and the community-area map of the Sep-Oct 2018
holdout, through scripts/audit_2018.py's own functions.

A small model (HistGradientBoosting, 50 trees, fitted on 20k Jan-Jul 2018 rows, calibrated on
August) keeps it cheap; the full-size figures are in docs/model-and-data.md. Skips without
../shared/data/real.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from crimeflow.domain.audit import POOLED
from crimeflow.domain.model import ModelConfig
from crimeflow.stores.files import read_incidents_file

pytestmark = [pytest.mark.real_data, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "audit_2018.py"
CHEAP = ModelConfig(
    classifier="hist_gradient_boosting", hgb_max_iter=50, mi_max_rows=5_000, n_jobs=1
)


@pytest.fixture(scope="module")
def script() -> ModuleType:
    """scripts/audit_2018.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("audit_2018", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_2018_holdout_audit_per_district_and_its_map(
    real_data_dir: Path, script: ModuleType, tmp_path: Path
) -> None:
    frame = read_incidents_file(real_data_dir / script.FILE_2018)
    fit_rows, valid_rows, holdout = script.split_2018(frame)
    trained = script.fit_2018(fit_rows, valid_rows, CHEAP, fit_sample=20_000)
    tables, seconds = script.audit_holdout_2018(trained, holdout)
    per_district = tables["per_district"]
    print(
        f"\n{script.format_districts(per_district)}\n\n{script.format_gaps(tables['largest_gaps'])}"
    )
    print(f"audit of {len(holdout):,} rows: {seconds:.2f} s")

    own = per_district[~per_district["pooled"]]
    assert len(own) == 22  # every district in use has ≥ 200 Sep-Oct rows
    assert per_district["rows"].sum() == len(holdout)
    assert POOLED not in set(own["area"])
    assert (own["roc_auc"] > 0.75).all()
    assert (own["pr_auc_low"] < own["pr_auc"]).all() and (own["pr_auc"] < own["pr_auc_high"]).all()
    # Where arrests are rarer the model's precision is lower: PR-AUC tracks the arrest rate.
    assert script.rate_correlation(per_district) > 0.7
    worst = tables["largest_gaps"].query("rank == 1 and by == 'district'").set_index("metric")
    assert worst.loc["pr_auc", "intervals_apart"]  # a real gap, not noise
    community = tables["per_community_area"]
    assert (~community["pooled"]).sum() >= 55  # 59 of the 77 have ≥ 200 Sep-Oct rows
    assert community.iloc[-1]["area"] == POOLED and community.iloc[-1]["areas_pooled"] >= 10

    written = script.write_maps(tables, real_data_dir / "geo", tmp_path)
    assert [p.name for p in written] == [
        "audit_2018_community_area_pr_auc.png",
        "audit_2018_district_pr_auc.png",
    ]
    assert all(p.stat().st_size > 10_000 for p in written)
