"""The drift monitor: champion reference vs logged traffic → Evidently report → drift events;
logged predictions joined with the lake's arrests → performance per window → degraded events."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow

from crimeflow.contract.links import Links
from crimeflow.contract.settings import get_settings
from monitoring.drift import DriftConfig
from monitoring.monitor_run import resolve_window
from tasks.monitor_steps import (
    check_drift,
    check_performance,
    emit_drift_events,
    emit_performance_events,
    load_current,
    load_reference,
    publish_performance,
    publish_verdict,
    store_report,
)


@flow(name="drift-monitor")
def drift_monitor(window_days: int = 7, since: str | None = None, until: str | None = None) -> dict:
    """Compare the last `window_days` (or [since, until), ISO) of served traffic with the
    champion's reference; score the logged predictions against the lake's outcomes (realized)
    or CBPE (estimated); store the report, publish both, emit the drift and performance events."""
    settings = get_settings()
    start, end = resolve_window(window_days, since, until, datetime.now(UTC))

    reference = load_reference(settings)
    current = load_current(settings, start, end)
    config = DriftConfig.from_settings(settings.drift)
    result, snapshot = check_drift(reference, current, config, start, end)
    performance = check_performance(settings, reference, end)
    report_id = store_report(settings, result, snapshot, performance)
    publish_verdict(settings, result, report_id)
    publish_performance(performance)
    events = emit_drift_events(settings, result, report_id)
    degraded = emit_performance_events(settings, performance, report_id)
    report_url = Links.from_settings(settings).report(report_id)
    return {
        **result.to_dict(),
        "outcome_performance": performance.as_dict(),
        "performance_degraded": degraded,
        "report_id": report_id,
        "report_url": report_url,
        "events": events,
    }


if __name__ == "__main__":
    drift_monitor()
