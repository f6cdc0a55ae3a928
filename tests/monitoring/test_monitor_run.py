"""The drift monitor run's window, report link, event payload and verdict artifact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crimeflow.contract.links import Links
from crimeflow.contract.settings import Settings
from monitoring.drift import ColumnDrift, DriftResult
from monitoring.monitor_run import check_urls, event_payload, resolve_window, verdict_markdown

NOW = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)


def column(name: str, drifted: bool, score: float | None = 0.2) -> ColumnDrift:
    return ColumnDrift(
        name=name,
        kind="categorical",
        method="jensenshannon",
        statistic="distance",
        score=score,
        threshold=0.1,
        drifted=drifted,
    )


def result(**changes: object) -> DriftResult:
    values: dict[str, object] = {
        "status": "drift",
        "drift_detected": True,
        "drift_share": 0.5,
        "drift_share_threshold": 0.25,
        "drifted_columns": ["beat", "iucr"],
        "columns": [column("iucr", True), column("hour", False, None), column("beat", True)],
        "prediction_drift": None,
        "performance": None,
        "reasons": ["share of drifted columns 0.50 >= 0.25"],
        "current_rows": 1234,
        "reference_rows": 20000,
        "sampled_current_rows": 1234,
        "sampled_reference_rows": 20000,
        "labelled_rows": 0,
        "window_start": NOW - timedelta(days=7),
        "window_end": NOW,
        "model_version": "3",
        "checked_at": NOW,
        **changes,
    }
    return DriftResult(**values)  # type: ignore[arg-type]


def test_window_defaults_to_the_last_days_and_takes_explicit_bounds():
    assert resolve_window(7, None, None, NOW) == (NOW - timedelta(days=7), NOW)
    start, end = resolve_window(7, "2024-05-01", "2024-05-03T06:00:00+02:00", NOW)
    assert start == datetime(2024, 5, 1, tzinfo=UTC)
    assert end == datetime(2024, 5, 3, 4, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="the window is empty"):
        resolve_window(7, "2024-05-03", "2024-05-01", NOW)


URLS = {"report_url": "http://x/reports/r-1", "mlflow_url": None, "flow_run_url": None}


def test_report_url_is_served_by_the_api_at_its_public_url(tmp_path):
    local = Settings(home=tmp_path, api_host="0.0.0.0", api_port=8123, _env_file=None)
    urls = check_urls(Links.from_settings(local), "m", "3", "r-1", None)
    assert urls["report_url"] == "http://127.0.0.1:8123/reports/r-1"
    assert urls["flow_run_url"] is None
    public = Settings(
        home=tmp_path,
        api_public_url="https://crimeflow.example.org/",
        mlflow_public_url="https://mlflow.example.org",
        prefect_public_url="https://prefect.example.org",
        _env_file=None,
    )
    assert check_urls(Links.from_settings(public), "m", "3", "r-1", "f-9") == {
        "report_url": "https://crimeflow.example.org/reports/r-1",
        "mlflow_url": "https://mlflow.example.org/#/models/m/versions/3",
        "flow_run_url": "https://prefect.example.org/runs/flow-run/f-9",
    }
    assert check_urls(Links.from_settings(public), "m", None, "r-1", None)["mlflow_url"] is None


def test_event_payload_holds_only_strings_numbers_and_none():
    payload = event_payload(result(), "r-1", URLS)
    assert payload["drifted_columns"] == "beat,iucr"
    assert payload["drifted_columns_count"] == 2
    assert payload["window_end"] == NOW.isoformat()
    assert payload["report_url"] == "http://x/reports/r-1"
    assert all(isinstance(v, str | int | float | bool | type(None)) for v in payload.values())
    assert event_payload(result(window_start=None), "r", URLS)["window_start"] is None


def test_verdict_markdown_links_the_public_report_and_model_version(tmp_path):
    settings = Settings(
        home=tmp_path,
        api_host="0.0.0.0",
        api_public_url="https://crimeflow.example.org",
        mlflow_public_url="https://mlflow.example.org/",
        _env_file=None,
    )
    urls = check_urls(Links.from_settings(settings), "chicago-arrest", "3", "r-1", "f-1")
    text = verdict_markdown(result(), "r-1", urls)
    assert "[open the report](https://crimeflow.example.org/reports/r-1)" in text
    assert (
        "[model v3 in MLflow](https://mlflow.example.org/#/models/chicago-arrest/versions/3)"
        in (text)
    )
    assert "0.0.0.0" not in text and "127.0.0.1" not in text


def test_verdict_markdown_lists_drifted_columns_first_with_the_link():
    text = verdict_markdown(result(), "r-1", URLS)
    assert "**Drift detected**: 50% of monitored columns drifted; 1,234 logged" in text
    assert "[open the report](http://x/reports/r-1)" in text
    assert "in MLflow" not in text  # no version link without a URL
    rows = [line for line in text.splitlines() if line.startswith("| ") and "method" not in line]
    assert [row.split(" | ")[0] for row in rows] == ["| beat", "| iucr", "| hour"]
    assert rows[-1].endswith("| – | 0.1 | no |")
    quiet = verdict_markdown(
        result(status="insufficient_data", drift_share=None, columns=[], reasons=[]), "r", URLS
    )
    assert (
        "**Insufficient data** — no decision: – of monitored" in quiet and "| column" not in quiet
    )
