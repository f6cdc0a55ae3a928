"""The analyst's monthly report: rates, tests, trend and plots of a month of the lake."""

from __future__ import annotations

from prefect import flow

from crimeflow.contract.links import Links
from crimeflow.contract.settings import get_settings
from crimeflow.domain.analysis_report import NO_MAP
from crimeflow.stores.lake import Lake
from tasks.analysis_steps import (
    compute_analysis,
    load_window,
    publish_report,
)
from tasks.boundary_steps import load_community_areas


@flow(name="monthly-analysis")
def monthly_analysis(month: str | None = None) -> dict:
    """Report on `month` (default: the newest month in the lake) and the window ending there.

    The HTML goes to the lake (reports/analysis/<month>/) and GET /analysis/latest; the key
    numbers go to a Prefect markdown artifact.
    """
    settings = get_settings()
    lake = Lake.from_settings(settings)
    frames = load_window(lake, month, settings.etl.training_window_months)
    analysis = compute_analysis(frames)
    areas = load_community_areas(lake, NO_MAP)
    page_url = Links.from_settings(settings).analysis(analysis.month)
    stored = publish_report(lake, analysis, areas, page_url)
    return {**analysis.key_numbers(), "report": stored, "url": page_url, "map": areas is not None}


if __name__ == "__main__":
    monthly_analysis()
