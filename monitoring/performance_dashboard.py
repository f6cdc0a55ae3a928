"""The performance series for the Evidently workspace: one run per monitor check.

Each run carries, as Evidently `MeanValue` metrics of a one-row dataset, the newest window's
realized PR-AUC and ROC-AUC (matured outcomes), the newest window's CBPE estimate, and the
champion's holdout PR-AUC. The project "crimeflow performance" plots them over the checks next
to the drift project, so a person sees a realized drop (concept drift) that the estimate, which
assumes P(arrest | inputs) is unchanged, cannot show.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from monitoring.outcomes import PerformanceCheck

if TYPE_CHECKING:
    from evidently.core.report import Snapshot
    from evidently.ui.workspace import Project

PERFORMANCE_PROJECT_NAME = "crimeflow performance"
PERFORMANCE_PROJECT_DESCRIPTION = (
    "Realized (matured arrest labels) and estimated (CBPE) PR-AUC and ROC-AUC of the served"
    " champion against its holdout figure (one run per monitoring check)."
)
# (title, [(legend, value name)]): the value names are the one-row dataset's columns.
PANELS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        "PR-AUC: realized, estimated, champion holdout",
        (
            ("realized", "realized_pr_auc"),
            ("estimated (CBPE)", "estimated_pr_auc"),
            ("champion holdout", "champion_pr_auc"),
        ),
    ),
    (
        "ROC-AUC: realized, estimated, champion holdout",
        (
            ("realized", "realized_roc_auc"),
            ("estimated (CBPE)", "estimated_roc_auc"),
            ("champion holdout", "champion_roc_auc"),
        ),
    ),
)


def _newest(check: PerformanceCheck, kind: str) -> tuple[str | None, dict[str, Any] | None]:
    """The newest window that has `kind` ("realized" or "estimated") figures, and them."""
    for window in sorted(check.windows, key=lambda w: w.window, reverse=True):
        figures = getattr(window, kind)
        if figures:
            return window.window, figures
    return None, None


def dashboard_values(check: PerformanceCheck) -> tuple[dict[str, float], dict[str, str]]:
    """The check's plotted values, and which window each kind came from (run metadata)."""
    values: dict[str, float] = {}
    windows: dict[str, str] = {}
    for kind in ("realized", "estimated"):
        window, figures = _newest(check, kind)
        if window is None or figures is None:
            continue
        windows[f"{kind}_window"] = window
        for metric in ("pr_auc", "roc_auc"):
            values[f"{kind}_{metric}"] = float(figures[metric]["value"])
    for metric, baseline in (
        ("pr_auc", check.baseline_pr_auc),
        ("roc_auc", check.baseline_roc_auc),
    ):
        if baseline is not None:
            values[f"champion_{metric}"] = float(baseline)
    return values, windows


def performance_snapshot(check: PerformanceCheck, timestamp: datetime) -> Snapshot | None:
    """An Evidently snapshot of the check's values; None when it has no figure at all."""
    values, windows = dashboard_values(check)
    if not values:
        return None
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MeanValue

    frame = pd.DataFrame([values])
    dataset = Dataset.from_pandas(
        frame, data_definition=DataDefinition(numerical_columns=list(values))
    )
    report = Report([MeanValue(column=name) for name in values])
    metadata = {**windows, "model_version": check.model_version or ""}
    return report.run(current_data=dataset, timestamp=timestamp, metadata=metadata)


def add_performance_panels(project: Project) -> None:
    """The performance project's line plots, one point per check."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel

    for title, lines in PANELS:
        values = [
            PanelMetric(legend=legend, metric="MeanValue", metric_labels={"column": name})
            for legend, name in lines
        ]
        project.dashboard.add_panel(line_plot_panel(title=title, values=values, size="full"))
