"""What a training run records: its months, the reference sample, tags and links."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from crimeflow.contract.links import Links
from crimeflow.contract.schema import SODA_COLUMNS
from crimeflow.contract.settings import Settings
from crimeflow.domain.model import CandidateScore, ModelConfig
from crimeflow.domain.training_run import (
    FLOW_RUN_URL_TAG,
    PROBABILITY,
    RegisteredModel,
    flow_run_tags,
    month_list,
    newest_mature_month,
    newest_months,
    reference_sample,
    run_metrics,
    run_params,
    span,
    summary_markdown,
    training_until,
)
from crimeflow.standins.generate import generate_incidents


@pytest.fixture(scope="module")
def incidents() -> pd.DataFrame:
    return generate_incidents("2018-01", "2018-04", rows_per_month=300, seed=2)


def test_newest_months_up_to_until():
    months = ["2018-01", "2018-02", "2018-03", "2018-04"]
    assert newest_months(months, None, 2) == ["2018-03", "2018-04"]
    assert newest_months(months, "2018-02", 12) == ["2018-01", "2018-02"]
    assert newest_months(months, "2017-12", 3) == []


def test_newest_months_count_months_with_rows_not_calendar_months():
    months = ["2018-01", "2018-02", "2018-03", "2018-04"]
    rows = {"2018-01": 25_000, "2018-02": 24_000, "2018-03": 0}  # 2018-04: no count, no rows
    assert newest_months(months, None, 2, rows) == ["2018-01", "2018-02"]
    assert newest_months(months, "2018-03", 3, rows) == ["2018-01", "2018-02"]


def test_the_newest_mature_month_ends_at_least_maturity_days_before_today():
    # 60 days before 2026-12-03 is 2026-10-04: September ended (Oct 1) before it, October not.
    assert newest_mature_month(date(2026, 12, 3), 60) == "2026-09"
    # 60 days before 2026-12-31 is 2026-11-01: October ended exactly then.
    assert newest_mature_month(date(2026, 12, 31), 60) == "2026-10"
    assert newest_mature_month(date(2026, 12, 3), 0) == "2026-11"
    assert training_until(None, date(2026, 12, 3), 60) == "2026-09"
    assert training_until("2026-11", date(2026, 12, 3), 60) == "2026-09"
    assert training_until("2018-10", date(2026, 12, 3), 60) == "2018-10"


def test_reference_sample_keeps_each_month_and_the_score(incidents):
    proba = np.linspace(0, 1, len(incidents))
    sample = reference_sample(incidents, proba, rows=400, seed=0)
    assert list(sample.columns) == [*SODA_COLUMNS, PROBABILITY]
    per_month = sample["date"].dt.strftime("%Y-%m").value_counts()
    assert sorted(per_month.index) == ["2018-01", "2018-02", "2018-03", "2018-04"]
    assert per_month.min() >= 90 and per_month.sum() == pytest.approx(400, abs=4)
    assert sample["date"].is_monotonic_increasing
    again = reference_sample(incidents, proba, rows=400, seed=0)
    pd.testing.assert_frame_equal(sample, again)  # seeded
    assert len(reference_sample(incidents, proba, rows=10**6, seed=0)) == len(incidents)


def test_span_and_month_list(incidents):
    assert span(incidents) == "2018-01..2018-04"
    assert month_list(incidents) == "2018-01,2018-02,2018-03,2018-04"


def test_flow_run_tag_links_the_prefect_run_only_inside_one():
    links = Links("http://api", "http://mlflow", "https://prefect.example.org/")
    assert flow_run_tags(links, "f-1") == {
        FLOW_RUN_URL_TAG: "https://prefect.example.org/runs/flow-run/f-1"
    }
    assert flow_run_tags(links, None) == {}


def test_summary_markdown_links_the_run_and_version_at_the_public_mlflow_url(tmp_path):
    settings = Settings(
        home=tmp_path, mlflow_public_url="https://mlflow.example.org/", _env_file=None
    )
    links = Links.from_settings(settings)
    registered = RegisteredModel(
        run_id="abc",
        version="4",
        model_uri="models:/chicago-arrest/4",
        promoted=False,
        run_url=links.mlflow_run("7", "abc"),
        version_url=links.model_version("chicago-arrest", "4"),
        card_url=links.model_card("7", "abc"),
    )
    metrics = {n: 0.5 for n in ("roc_auc", "pr_auc", "mcc", "f1", "precision", "recall")}
    metrics |= {"brier": 0.1, "log_loss": 0.4, "n": 10, "positive_rate": 0.2}
    report = {"model": {**metrics, "mean_predicted": 0.2}, "baseline": metrics, "threshold": 0.3}
    report["excluding_arrest_defined"] = {"excluded_rows": 3, "model": {"roc_auc": 0.4321}}
    trained = SimpleNamespace(classifier="logistic_regression", balance="none", candidates={})
    text = summary_markdown(trained, report, registered)  # type: ignore[arg-type]
    assert "[MLflow run](https://mlflow.example.org/#/experiments/7/runs/abc)" in text
    assert "[model version 4](https://mlflow.example.org/#/models/chicago-arrest/versions/4)" in (
        text
    )
    card = "https://mlflow.example.org/#/experiments/7/runs/abc/artifacts/model_card.md"
    assert f"[model card]({card})" in text
    # The honest column: the model without the arrest-defined types, next to the overall one.
    assert "| roc_auc | 0.5000 | 0.4321 | 0.5000 |" in text
    assert "leaves out 3 incidents" in text


def test_params_and_metrics_record_every_candidate_and_the_chosen_balance_mode(incidents):
    def score(classifier: str, pr_auc: float, balance: str = "none") -> CandidateScore:
        return CandidateScore(classifier, pr_auc, 0.9, 2.0, 0.1, 0.3, balance=balance)  # type: ignore[arg-type]

    candidates = {
        s.key: s
        for s in (
            score("hist_gradient_boosting", 0.781),
            score("hist_gradient_boosting", 0.779, "class_weight"),
            score("hist_gradient_boosting", 0.784, "smote"),
        )
    }
    trained = SimpleNamespace(
        classifier="hist_gradient_boosting",
        balance="smote",
        threshold_metric="f1",
        config=ModelConfig(),
        candidates=candidates,
        validation={"pr_auc": 0.78},
        timings={},
    )
    splits = {"train": incidents.head(10), "validation": incidents.tail(10)}
    params = run_params(trained, splits)  # type: ignore[arg-type]
    assert params["balance"] == "smote"
    assert params["candidate"] == "hist_gradient_boosting-smote"
    report = {"threshold": 0.3, "model": {"pr_auc": 0.8}, "baseline": {}, "per_type": {}}
    metrics = run_metrics(trained, report)  # type: ignore[arg-type]
    assert metrics["candidate.hist_gradient_boosting-smote.pr_auc"] == 0.784
    assert metrics["candidate.hist_gradient_boosting-class_weight.pr_auc"] == 0.779
    assert metrics["candidate.hist_gradient_boosting.pr_auc"] == 0.781
