"""The performance series in the Evidently workspace: values, the project and its runs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from crimeflow.standins.generate import generate_incidents
from crimeflow.stores.lake import Lake
from monitoring.drift import DriftConfig, compute_drift
from monitoring.outcomes import PerformanceCheck, WindowPerformance
from monitoring.performance_dashboard import PERFORMANCE_PROJECT_NAME, dashboard_values
from monitoring.report_store import ReportStore


def _figures(pr_auc: float, roc_auc: float) -> dict:
    interval = lambda v: {"value": v, "low": v - 0.01, "high": v + 0.01, "std_error": 0.005}  # noqa: E731
    return {"pr_auc": interval(pr_auc), "roc_auc": interval(roc_auc)}


def _window(name: str, realized: dict | None, estimated: dict | None) -> WindowPerformance:
    basis = "realized" if realized else "estimated"
    value = (realized or estimated)["pr_auc"]["value"]  # type: ignore[index]
    return WindowPerformance(
        name, 500, 500, 500 if realized else 0, realized, estimated, None, basis, value, None, False
    )


@pytest.fixture
def check() -> PerformanceCheck:
    """September has matured labels (realized 0.61); October only an estimate (0.77)."""
    windows = [
        _window("2026-09", _figures(0.61, 0.84), _figures(0.76, 0.90)),
        _window("2026-10", None, _figures(0.77, 0.91)),
    ]
    return PerformanceCheck("3", 0.75, 0.90, 0.05, 60, "2026-11-02", windows)


def test_values_take_the_newest_window_of_each_kind_and_the_champion(check) -> None:
    values, windows = dashboard_values(check)
    assert values == {
        "realized_pr_auc": 0.61,
        "realized_roc_auc": 0.84,
        "estimated_pr_auc": 0.77,
        "estimated_roc_auc": 0.91,
        "champion_pr_auc": 0.75,
        "champion_roc_auc": 0.90,
    }
    assert windows == {"realized_window": "2026-09", "estimated_window": "2026-10"}


def test_a_check_without_figures_plots_nothing() -> None:
    empty = PerformanceCheck(None, None, None, 0.05, 60, "2026-11-02", [])
    assert dashboard_values(empty) == ({}, {})


def test_each_saved_check_is_a_run_of_the_performance_project(tmp_path: Path, check) -> None:
    from evidently.ui.workspace import Workspace

    traffic = generate_incidents("2024-03", "2024-03", rows_per_month=40, seed=2)
    result, _ = compute_drift(
        traffic.assign(arrest_probability=0.2), traffic.drop(columns=["arrest"]), DriftConfig()
    )
    result = msgspec.structs.replace(
        result, outcome_performance=check.as_dict(), checked_at=datetime(2026, 11, 2, tzinfo=UTC)
    )
    store = ReportStore(Lake(str(tmp_path / "lake")), tmp_path / "evidently")
    store.save(result, None)
    store.save(result, None)

    workspace = Workspace(str(tmp_path / "evidently"))
    (project,) = workspace.search_project(PERFORMANCE_PROJECT_NAME)
    runs = workspace.list_runs(project.id)
    assert len(runs) == 2
    titles = {panel.title for panel in workspace.get_dashboard(project.id).panels}
    assert any(title.startswith("PR-AUC") for title in titles)
    run = workspace.get_run(project.id, runs[0])
    assert run is not None
    plotted = sorted(float(v.value) for v in run.metric_results.values())
    assert plotted == sorted(dashboard_values(check)[0].values())
    assert run.metadata["realized_window"] == "2026-09"
