"""The drift report store: each check's HTML, snapshot and verdict in the lake, and an Evidently UI.

Layout in the lake (keys relative to `Settings.lake_url`):

    reports/drift/index.json                 every check, newest first (what GET /reports lists)
    reports/drift/<id>/report.html           Evidently's standalone HTML report (GET /reports/{id})
    reports/drift/<id>/snapshot.json         the full Evidently snapshot (`Snapshot.loads` reads it)
    reports/drift/<id>/result.json           the typed `DriftResult`

`<id>` is the check's UTC time plus a random suffix, e.g. `20261123T041500Z-3f9a`: it sorts by
time and two checks in the same second still get different folders. A check with too little
data has a result and a short HTML page, but no snapshot.

Each snapshot is also added to a local Evidently workspace (default `<CRIMEFLOW_HOME>/evidently`),
in one project, "crimeflow drift", whose dashboard plots the share and number of drifted columns,
the prediction drift score and the classification quality over the runs. A second project,
"crimeflow performance", plots each check's realized and estimated (CBPE) PR-AUC and ROC-AUC
against the champion's holdout figures (`monitoring/performance_dashboard.py`). Open them with:

    evidently ui --workspace <CRIMEFLOW_HOME>/evidently --port 8001

(Evidently 0.7's `ui` command takes `--workspace`, `--host` (default 127.0.0.1) and `--port`
(default 8000, which the prediction API uses: hence 8001).)

The index is rewritten atomically (the lake writes a temporary object, then renames or copies
it), after the report's own files, so an entry never points at a missing report. Two checks that
finish at the same moment could each rewrite the index without the other's entry; the reports
themselves are never lost and `rebuild_index()` restores the list from the report folders.
"""

from __future__ import annotations

import html as html_text
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from monitoring.drift import DriftResult
from monitoring.outcomes import PerformanceCheck, performance_html, with_section
from monitoring.performance_dashboard import (
    PERFORMANCE_PROJECT_DESCRIPTION,
    PERFORMANCE_PROJECT_NAME,
    add_performance_panels,
    performance_snapshot,
)

if TYPE_CHECKING:
    from evidently.core.report import Snapshot
    from evidently.ui.workspace import Project, Workspace

    from crimeflow.stores.lake import Lake

logger = logging.getLogger(__name__)

REPORTS_PREFIX = "reports/drift"
INDEX_KEY = f"{REPORTS_PREFIX}/index.json"
HTML_FILE = "report.html"
SNAPSHOT_FILE = "snapshot.json"
RESULT_FILE = "result.json"
PROJECT_NAME = "crimeflow drift"
PROJECT_DESCRIPTION = (
    "Drift of the prediction API's traffic against the champion's training reference"
    " (one run per monitoring check)."
)
WORKSPACE_DIR = "evidently"
_ID_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{4}$")


def new_report_id(created_at: datetime) -> str:
    """A sortable, unique folder name: UTC time to the second plus four random hex digits."""
    moment = created_at.astimezone(UTC) if created_at.tzinfo else created_at
    return f"{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def is_report_id(value: str) -> bool:
    """Whether `value` has the shape of a report id (anything else is never a lake key)."""
    return bool(_ID_RE.fullmatch(value))


def _iso(value: datetime | None) -> str | None:
    """ISO 8601 text of a datetime (None stays None)."""
    return None if value is None else value.isoformat()


def index_entry(report_id: str, result: DriftResult, workspace_run_id: str | None) -> dict:
    """The summary of one check that the index (and GET /reports) lists."""
    return {
        "id": report_id,
        "created_at": _iso(result.checked_at),
        "window_start": _iso(result.window_start),
        "window_end": _iso(result.window_end),
        "model_version": result.model_version,
        "status": result.status,
        "drift_detected": result.drift_detected,
        "drift_share": result.drift_share,
        "drifted_columns": list(result.drifted_columns),
        "prediction_drift": (
            None if result.prediction_drift is None else result.prediction_drift.drifted
        ),
        "current_rows": result.current_rows,
        "reference_rows": result.reference_rows,
        "workspace_run_id": workspace_run_id,
    }


def _newest_first(entries: list[dict]) -> list[dict]:
    """Entries sorted by creation time (then id), newest first, one per id."""
    unique = {entry["id"]: entry for entry in entries}
    return sorted(unique.values(), key=lambda e: (e.get("created_at") or "", e["id"]), reverse=True)


