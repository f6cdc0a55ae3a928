"""The loop on real data: champion on Jan–Jun 2018, Jul–Aug arrive, the challenger is staged on Sep.

The retrain flow ingests the months the lake lacks (Jul–Sep, through the stand-in and the ETL
subflow), trains on the window up to September (fit Jan–Jul, validation Aug, holdout Sep), and
the gate scores both models on September, which neither learnt from.
"""

from __future__ import annotations

import pytest

from crimeflow.contract.months import months_between
from crimeflow.standins.soda import StandinServer
from crimeflow.stores.registry import CHAMPION, mlflow_client, version_by_alias
from flows.etl import monthly_etl
from flows.retrain import retrain
from flows.train import train
from tests.conftest import FILE_2018

pytestmark = [pytest.mark.real_data, pytest.mark.slow, pytest.mark.minutes]


def test_2018_loop_stages_the_challenger_on_september(real_data_dir, configure, hgb_candidate_only):
    with StandinServer(real_data_dir / FILE_2018) as server:
        settings = configure(socrata_url=server.url)
        for month in months_between("2018-01", "2018-06"):
            monthly_etl(month=month)
        first = train(until="2018-06", promote_if_none=True)
        result = retrain(reason="manual", until="2018-09")

    gate = result["gate"]
    print("\n2018 loop: staging", gate["staging"])
    for who in ("candidate", "champion"):
        metrics = gate[f"{who}_metrics"]
        print(
            f"  {who:9} v{gate[f'{who}_version']}: ROC-AUC {metrics['roc_auc']:.4f} "
            f"PR-AUC {metrics['pr_auc']:.4f} calibration gap {metrics['calibration_gap']:+.4f} "
            f"(n={metrics['n']:,})"
        )
    print(
        f"  p99 single row {gate['p99_ms']:.1f} ms; decision: "
        f"{'promoted' if result['promoted'] else 'rejected'} {gate['reasons']}"
    )

    assert first["promoted"] and result["ingested_months"] == ["2018-07", "2018-08", "2018-09"]
    assert gate["staging"].startswith("2018-09 ")
    assert gate["champion_version"] == first["version"]
    assert gate["candidate_metrics"]["n"] > 20_000
    # Both are good models on real data; the newer one has seen the summer.
    assert (
        gate["candidate_metrics"]["roc_auc"] > 0.88 and gate["champion_metrics"]["roc_auc"] > 0.85
    )
    champion = version_by_alias(mlflow_client(settings), settings.model_name, CHAMPION)
    expected = result["trained_version"] if result["promoted"] else first["version"]
    assert str(champion.version) == expected
