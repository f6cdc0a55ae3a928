"""The monthly-analysis flow on a lake of generated months: lake files, artifact, errors."""

from __future__ import annotations

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter

from crimeflow.domain.analysis_report import NO_MAP
from crimeflow.domain.enrich import StationIndex, enrich
from crimeflow.domain.geography import COMMUNITY_AREAS
from crimeflow.standins.generate import generate_incidents
from crimeflow.stores.analysis_reports import AnalysisReports, html_key, json_key
from crimeflow.stores.boundaries import write_boundaries
from crimeflow.stores.lake import FEATURES, Lake
from flows.analysis import monthly_analysis


@pytest.fixture(scope="module")
def features() -> dict[str, pd.DataFrame]:
    """Three generated, enriched months (what the ETL writes to the features zone)."""
    frame = enrich(
        generate_incidents("2024-01", "2024-03", rows_per_month=2000, seed=5),
        StationIndex.packaged(),
    )
    return {
        m: g.reset_index(drop=True) for m, g in frame.groupby(frame["date"].dt.strftime("%Y-%m"))
    }


def fill(lake: Lake, features: dict[str, pd.DataFrame]) -> None:
    for month, frame in features.items():
        lake.write(FEATURES, frame, month)


def test_report_of_the_newest_month_goes_to_the_lake_and_an_artifact(features, configure):
    settings = configure(etl_training_window_months=2)
    lake = Lake.from_settings(settings)
    fill(lake, features)
    state = monthly_analysis(return_state=True)
    result = state.result()

    assert result["month"] == "2024-03" and result["window"] == ["2024-02", "2024-03"]
    assert result["incidents"] == features["2024-03"]["arrest"].notna().sum()
    assert result["url"] == f"{settings.api.public_url}/analysis/2024-03" and not result["map"]
    page = lake.read_bytes(html_key("2024-03")).decode()
    assert NO_MAP in page and page.count("data:image/png;base64,") == 1
    numbers = lake.read_json(json_key("2024-03"))
    assert numbers["overall"]["incidents"] == result["incidents"]
    assert numbers["chi_square_district"]["statistic"] == pytest.approx(
        result["chi_square_district"]
    )
    assert AnalysisReports(lake).latest_month() == "2024-03"
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["analyst-report"])),
            flow_run_filter=FlowRunFilter(id={"any_": [state.state_details.flow_run_id]}),
        )
    assert "# Analyst report 2024-03" in artifact.data and result["url"] in artifact.data


def test_with_community_areas_the_report_has_its_map(features, configure, real_boundaries):
    settings = configure()
    lake = Lake.from_settings(settings)
    fill(lake, features)
    write_boundaries(lake, COMMUNITY_AREAS, real_boundaries["community_areas"])
    result = monthly_analysis(month="2024-02")
    assert result["map"] and result["window"] == ["2024-01", "2024-02"]
    page = lake.read_bytes(html_key("2024-02")).decode()
    assert NO_MAP not in page and page.count("data:image/png;base64,") == 2


def test_a_month_the_lake_lacks_fails_naming_it(features, configure):
    lake = Lake.from_settings(configure())
    fill(lake, features)
    with pytest.raises(ValueError, match="2024-07 has no features partition"):
        monthly_analysis(month="2024-07")


def test_cli_writes_the_report_and_names_a_missing_month(features, configure):
    from typer.testing import CliRunner

    from crimeflow.cli.main import app

    lake = Lake.from_settings(configure())
    fill(lake, features)
    missing = CliRunner().invoke(app, ["analysis", "--month", "2023-12"])
    assert missing.exit_code == 1 and "2023-12 has no features partition" in missing.output
    done = CliRunner().invoke(app, ["analysis"])
    assert done.exit_code == 0, done.output
    assert "2024-03 (window 2024-01..2024-03)" in done.output and "no map" in done.output
    assert lake.exists(html_key("2024-03"))
