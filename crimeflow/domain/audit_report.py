"""The audit a training run records, pure: the per-area tables of the holdout, the community-area
map (when the lake holds the boundaries) and the short section of the Prefect artifact.

MLflow I/O lives in `crimeflow.stores.training_log.log_audit`; the artifact names are here so
the logger, the summary and the docs agree on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from crimeflow.contract.schema import LABEL
from crimeflow.domain.audit import MIN_AREA_ROWS, POOLED, audit_tables
from crimeflow.domain.plots import area_map_figure

AUDIT_DIR = "audit"
MAP_METRIC = "pr_auc"
MAP_ARTIFACT = f"{AUDIT_DIR}/community_area_{MAP_METRIC}.png"
METRIC_LABELS = {
    "roc_auc": "ROC-AUC",
    "pr_auc": "PR-AUC",
    "calibration_gap": "calibration gap",
    "fpr": "false-positive rate",
    "fnr": "false-negative rate",
}
NO_BOUNDARIES = (
    "map skipped: the lake holds no community-area boundaries (the ETL's boundary pull "
    "writes raw/boundaries/community_areas)"
)


@dataclass
class HoldoutAudit:
    """The audit tables by artifact name, the map (None when skipped) and why it was skipped."""

    tables: dict[str, pd.DataFrame]
    map_figure: Figure | None
    map_note: str | None = None

    def artifact_names(self) -> list[str]:
        """Where each piece goes in the MLflow run (`audit/per_district.csv`, ...)."""
        names = [f"{AUDIT_DIR}/{name}.csv" for name in self.tables]
        return names + ([MAP_ARTIFACT] if self.map_figure is not None else [])


def holdout_audit(
    estimator: Any, holdout: pd.DataFrame, threshold: float, community_areas: Any | None
) -> HoldoutAudit:
    """Audit the labelled holdout rows per district and community area, and map PR-AUC."""
    labelled = holdout[holdout[LABEL].notna()].reset_index(drop=True)
    y = labelled[LABEL].astype("int64").to_numpy()
    proba = estimator.predict_proba(labelled)[:, 1]
    tables = audit_tables(labelled, y, proba, threshold)
    if community_areas is None:
        return HoldoutAudit(tables, None, NO_BOUNDARIES)
    title = (
        f"Holdout {MAP_METRIC.replace('_', '-').upper()} by community area "
        f"(hatched: < {MIN_AREA_ROWS} rows, pooled)"
    )
    figure = area_map_figure(tables["per_community_area"], community_areas, MAP_METRIC, title)
    return HoldoutAudit(tables, figure, None)


def audit_metrics(audit: HoldoutAudit) -> dict[str, float]:
    """MLflow metrics: the worst area's value per layer and metric (`audit.district.min_pr_auc`)."""
    metrics: dict[str, float] = {}
    gaps = audit.tables["largest_gaps"]
    for row in gaps[gaps["rank"] == 1].itertuples():
        kind = "max_abs" if row.metric == "calibration_gap" else "worst"
        value = float(row.value)
        if math.isfinite(value):
            metrics[f"audit.{row.by}.{kind}_{row.metric}"] = value
    return metrics


def _interval(row: Any) -> str:
    """'0.532 [0.498, 0.566]'."""
    return f"{row.value:.3f} [{row.low:.3f}, {row.high:.3f}]"


def _pool_line(table: pd.DataFrame, layer: str) -> str:
    """How many areas of a layer were audited on their own, and what was pooled."""
    own = int((~table["pooled"]).sum())
    pool = table[table["area"] == POOLED]
    if pool.empty:
        return f"{own} {layer}s audited on their own."
    areas, rows = int(pool["areas_pooled"].iloc[0]), int(pool["rows"].iloc[0])
    return (
        f"{own} {layer}s audited on their own; {areas} with < {MIN_AREA_ROWS} rows and rows "
        f"without a {layer} pooled ({rows:,} rows)."
    )


def audit_markdown(audit: HoldoutAudit, map_url: str | None = None) -> str:
    """The artifact's audit section: the worst area per metric, pooling, and the map."""
    gaps = audit.tables["largest_gaps"]
    lines = [
        "## Per-area audit (holdout)",
        "",
        _pool_line(audit.tables["per_district"], "district"),
        _pool_line(audit.tables["per_community_area"], "community area"),
        "",
        "| by | metric | worst area [95 % CI] | rows | best area | gap | CIs apart |",
        "|---|---|---|---:|---|---:|---|",
    ]
    for row in gaps[gaps["rank"] == 1].itertuples():
        lines.append(
            f"| {row.by} | {METRIC_LABELS[row.metric]} | {row.area}: {_interval(row)} "
            f"| {row.rows:,} | {row.best_area}: {row.best_value:.3f} | {row.gap_to_best:.3f} "
            f"| {'yes' if row.intervals_apart else 'no'} |"
        )
    files = ", ".join(f"`{name}`" for name in audit.artifact_names())
    lines += ["", f"In the MLflow run: {files}."]
    if audit.map_figure is None:
        lines += ["", f"_{audit.map_note}_"]
    elif map_url:
        lines += ["", f"![{MAP_ARTIFACT}]({map_url})"]
    return "\n".join(lines)
