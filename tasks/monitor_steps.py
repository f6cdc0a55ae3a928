"""Prefect tasks of the drift monitor: champion reference, logged traffic, check, report, events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact

from crimeflow.contract.events import DRIFT_CHECKED, DRIFT_DETECTED, emit
from crimeflow.contract.settings import Settings
from crimeflow.stores.lake import Lake
from crimeflow.stores.prediction_log import parse_utc, read_predictions
from crimeflow.stores.registry import CHAMPION, mlflow_client, version_by_alias
from monitoring.drift import DriftConfig, DriftResult, compute_drift
from monitoring.report_store import ReportStore
from tasks import step


@dataclass
class Reference:
    """The champion's reference sample and what the check needs to know about the champion."""

    version: str
    run_id: str
    threshold: float
    frame: pd.DataFrame


def resolve_window(
    window_days: int, since: str | None, until: str | None, now: datetime
) -> tuple[datetime, datetime]:
    """[start, end) in UTC: explicit ISO bounds win, else the last `window_days` before `now`."""
    end = parse_utc(until) if until else now.astimezone(UTC)
    start = parse_utc(since) if since else end - timedelta(days=window_days)
    if start >= end:
        raise ValueError(
            f"the window is empty: since {start.isoformat()} >= until {end.isoformat()}"
        )
    return start, end


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


def report_url(settings: Settings, report_id: str) -> str:
    """Where a person opens the report: the API serves it."""
    return f"http://{settings.api.host}:{settings.api.port}/reports/{report_id}"


def event_payload(result: DriftResult, report_id: str, url: str) -> dict[str, Any]:
    """The drift event's payload: strings and numbers that survive trigger templating."""
    return {
        "report_id": report_id,
        "report_url": url,
        "status": result.status,
        "drift_detected": result.drift_detected,
        "drift_share": result.drift_share,
        "drifted_columns": ",".join(result.drifted_columns),
        "drifted_columns_count": len(result.drifted_columns),
        "window_start": _iso(result.window_start),
        "window_end": _iso(result.window_end),
        "model_version": result.model_version,
        "current_rows": result.current_rows,
    }


def _iso(moment: datetime | None) -> str | None:
    """ISO text of a timestamp (None stays None)."""
    return None if moment is None else moment.isoformat()


@step
def emit_drift_events(settings: Settings, result: DriftResult, report_id: str) -> list[str]:
    """Always `crimeflow.drift.checked`; `crimeflow.drift.detected` too when drift was found."""
    payload = event_payload(result, report_id, report_url(settings, report_id))
    names = [DRIFT_CHECKED, *([DRIFT_DETECTED] if result.drift_detected else [])]
    for name in names:
        emit(name, settings.model_name, result.model_version, payload)
    return names


def verdict_markdown(result: DriftResult, report_id: str, url: str) -> str:
    """The Prefect artifact: verdict, the most drifted columns with scores, the report link."""
    verdict = {
        "drift": "**Drift detected**",
        "no_drift": "**No drift**",
        "insufficient_data": "**Insufficient data** — no decision",
    }[result.status]
    share = "–" if result.drift_share is None else f"{result.drift_share:.0%}"
    lines = [
        f"# Drift check — model v{result.model_version}",
        "",
        f"{verdict}: {share} of monitored columns drifted; {result.current_rows:,} logged "
        f"predictions vs {result.reference_rows:,} reference rows.",
        "",
        f"Window {_iso(result.window_start)} → {_iso(result.window_end)} · "
        f"[open the report]({url}) · id `{report_id}`",
    ]
    if result.reasons:
        lines += ["", *[f"- {reason}" for reason in result.reasons]]
    columns = sorted(result.columns, key=lambda c: (not c.drifted, c.name))
    if columns:
        lines += [
            "",
            "| column | method | score | threshold | drifted |",
            "|---|---|---:|---:|---|",
        ]
        lines += [
            f"| {c.name} | {c.method} | {_score(c.score)} | {c.threshold:.3g} "
            f"| {'yes' if c.drifted else 'no'} |"
            for c in columns[:10]
        ]
    return "\n".join(lines)


def _score(value: float | None) -> str:
    """A drift score for a table."""
    return "–" if value is None else f"{value:.4g}"


@step
def publish_verdict(settings: Settings, result: DriftResult, report_id: str) -> None:
    """Publish the verdict as a Prefect markdown artifact."""
    create_markdown_artifact(
        key="drift-check",
        markdown=verdict_markdown(result, report_id, report_url(settings, report_id)),
        description=f"Drift check: {result.status}",
    )
