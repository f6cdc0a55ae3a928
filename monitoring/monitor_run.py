"""The drift monitor run's pure parts: its window, the champion's reference, and what it
tells the world (the links, the event payload, the verdict artifact)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from crimeflow.contract.links import Links
from crimeflow.stores.prediction_log import parse_utc
from monitoring.drift import DriftResult


@dataclass
class Reference:
    """The champion's reference sample and what the check needs to know about the champion."""

    version: str
    run_id: str
    threshold: float
    frame: pd.DataFrame
    # The champion version's registry tags (its holdout figures: `holdout.pr_auc`, ...).
    tags: dict[str, str] = field(default_factory=dict)


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


def check_urls(
    links: Links,
    model_name: str,
    model_version: str | None,
    report_id: str,
    flow_run_id: str | None,
) -> dict[str, str | None]:
    """A check's links by payload key: its report (the API serves it), the monitored model
    version in MLflow, and the Prefect flow run (None where there is none)."""
    return {
        "report_url": links.report(report_id),
        "mlflow_url": links.model_version(model_name, model_version) if model_version else None,
        "flow_run_url": links.optional_flow_run(flow_run_id),
    }


def event_payload(
    result: DriftResult, report_id: str, urls: dict[str, str | None]
) -> dict[str, Any]:
    """The drift event's payload: strings and numbers that survive trigger templating."""
    return {
        "report_id": report_id,
        **urls,
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


def verdict_markdown(result: DriftResult, report_id: str, urls: dict[str, str | None]) -> str:
    """The Prefect artifact: verdict, the most drifted columns with scores, the links."""
    verdict = {
        "drift": "**Drift detected**",
        "no_drift": "**No drift**",
        "insufficient_data": "**Insufficient data** — no decision",
    }[result.status]
    share = "–" if result.drift_share is None else f"{result.drift_share:.0%}"
    model = f"model v{result.model_version}"
    lines = [
        f"# Drift check — {model}",
        "",
        f"{verdict}: {share} of monitored columns drifted; {result.current_rows:,} logged "
        f"predictions vs {result.reference_rows:,} reference rows.",
        "",
        f"Window {_iso(result.window_start)} → {_iso(result.window_end)} · "
        f"[open the report]({urls['report_url']}) · id `{report_id}`"
        + (f" · [{model} in MLflow]({urls['mlflow_url']})" if urls.get("mlflow_url") else ""),
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