def insufficient_data_html(result: DriftResult) -> str:
    """A small standalone page for a check that had too little data to decide."""
    rows = [
        ("status", "insufficient data: no drift verdict"),
        ("window", f"{_iso(result.window_start)} to {_iso(result.window_end)}"),
        ("model version", result.model_version or "unknown"),
        ("current rows", str(result.current_rows)),
        ("reference rows", str(result.reference_rows)),
        ("checked at", _iso(result.checked_at) or ""),
        *(("reason", reason) for reason in result.reasons),
    ]
    cells = "".join(
        f"<tr><th>{html_text.escape(k)}</th><td>{html_text.escape(str(v))}</td></tr>"
        for k, v in rows
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>crimeflow drift check</title>"
        "</head><body><h1>Drift check: insufficient data</h1>"
        f"<table>{cells}</table></body></html>"
    )


@dataclass(frozen=True)
class _Series:
    """One line of a dashboard plot: an Evidently metric, narrowed by labels if given."""

    legend: str
    metric: str
    labels: tuple[tuple[str, str], ...] = ()


# The dashboard's line plots, in order: (title, size, lines).
_DASHBOARD_PLOTS: tuple[tuple[str, str, tuple[_Series, ...]], ...] = (
    (
        "Share of drifted columns",
        "half",
        (_Series("share", "DriftedColumnsCount", (("value_type", "share"),)),),
    ),
    (
        "Drifted columns",
        "half",
        (_Series("count", "DriftedColumnsCount", (("value_type", "count"),)),),
    ),
    (
        "Prediction drift (arrest probability)",
        "half",
        (_Series("probability", "ValueDrift", (("column", "probability"),)),),
    ),
    (
        "Drift score: offence and location",
        "half",
        tuple(
            _Series(column, "ValueDrift", (("column", column),))
            for column in ("primary_type", "location_description", "district")
        ),
    ),
    (
        "Quality on rows with feedback labels",
        "full",
        (
            _Series("ROC AUC", "RocAuc"),
            _Series("precision", "Precision"),
            _Series("recall", "Recall"),
        ),
    ),
)


