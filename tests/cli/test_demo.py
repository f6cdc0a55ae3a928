"""The demo's pure parts: its plan of months, its own settings folder, its summary table."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd

from crimeflow.cli.demo import DemoPlan, DemoSummary, demo_settings, generated_plan, summary_table
from crimeflow.contract.settings import Settings


def test_generated_plan_ends_last_month_with_the_drifted_months():
    plan = generated_plan(date(2026, 12, 1), old_months=3, new_months=2, rows_per_month=50)
    assert plan.old_months == ["2026-07", "2026-08", "2026-09"]
    assert plan.new_months == ["2026-10", "2026-11"]
    months = plan.crimes["date"].dt.strftime("%Y-%m")
    assert sorted(months.unique()) == plan.old_months + plan.new_months
    assert plan.crimes["id"].is_unique
    modern = plan.crimes.loc[months.isin(plan.new_months), "location_description"]
    assert modern.str.contains("RESIDENCE - ", regex=False).any()  # the 2020 vocabulary


def test_a_generated_plan_with_a_maturity_rule_ends_at_the_newest_mature_month():
    # 60 days before 2026-12-03 is 2026-10-04: September is the newest month with final labels.
    plan = generated_plan(date(2026, 12, 3), 2, 2, rows_per_month=50, maturity_days=60)
    assert plan.old_months == ["2026-06", "2026-07"]
    assert plan.new_months == ["2026-08", "2026-09"]
    assert plan.crimes["date"].max() < pd.Timestamp("2026-10-01")


def test_demo_settings_live_in_a_folder_of_their_own(tmp_path: Path):
    user = Settings(home=tmp_path, lake_url="s3://bucket/prod", api_port=8123, _env_file=None)
    plan = DemoPlan(crimes=None, old_months=["2018-01"], new_months=["2018-09"], generated=False)
    demo = demo_settings(user, plan, "http://127.0.0.1:9999")
    assert demo.home == tmp_path / "demo"
    assert demo.lake_url == str(tmp_path / "demo" / "lake")  # never the user's lake
    assert str(tmp_path / "demo") in demo.mlflow.tracking_uri
    assert str(tmp_path / "demo") in demo.prediction_log.url
    assert demo.api.port == 8123 and demo.socrata.url == "http://127.0.0.1:9999"
    assert demo.retrain.until == "2018-09"  # files are history: retrain up to their end


def test_summary_table_shows_versions_decisions_and_latencies():
    summary = DemoSummary(
        versions=[
            {
                "version": "1",
                "aliases": ["previous-champion"],
                "holdout_roc_auc": "0.88",
                "holdout_pr_auc": "0.77",
                "gate": None,
            },
            {
                "version": "2",
                "aliases": ["champion"],
                "holdout_roc_auc": "0.89",
                "holdout_pr_auc": "0.81",
                "gate": "passed",
            },
        ],
        gate_decisions=[{"version": "2", "decision": "promoted", "reasons": ""}],
        drift_checks=[{"status": "drift", "drift_share": 0.27, "drifted_columns": "iucr"}],
        loop_latency_s={"event_to_run_start": 6.9},
    )
    table = summary_table(summary)
    assert "v2 promoted (all checks passed)" in table
    assert "drift: drift share 0.27, drifted iucr" in table
    assert "event_to_run_start" in table and "6.9" in table


def test_the_demo_runs_its_api_without_auth_even_when_the_user_turned_it_on(tmp_path: Path):
    from crimeflow.cli.stack import settings_environment

    user = Settings(
        home=tmp_path,
        auth_jwt_secret="u" * 32,
        auth_jwks_url="https://idp.example/jwks.json",
        _env_file=None,
    )
    plan = DemoPlan(crimes=None, old_months=["2018-01"], new_months=["2018-09"], generated=False)
    demo = demo_settings(user, plan, "http://127.0.0.1:9999")
    assert user.auth.enabled and not demo.auth.enabled
    # The demo's children get empty values, which beat the user's environment.
    env = settings_environment(demo)
    assert env["CRIMEFLOW_AUTH_JWT_SECRET"] == "" and env["CRIMEFLOW_AUTH_JWKS_URL"] == ""
