"""Prefect tasks of the drift monitor: champion reference, logged traffic, check, report, events."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pandas as pd
from prefect import get_run_logger, runtime
from prefect.artifacts import create_markdown_artifact

from crimeflow.contract.events import DRIFT_CHECKED, DRIFT_DETECTED, PERFORMANCE_DEGRADED, emit
from crimeflow.contract.links import Links
from crimeflow.contract.settings import Settings
from crimeflow.stores.lake import CLEAN_CRIMES, Lake
from crimeflow.stores.prediction_log import read_predictions
from crimeflow.stores.registry import CHAMPION, mlflow_client, version_by_alias
from monitoring.drift import DriftConfig, DriftResult, compute_drift
from monitoring.monitor_run import Reference, check_urls, event_payload, verdict_markdown
from monitoring.outcomes import (
    WINDOW,
    Baseline,
    PerformanceCheck,
    assess_performance,
    degraded_payload,
    join_outcomes,
    latest_flags,
    performance_markdown,
)
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
    return Reference(str(champion.version), champion.run_id, threshold, frame, dict(champion.tags))


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
def check_performance(settings: Settings, reference: Reference, end: datetime) -> PerformanceCheck:
    """Join the lookback's logged predictions with the lake's arrest flags by id; realized
    (matured) and estimated (CBPE) performance per incident month vs the champion's holdout."""
    start = end - timedelta(days=settings.performance.lookback_days)
    predictions = read_predictions(settings, start, end)
    lake = Lake.from_settings(settings)
    dates = pd.to_datetime(predictions["date"], errors="coerce")
    wanted = set(dates.dt.strftime("%Y-%m").dropna())
    months = [m for m in lake.months(CLEAN_CRIMES) if m in wanted]
    lake_rows = lake.read_months(CLEAN_CRIMES, months)
    flags = latest_flags(lake_rows) if len(lake_rows) else pd.Series(dtype=bool)
    # Incident dates are Chicago wall-clock time; maturity is counted in days, so the
    # window end's date (naive) is a close enough "as of".
    as_of = pd.Timestamp(end).tz_localize(None) if pd.Timestamp(end).tzinfo else pd.Timestamp(end)
    joined = join_outcomes(predictions, flags, as_of, settings.etl.label_maturity_days)
    check = assess_performance(
        joined,
        Baseline.from_tags(reference.version, reference.tags),
        max_drop=settings.performance.max_drop,
        min_rows=settings.performance.min_rows,
        maturity_days=settings.etl.label_maturity_days,
        as_of=end,
    )
    get_run_logger().info(
        "performance: %s logged predictions in %s window(s) (%s), %s with a lake outcome",
        len(joined),
        len(check.windows),
        ", ".join(sorted(joined[WINDOW].dropna().unique())),
        int(joined["outcome"].notna().sum()),
    )
    for window in check.windows:
        get_run_logger().info(
            "performance %s: PR-AUC %s (%s) vs champion %s; degraded: %s",
            window.window,
            window.pr_auc,
            window.basis,
            check.baseline_pr_auc,
            window.degraded,
        )
    return check


@step
def store_report(
    settings: Settings, result: DriftResult, snapshot: Any, performance: PerformanceCheck | None
) -> str:
    """Write HTML + JSON to the lake and the run to the Evidently workspace; the report id."""
    if performance is not None:
        result = msgspec.structs.replace(result, outcome_performance=performance.as_dict())
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


@step
def emit_performance_events(
    settings: Settings, check: PerformanceCheck, report_id: str
) -> list[dict[str, Any]]:
    """`crimeflow.performance.degraded` for every window whose PR-AUC fell too far; payloads."""
    report_url = Links.from_settings(settings).report(report_id)
    payloads = [degraded_payload(check, w, report_id, report_url) for w in check.degraded]
    for payload in payloads:
        emit(PERFORMANCE_DEGRADED, settings.model_name, check.model_version, payload)
    return payloads


@step
def publish_performance(check: PerformanceCheck) -> None:
    """Publish the per-window performance table as a Prefect markdown artifact."""
    create_markdown_artifact(
        key="performance",
        markdown=performance_markdown(check),
        description=f"Performance: {len(check.degraded)} degraded window(s)",
    )
