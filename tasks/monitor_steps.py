"""Prefect tasks of the drift monitor: champion reference, logged traffic, check, report, events."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, runtime
from prefect.artifacts import create_markdown_artifact

from crimeflow.contract.events import DRIFT_CHECKED, DRIFT_DETECTED, emit
from crimeflow.contract.links import Links
from crimeflow.contract.settings import Settings
from crimeflow.stores.lake import Lake
from crimeflow.stores.prediction_log import read_predictions
from crimeflow.stores.registry import CHAMPION, mlflow_client, version_by_alias
from monitoring.drift import DriftConfig, DriftResult, compute_drift
from monitoring.monitor_run import Reference, check_urls, event_payload, verdict_markdown
from monitoring.report_store import ReportStore
from tasks import step


@step
def load_reference(settings: Settings) -> Reference:
    """The champion's logged reference sample (fails clearly when there is no champion)."""
    client = mlflow_client(settings)
    champion = version_by_alias(client, settings.model_name, CHAMPION)
    if champion is None:
        raise LookupError(
            f"no {settings.model_name!r} champion to monitor: train one first "
            "(crimeflow train --promote-if-none)"
        )
    folder = Path(client.download_artifacts(champion.run_id, "reference"))
    frame = pd.read_parquet(next(folder.glob("*.parquet")))
    threshold = float(champion.tags.get("decision_threshold", 0.5))
    return Reference(str(champion.version), champion.run_id, threshold, frame)


@step
def load_current(settings: Settings, start: datetime, end: datetime) -> pd.DataFrame:
    """The prediction log's rows served in [start, end)."""
    frame = read_predictions(settings, start, end)
    get_run_logger().info("%s logged predictions in %s .. %s", len(frame), start, end)
    return frame


@step
def check_drift(
    reference: Reference, current: pd.DataFrame, config: DriftConfig, start: datetime, end: datetime
) -> tuple[DriftResult, Any]:
    """Run the Evidently comparison of the window with the champion's reference."""
    return compute_drift(
        reference.frame,
        current,
        config,
        window_start=start,
        window_end=end,
        model_version=reference.version,
        decision_threshold=reference.threshold,
    )


@step
def store_report(settings: Settings, result: DriftResult, snapshot: Any) -> str:
    """Write HTML + JSON to the lake and the run to the Evidently workspace; the report id."""
    store = ReportStore(Lake.from_settings(settings), settings.evidently.workspace)
    return store.save(result, snapshot)


def _check_urls(settings: Settings, result: DriftResult, report_id: str) -> dict[str, str | None]:
    """The check's links at the public URLs, with the flow run this task belongs to."""
    return check_urls(
        Links.from_settings(settings),
        settings.model_name,
        result.model_version,
        report_id,
        runtime.flow_run.id,
    )


@step
def emit_drift_events(settings: Settings, result: DriftResult, report_id: str) -> list[str]:
    """Always `crimeflow.drift.checked`; `crimeflow.drift.detected` too when drift was found."""
    payload = event_payload(result, report_id, _check_urls(settings, result, report_id))
    names = [DRIFT_CHECKED, *([DRIFT_DETECTED] if result.drift_detected else [])]
    for name in names:
        emit(name, settings.model_name, result.model_version, payload)
    return names


@step
def publish_verdict(settings: Settings, result: DriftResult, report_id: str) -> None:
    """Publish the verdict as a Prefect markdown artifact."""
    create_markdown_artifact(
        key="drift-check",
        markdown=verdict_markdown(result, report_id, _check_urls(settings, result, report_id)),
        description=f"Drift check: {result.status}",
    )
