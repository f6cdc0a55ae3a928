"""The metric families crimeflow exports, by exposition base name and type (issue #15's contract).

The one list the dashboard checks (tests/deployments/test_grafana.py) read. The implementation
must match it: the API's families are compared with `api.observability.ApiMetrics` there; the
loop exporter's (`crimeflow exporter`) must export exactly LOOP_METRICS. Names are the
prometheus_client names: a counter `x` is scraped as `x_total`, a histogram `x` as `x_bucket`,
`x_sum` and `x_count` (see `series_names`).
"""

from __future__ import annotations

from collections.abc import Mapping

COUNTER = "counter"
GAUGE = "gauge"
HISTOGRAM = "histogram"

# `/metrics` of `crimeflow api` (all workers added up).
API_METRICS: Mapping[str, str] = {
    "crimeflow_request_seconds": HISTOGRAM,
    "crimeflow_predictions": COUNTER,
    "crimeflow_model_version": GAUGE,
    "crimeflow_microbatch_rows": HISTOGRAM,
    "crimeflow_model_reloads": COUNTER,
    "crimeflow_rate_limit_store_errors": COUNTER,
    "crimeflow_prediction_probability": HISTOGRAM,
    "crimeflow_prediction_log_write_seconds": HISTOGRAM,
    "crimeflow_prediction_log_queue_rows": GAUGE,
    "crimeflow_prediction_log_write_errors": COUNTER,
    "crimeflow_ready": GAUGE,
}

# `/metrics` of `crimeflow exporter`: the loop's durable state, read on every scrape.
LOOP_METRICS: Mapping[str, str] = {
    "crimeflow_etl_last_success_timestamp_seconds": GAUGE,
    "crimeflow_etl_rows": GAUGE,
    "crimeflow_drift_check_timestamp_seconds": GAUGE,
    "crimeflow_drift_share": GAUGE,
    "crimeflow_drift_detected": GAUGE,
    "crimeflow_drifted_columns": GAUGE,
    "crimeflow_gate_decisions": GAUGE,
    "crimeflow_champion_version": GAUGE,
    "crimeflow_champion_changed_timestamp_seconds": GAUGE,
    "crimeflow_retrain_duration_seconds": GAUGE,
    "crimeflow_retrain_last_failed": GAUGE,
    "crimeflow_exporter_scrape_errors": COUNTER,
}

METRICS: Mapping[str, str] = {**API_METRICS, **LOOP_METRICS}

# The series names each type of family is scraped as.
SUFFIXES: Mapping[str, tuple[str, ...]] = {
    COUNTER: ("_total",),
    GAUGE: ("",),
    HISTOGRAM: ("_bucket", "_sum", "_count"),
}


def series_names(families: Mapping[str, str] = METRICS) -> frozenset[str]:
    """Every series name the families are scraped as (what a PromQL query may name)."""
    return frozenset(name + suffix for name, kind in families.items() for suffix in SUFFIXES[kind])
