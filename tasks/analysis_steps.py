"""Prefect tasks of the analyst's monthly report: read the window, publish the report."""

from __future__ import annotations

from datetime import UTC, datetime

import geopandas as gpd
import pandas as pd
from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact

from crimeflow.domain.analysis import Analysis, analyse, analysis_window
from crimeflow.domain.analysis_plots import area_map_png, heat_map_png
from crimeflow.domain.analysis_report import report_html, report_markdown
from crimeflow.stores.analysis_reports import AnalysisReports
from crimeflow.stores.lake import FEATURES, Lake
from tasks import step


@step
def load_window(lake: Lake, month: str | None, size: int) -> dict[str, pd.DataFrame]:
    """The features partitions of the report's window, by month (the report month is newest)."""
    window = analysis_window(lake.months(FEATURES), month, size)
    return {each: lake.read(FEATURES, each) for each in window}


@step
def compute_analysis(frames: dict[str, pd.DataFrame]) -> Analysis:
    """The report's statistics for the window's newest month."""
    return analyse(max(frames), frames)


@step
def publish_report(
    lake: Lake, analysis: Analysis, areas: gpd.GeoDataFrame | None, page_url: str
) -> str:
    """Render the plots and the HTML, store them in the lake, add the markdown artifact."""
    generated_at = datetime.now(UTC).isoformat(timespec="seconds")
    map_png = None if areas is None else area_map_png(analysis, areas)
    page = report_html(analysis, heat_map_png(analysis), map_png, generated_at)
    stored = AnalysisReports(lake).save(analysis.month, page, analysis.to_json(), generated_at)
    create_markdown_artifact(
        key="analyst-report",
        markdown=report_markdown(analysis, page_url),
        description=f"Analyst report {analysis.month}",
    )
    get_run_logger().info("analyst report %s: %s (%s)", analysis.month, page_url, stored)
    return stored
