"""GET /reports, /reports/latest and /reports/{id}: the drift monitor's reports over HTTP."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from api.app import create_app
from crimeflow.contract.settings import Settings
from crimeflow.standins.generate import Drift, generate_incidents
from crimeflow.stores.analysis_reports import AnalysisReports
from crimeflow.stores.lake import Lake
from monitoring.drift import DriftConfig, compute_drift
from monitoring.report_store import ReportStore


def store_check(settings: Settings, drift: Drift | None, seed: int) -> str:
    """Run one small drift check and store it as the monitor flow does; its report id."""
    reference = generate_incidents("2024-01", "2024-02", rows_per_month=600, seed=1)
    current = generate_incidents("2024-03", "2024-03", rows_per_month=600, seed=seed, drift=drift)
    reference = reference.assign(arrest_probability=0.2)
    current = current.drop(columns=["arrest"]).assign(probability=0.2)
    result, snapshot = compute_drift(reference, current, DriftConfig(), model_version="1")
    return ReportStore(Lake.from_settings(settings), settings.evidently.workspace).save(
        result, snapshot
    )


def test_reports_are_listed_newest_first_and_served_as_html(tmp_path: Any) -> None:
    public = "https://crimeflow.example.org/"
    settings = Settings(home=tmp_path / "home", api_public_url=public, _env_file=None)
    with TestClient(create_app(settings)) as client:
        assert client.get("/reports").json() == []
        assert client.get("/reports/latest").status_code == 404

        first = store_check(settings, None, seed=2)
        second = store_check(settings, Drift.parse("type_mix=NARCOTICS:6"), seed=3)

        listed = client.get("/reports").json()
        assert [r["id"] for r in listed] == [second, first]
        keys = {"id", "created_at", "window_start", "window_end", "model_version"}
        assert keys | {"drift_detected", "drift_share"} <= set(listed[0])
        assert listed[0]["drift_detected"] is True
        assert [r["url"] for r in listed] == [f"{public}reports/{i}" for i in (second, first)]

        page = client.get(f"/reports/{first}")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert client.get("/reports/latest").content == client.get(f"/reports/{second}").content
        missing = client.get("/reports/20990101T000000Z-beef")
        assert missing.status_code == 404
        assert "20990101T000000Z-beef" in missing.json()["detail"]
        assert client.get("/reports/..%2Fstate").status_code == 404


def test_analyst_reports_latest_html_and_numbers(tmp_path: Any) -> None:
    settings = Settings(home=tmp_path / "home", _env_file=None)
    reports = AnalysisReports(Lake.from_settings(settings))
    with TestClient(create_app(settings)) as client:
        for path in ("/analysis/latest", "/analysis/latest.json"):
            missing = client.get(path)
            assert missing.status_code == 404 and "crimeflow analysis" in missing.json()["detail"]

        reports.save("2024-03", "<html>march</html>", {"month": "2024-03"}, "t1")
        reports.save("2024-02", "<html>february</html>", {"month": "2024-02"}, "t2")

        latest = client.get("/analysis/latest")  # the newest month, not the newest run
        assert latest.status_code == 200 and latest.text == "<html>march</html>"
        assert latest.headers["content-type"].startswith("text/html")
        assert client.get("/analysis/latest.json").json() == {
            "month": "2024-03",
            "generated_at": "t1",
        }
        assert client.get("/analysis/2024-02").text == "<html>february</html>"
        unknown = client.get("/analysis/2024-05")
        assert unknown.status_code == 404 and "2024-05" in unknown.json()["detail"]
        bad = client.get("/analysis/2024-13")
        assert bad.status_code == 400 and "month" in bad.json()["detail"]


def store_assessed_check(settings: Settings) -> str:
    """A check with too little traffic for a drift verdict but a performance section."""
    import msgspec
    import numpy as np
    import pandas as pd

    from monitoring.outcomes import Baseline, assess_performance, join_outcomes, latest_flags

    reference = generate_incidents("2024-01", "2024-01", rows_per_month=300, seed=1)
    current = generate_incidents("2024-03", "2024-03", rows_per_month=300, seed=2)
    proba = np.random.default_rng(0).uniform(0.05, 0.6, len(current))
    current = current.assign(probability=proba)
    result, _ = compute_drift(
        reference.assign(arrest_probability=0.2),
        current.drop(columns=["arrest"]).head(10),
        DriftConfig(),
        model_version="1",
    )
    joined = join_outcomes(
        current, latest_flags(current[["id", "arrest"]]), pd.Timestamp("2024-09-01"), 60
    )
    check = assess_performance(
        joined,
        Baseline("1", 0.9),
        max_drop=0.05,
        min_rows=200,
        maturity_days=60,
        as_of=pd.Timestamp("2024-09-01", tz="UTC").to_pydatetime(),
    )
    result = msgspec.structs.replace(result, outcome_performance=check.as_dict())
    store = ReportStore(Lake.from_settings(settings), settings.evidently.workspace)
    return store.save(result, None)


def test_performance_answers_the_newest_assessed_check_by_window(tmp_path: Any) -> None:
    settings = Settings(home=tmp_path / "home", _env_file=None)
    with TestClient(create_app(settings)) as client:
        assert client.get("/performance").status_code == 404
        report_id = store_assessed_check(settings)

        answer = client.get("/performance").json()
        assert answer["report_id"] == report_id
        assert answer["baseline_pr_auc"] == 0.9
        (window,) = answer["windows"]
        assert window["window"] == "2024-03" and window["basis"] == "realized"
        assert window["degraded"] is True and window["realized"]["rows"] == 300
        assert client.get("/performance", params={"window": "2024-03"}).json() == answer
        unknown = client.get("/performance", params={"window": "2024-04"})
        assert unknown.status_code == 404 and "2024-03" in unknown.json()["detail"]
        malformed = client.get("/performance", params={"window": "March"})
        assert malformed.status_code == 400
        assert "window" in malformed.text
        assert b"crimeflow-performance" in client.get(f"/reports/{report_id}").content