def add_dashboard_panels(project: Project) -> None:
    """Panels that plot each run's drift and quality values over time."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel, text_panel

    dashboard = project.dashboard
    dashboard.add_panel(
        text_panel(
            title="crimeflow: drift of served traffic",
            description="One point per monitoring check; reports also under GET /reports.",
        )
    )
    for title, size, lines in _DASHBOARD_PLOTS:
        values = [
            PanelMetric(legend=line.legend, metric=line.metric, metric_labels=dict(line.labels))
            for line in lines
        ]
        dashboard.add_panel(line_plot_panel(title=title, values=values, size=size))


class ReportStore:
    """Drift reports in the lake (index, HTML, snapshot, result) and in an Evidently workspace."""

    def __init__(
        self, lake: Lake, workspace_path: str | Path, project_name: str = PROJECT_NAME
    ) -> None:
        self.lake = lake
        self.workspace_path = Path(workspace_path)
        self.project_name = project_name
        self._workspace: Workspace | None = None

    # --- the Evidently workspace --------------------------------------------------------------

    def workspace(self) -> Workspace:
        """The local Evidently workspace (created on first use)."""
        if self._workspace is None:
            from evidently.ui.workspace import Workspace

            self.workspace_path.mkdir(parents=True, exist_ok=True)
            self._workspace = Workspace.create(str(self.workspace_path))
        return self._workspace

    def project(self) -> Project:
        """The drift project, created with its dashboard the first time and reused after."""
        return self._project(self.project_name, PROJECT_DESCRIPTION, add_dashboard_panels)

    def performance_project(self) -> Project:
        """The performance project (realized vs estimated series), created on first use."""
        return self._project(
            PERFORMANCE_PROJECT_NAME, PERFORMANCE_PROJECT_DESCRIPTION, add_performance_panels
        )

    def _project(
        self, name: str, description: str, add_panels: Callable[[Project], None]
    ) -> Project:
        """The workspace's project `name`, created with its dashboard the first time."""
        workspace = self.workspace()
        found = workspace.search_project(name)
        if found:
            # Oldest first by id (uuid7 sorts by creation), so a duplicate never wins.
            return min(found, key=lambda p: str(p.id))
        project = workspace.create_project(name, description=description)
        add_panels(project)
        return project

    def _add_to_workspace(
        self, snapshot: Snapshot, report_id: str, project: Callable[[], Project]
    ) -> str | None:
        """Add the run to the workspace; None (logged) if the workspace cannot take it."""
        try:
            ref = self.workspace().add_run(
                project().id, snapshot, include_data=False, name=report_id
            )
        except Exception:
            # The lake is the record the API serves; a broken UI workspace must not lose it.
            logger.exception("could not add report %s to %s", report_id, self.workspace_path)
            return None
        return str(ref.id)

    # --- writing --------------------------------------------------------------------------------

    def save(self, result: DriftResult, snapshot: Snapshot | None) -> str:
        """Store one check: its files, a workspace run and an index entry; its report id."""
        report_id = new_report_id(result.checked_at)
        while self.lake.exists(f"{REPORTS_PREFIX}/{report_id}/{RESULT_FILE}"):
            # Same second and same random suffix: rare, but a report must never overwrite one.
            report_id = new_report_id(result.checked_at)
        folder = f"{REPORTS_PREFIX}/{report_id}"
        if snapshot is None:
            page = insufficient_data_html(result)
            workspace_run_id = None
        else:
            page = snapshot.get_html_str(as_iframe=False)
            self.lake.write_bytes(f"{folder}/{SNAPSHOT_FILE}", snapshot.dumps().encode("utf-8"))
            workspace_run_id = self._add_to_workspace(snapshot, report_id, self.project)
        if result.outcome_performance is not None:
            check = PerformanceCheck.from_dict(result.outcome_performance)
            page = with_section(page, performance_html(check))
            timestamp = result.checked_at.astimezone(UTC).replace(tzinfo=None)
            series = performance_snapshot(check, timestamp)
            if series is not None:
                self._add_to_workspace(series, report_id, self.performance_project)
        self.lake.write_bytes(f"{folder}/{HTML_FILE}", page.encode("utf-8"))
        self.lake.write_bytes(f"{folder}/{RESULT_FILE}", result.to_json())
        # Last: the index only ever lists reports whose files are all in place.
        entry = index_entry(report_id, result, workspace_run_id)
        self.lake.write_json(INDEX_KEY, _newest_first([entry, *self.list()]))
        return report_id

    def rebuild_index(self) -> list[dict]:
        """Re-create the index from the report folders (after a lost update or a manual fix)."""
        base = self.lake.url_for(REPORTS_PREFIX)
        self.lake.fs.invalidate_cache(base)
        previous = {e.get("id"): e for e in self.list()}
        entries = []
        for path in self.lake.fs.glob(f"{base}/*/{RESULT_FILE}"):
            report_id = Path(str(path)).parent.name
            result = self.result(report_id) if is_report_id(report_id) else None
            if result is not None:
                run_id = previous.get(report_id, {}).get("workspace_run_id")
                entries.append(index_entry(report_id, result, run_id))
        ordered = _newest_first(entries)
        self.lake.write_json(INDEX_KEY, ordered)
        return ordered

    # --- reading --------------------------------------------------------------------------------

    def list(self) -> list[dict]:
        """Every stored check's summary, newest first (empty when none yet)."""
        entries = self.lake.read_json(INDEX_KEY)
        return list(entries) if isinstance(entries, list) else []

    def latest(self) -> dict | None:
        """The newest check's summary, or None."""
        entries = self.list()
        return entries[0] if entries else None

    def get(self, report_id: str) -> dict | None:
        """One check's summary, or None for an unknown id."""
        return next((e for e in self.list() if e.get("id") == report_id), None)

    def _read(self, report_id: str, name: str) -> bytes | None:
        """One file of a report; None for an unknown or malformed id."""
        if not is_report_id(report_id):
            return None
        return self.lake.read_bytes(f"{REPORTS_PREFIX}/{report_id}/{name}")

    def html(self, report_id: str) -> bytes | None:
        """The report's HTML page, or None."""
        return self._read(report_id, HTML_FILE)

    def snapshot_json(self, report_id: str) -> bytes | None:
        """The report's Evidently snapshot JSON (None for unknown ids and insufficient data)."""
        return self._read(report_id, SNAPSHOT_FILE)

    def result(self, report_id: str) -> DriftResult | None:
        """The report's typed result, or None."""
        data = self._read(report_id, RESULT_FILE)
        return None if data is None else DriftResult.from_json(data)


def default_workspace_path(home: Path) -> Path:
    """Where the Evidently workspace lives under CRIMEFLOW_HOME."""
    return home / WORKSPACE_DIR
