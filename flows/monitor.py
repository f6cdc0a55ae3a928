"""The drift monitor: champion reference vs logged traffic → Evidently report → drift events."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow

from crimeflow.contract.links import Links
from crimeflow.contract.settings import get_settings
from monitoring.drift import DriftConfig
from monitoring.monitor_run import resolve_window
from tasks.monitor_steps import (
    check_drift,
    emit_drift_events,
    load_current,
    load_reference,
    publish_verdict,
    store_report,
)


@flow(name="drift-monitor")
def drift_monitor(window_days: int = 7, since: str | None = None, until: str | None = None) -> dict:
    """Compare the last `window_days` (or [since, until), ISO) of served traffic with the
    champion's reference; store the report, publish the verdict, emit the drift events."""
    settings = get_settings()
    start, end = resolve_window(window_days, since, until, datetime.now(UTC))

    reference = load_reference(settings)
    current = load_current(settings, start, end)
    config = DriftConfig.from_settings(settings.drift)
    result, snapshot = check_drift(reference, current, config, start, end)
    report_id = store_report(settings, result, snapshot)
    publish_verdict(settings, result, report_id)
    events = emit_drift_events(settings, result, report_id)
    report_url = Links.from_settings(settings).report(report_id)
    return {**result.to_dict(), "report_id": report_id, "report_url": report_url, "events": events}


if __name__ == "__main__":
    drift_monitor()
