"""The analyst reports in the lake: keys, index, latest month, re-runs."""

from __future__ import annotations

import pytest

from crimeflow.stores.analysis_reports import INDEX_KEY, AnalysisReports, html_key, json_key
from crimeflow.stores.lake import Lake


def test_reports_are_stored_per_month_and_latest_is_the_newest_month(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    reports = AnalysisReports(lake)
    assert reports.latest_month() is None and reports.html("2024-01") is None

    url = reports.save("2024-02", "<p>feb</p>", {"overall": {"incidents": 3}}, "t1")
    reports.save("2024-01", "<p>jan</p>", {"overall": {"incidents": 2}}, "t2")
    assert url == lake.url_for("reports/analysis/2024-02/report.html")
    assert reports.latest_month() == "2024-02"  # a backfilled month does not become the latest
    assert lake.read_json(INDEX_KEY) == {"2024-01": "t2", "2024-02": "t1"}
    assert reports.html("2024-01") == b"<p>jan</p>"
    assert reports.numbers("2024-02") == {"overall": {"incidents": 3}, "generated_at": "t1"}

    reports.save("2024-02", "<p>feb again</p>", {"overall": {"incidents": 4}}, "t3")
    assert reports.html("2024-02") == b"<p>feb again</p>" and reports.index()["2024-02"] == "t3"
    assert not list((tmp_path / "lake").rglob("_tmp/*"))  # nothing half-written left behind


def test_keys_refuse_anything_but_a_month():
    assert html_key("2024-03") == "reports/analysis/2024-03/report.html"
    assert json_key("2024-03") == "reports/analysis/2024-03/analysis.json"
    with pytest.raises(ValueError, match="YYYY-MM"):
        html_key("../state")
