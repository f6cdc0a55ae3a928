"""The retraining loop's pure parts: months, earlier runs, staging set, serving checks, records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from crimeflow.contract.links import Links
from crimeflow.contract.schema import LABEL, SODA_COLUMNS
from crimeflow.contract.settings import GateSettings
from crimeflow.domain.gate import Check, GateDecision
from crimeflow.domain.retrain_run import (
    SKIPPED,
    GateOutcome,
    StagingSet,
    assemble_staging_set,
    decision_markdown,
    decision_payload,
    decision_tags,
    first_earlier_run,
    gate_urls,
    judge_candidate,
    labelled_traffic,
    missing_months,
    rollback_markdown,
    rollback_urls,
    shadow_failures,
    single_row_p99_ms,
    staging_months,
    target_month,
)


def test_missing_months_and_staging_months():
    assert missing_months(["2024-01", "2024-02"], "2024-05") == ["2024-03", "2024-04", "2024-05"]
    assert missing_months(["2024-05"], "2024-05") == []
    candidate = SimpleNamespace(tags={"holdout_months": "2024-05,2024-06"})
    champion = SimpleNamespace(tags={"fit_months": "2024-01,2024-02,2024-05"})
    assert staging_months(candidate, champion) == ["2024-06"]
    assert staging_months(candidate, None) == ["2024-05", "2024-06"]


NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)


def outcome(passed: bool = True, champion: str | None = "1", **changes: object) -> GateOutcome:
    checks = [Check("floor.roc_auc", True, "ok"), Check("latency.p99", passed, "p99 80 ms")]
    values: dict[str, object] = {
        "decision": GateDecision(checks),
        "candidate_version": "2",
        "champion_version": champion,
        "champion_note": None,
        "candidate_metrics": {"n": 1200, "roc_auc": 0.81, "pr_auc": 0.52},
        "champion_metrics": None if champion is None else {"roc_auc": 0.8, "pr_auc": 0.5},
        "p99_ms": 3.25,
        "shadow_rows": 10,
        "staging": "2024-05 (1,200 rows) + 0 feedback-labelled",
        **changes,
    }
    return GateOutcome(**values)  # type: ignore[arg-type]


def flow_run(run_id: str, minutes: int, state: str, kind: str = "COMPLETED") -> SimpleNamespace:
    return SimpleNamespace(
        id=run_id,
        name=f"run-{run_id}",
        start_time=NOW + timedelta(minutes=minutes),
        state=SimpleNamespace(name=state, type=SimpleNamespace(value=kind)),
    )


class Constant:
    """A stand-in model scoring every row with the same probabilities."""

    def __init__(self, proba: float = 0.3, fail: bool = False) -> None:
        self.proba, self.fail, self.calls = proba, fail, 0

    def predict_proba(self, rows: pd.DataFrame) -> np.ndarray:
        self.calls += 1
        if self.fail:
            raise ValueError("boom")
        return np.column_stack([1 - np.full(len(rows), self.proba), np.full(len(rows), self.proba)])


def test_target_month_defaults_to_the_last_complete_month():
    assert target_month("2018-09", NOW) == "2018-09"
    assert target_month(None, NOW) == "2024-05"


def test_the_earliest_run_of_a_burst_that_did_work_wins():
    me = flow_run("b", 0, "Running", "RUNNING")
    skipped = flow_run("a", -5, SKIPPED)
    failed = flow_run("c", -4, "Failed", "FAILED")
    assert first_earlier_run([me, skipped, failed], me, me.start_time) is None
    worker = flow_run("d", -3, "Completed")
    found = first_earlier_run([me, skipped, worker], me, me.start_time)
    assert found is not None and found.startswith("run-d (d, Completed, started")
    later = flow_run("e", 2, "Running", "RUNNING")
    assert first_earlier_run([later], me, me.start_time) is None
    tie = flow_run("a0", 0, "Running", "RUNNING")  # same start: the smaller id goes ahead
    assert first_earlier_run([tie], me, me.start_time) is not None


def test_labelled_traffic_takes_the_feedback_as_the_label():
    logged = pd.DataFrame(
        {"id": ["1", "2"], "primary_type": ["THEFT", "BATTERY"], "feedback_arrest": [True, None]}
    )
    labelled = labelled_traffic(logged)
    assert list(labelled.columns) == list(SODA_COLUMNS)  # the label column included
    assert labelled["id"].tolist() == ["1"] and labelled[LABEL].tolist() == [True]


def test_staging_set_joins_lake_rows_and_feedback_or_says_why_it_is_empty():
    lake_rows = pd.DataFrame({"id": ["1", "2"], LABEL: [True, None]})
    feedback = pd.DataFrame({"id": ["3"], LABEL: [False]})
    staging = assemble_staging_set(lake_rows, ["2024-05"], feedback, "2024-05")
    assert staging.frame["id"].tolist() == ["1", "3"] and staging.feedback_rows == 1
    assert staging.describe() == "2024-05 (1 rows) + 1 feedback-labelled"
    with pytest.raises(ValueError, match=r"holdout months \(2024-04\) were all learnt"):
        assemble_staging_set(None, [], feedback.iloc[:0], "2024-04")


def test_latency_is_the_best_round_of_single_row_calls():
    model = Constant()
    rows = pd.DataFrame({"id": ["1", "2", "3"]})
    p99 = single_row_p99_ms(model, rows, calls=20, rounds=2)
    assert p99 >= 0 and model.calls == 10 + 2 * 20  # warm-up, then every round
    with pytest.raises(ValueError, match="no rows"):
        single_row_p99_ms(model, rows.iloc[:0])


def test_shadow_failures_name_exceptions_and_invalid_probabilities():
    requests = pd.DataFrame({"id": ["1", "2"]})
    assert shadow_failures(Constant(), requests) == []
    assert shadow_failures(Constant(), requests.iloc[:0]) == []
    assert "raised ValueError('boom')" in shadow_failures(Constant(fail=True), requests)[0]
    assert shadow_failures(Constant(proba=1.5), requests) == [
        "2 of 2 logged requests got invalid probabilities"
    ]


def test_decision_tags_payload_and_markdown():
    rejected = outcome(passed=False)
    tags = decision_tags(rejected, "drift")
    assert tags["gate"] == "failed" and tags["gate.reasons"] == "latency.p99: p99 80 ms"
    assert tags["gate.candidate.pr_auc"] == "0.5200" and tags["gate.champion.roc_auc"] == "0.8000"
    assert tags["gate.candidate.calibration_gap"] == "none" and tags["gate.p99_ms"] == "3.25"
    assert decision_tags(outcome(champion=None), "manual")["gate.champion_version"] == "none"
    long = decision_tags(outcome(staging="x" * 6000), "manual")["gate.staging"]
    assert len(long) == 5000  # MLflow's cap on a tag value
    urls = {"mlflow_url": "http://m/v2", "flow_run_url": None}
    assert decision_payload(rejected, "drift", urls) == {
        "version": "2",
        "previous_version": "1",
        "reason": "drift",
        "reasons": "latency.p99: p99 80 ms",
        "staging": rejected.staging,
        "candidate_pr_auc": 0.52,
        "champion_pr_auc": 0.5,
        "mlflow_url": "http://m/v2",
        "flow_run_url": None,
    }
    text = decision_markdown(outcome(), "manual", True, urls)
    assert text.startswith("# Staging gate — candidate v2: **Promoted**")
    assert "| n | 1,200 | – |" in text and "| latency.p99 | yes | p99 80 ms |" in text
    assert "[candidate v2 in MLflow](http://m/v2)" in text and "Prefect run" not in text


PUBLIC_LINKS = Links(
    "https://crimeflow.example.org/",
    "https://mlflow.example.org",
    "https://prefect.example.org",
)


def test_the_gate_links_candidate_champion_run_and_report_at_the_public_urls():
    gated = outcome(passed=False, candidate_run_id="abc", candidate_experiment_id="7")
    urls = gate_urls(PUBLIC_LINKS, "chicago-arrest", gated, "f-1", "r-9")
    assert urls == {
        "mlflow_url": "https://mlflow.example.org/#/models/chicago-arrest/versions/2",
        "mlflow_run_url": "https://mlflow.example.org/#/experiments/7/runs/abc",
        "previous_mlflow_url": "https://mlflow.example.org/#/models/chicago-arrest/versions/1",
        "flow_run_url": "https://prefect.example.org/runs/flow-run/f-1",
        "report_url": "https://crimeflow.example.org/reports/r-9",
    }
    # The rejected event and the artifact carry them (the alert reads the payload).
    payload = decision_payload(gated, "drift (report r-9)", urls)
    assert payload["mlflow_url"] == urls["mlflow_url"]
    assert payload["flow_run_url"] == "https://prefect.example.org/runs/flow-run/f-1"
    text = decision_markdown(gated, "drift (report r-9)", False, urls)
    assert f"[candidate v2 in MLflow]({urls['mlflow_url']})" in text
    assert f"[its training run]({urls['mlflow_run_url']})" in text
    assert f"[champion v1]({urls['previous_mlflow_url']})" in text
    assert "[drift report](https://crimeflow.example.org/reports/r-9)" in text
    assert "[this Prefect run](https://prefect.example.org/runs/flow-run/f-1)" in text
    tags = decision_tags(gated, "drift", urls)
    assert tags["gate.flow_run_url"] == urls["flow_run_url"]
    assert tags["gate.report_url"] == urls["report_url"]


def test_gate_links_without_a_run_report_or_champion_are_none():
    urls = gate_urls(PUBLIC_LINKS, "m", outcome(champion=None), None, None)
    assert urls["mlflow_url"] == "https://mlflow.example.org/#/models/m/versions/2"
    assert [k for k, v in urls.items() if v is None] == [
        "mlflow_run_url",
        "previous_mlflow_url",
        "flow_run_url",
        "report_url",
    ]
    text = decision_markdown(outcome(champion=None), "manual", True, urls)
    assert "[candidate v2 in MLflow]" in text and "champion v" not in text.split("\n")[4]
    assert "gate.flow_run_url" not in decision_tags(outcome(), "manual", urls)


def test_rollback_markdown():
    result = {"champion": "1", "rolled_back": "2"}
    urls = rollback_urls(PUBLIC_LINKS, "m", result)
    assert urls == {
        "mlflow_url": "https://mlflow.example.org/#/models/m/versions/1",
        "rolled_back_mlflow_url": "https://mlflow.example.org/#/models/m/versions/2",
    }
    text = rollback_markdown(result, "bad model", urls)
    assert text.startswith("# Rollback — champion v2 → v1\n\nReason: bad model\n\n")
    assert f"[champion v1 in MLflow]({urls['mlflow_url']}) · [v2]" in text
    first = {"champion": "1", "rolled_back": "none"}
    first_urls = rollback_urls(PUBLIC_LINKS, "m", first)
    assert first_urls["rolled_back_mlflow_url"] is None
    assert "champion v– → v1" in rollback_markdown(first, "x", first_urls)


class ReadsSignal:
    """A stand-in model that scores each row from one column holding a prepared signal.

    `column_by_district` overrides the column for some districts; narcotics get a small bump
    so the behavioural direction check holds, as it does for any sensible arrest model.
    """

    def __init__(self, column: str, column_by_district: dict[str, str] | None = None) -> None:
        self.column, self.overrides = column, column_by_district or {}
        self.decision_threshold_ = 0.3

    def predict_proba(self, rows: pd.DataFrame) -> np.ndarray:
        proba = rows[self.column].astype("float64").to_numpy().copy()
        district = rows["district"].astype("string").fillna("").to_numpy()
        for name, column in self.overrides.items():
            own = district == name
            proba[own] = rows[column].astype("float64").to_numpy()[own]
        proba = np.nan_to_num(proba, nan=0.25)
        proba += np.where(rows["primary_type"].astype("string") == "NARCOTICS", 0.02, 0.0)
        proba = np.clip(proba, 0.0, 1.0)
        return np.column_stack([1 - proba, proba])


def staging_with_signals(seed: int = 3) -> StagingSet:
    """Generated incidents in five districts whose columns carry a strong, a weak and no signal."""
    from crimeflow.standins.generate import generate_incidents

    frame = generate_incidents("2024-05", "2024-05", rows_per_month=7000, seed=seed)
    frame = frame[frame[LABEL].notna()].head(7000).reset_index(drop=True)
    rng = np.random.default_rng(seed)
    y = rng.random(len(frame)) < 0.25
    frame[LABEL] = pd.array(y, dtype="boolean")
    frame["district"] = pd.array(
        np.repeat(["001", "002", "003", "004", "009"], [1500, 1500, 1500, 1500, 1000]),
        dtype="string",
    )
    frame["latitude"] = np.where(y, rng.uniform(0.2, 0.6, y.size), rng.uniform(0, 0.4, y.size))
    frame["longitude"] = np.where(y, rng.uniform(0.1, 0.5, y.size), rng.uniform(0, 0.4, y.size))
    frame["y_coordinate"] = rng.uniform(0, 0.5, y.size)
    return StagingSet(frame, ["2024-05"], 0)


def served(model: object, version: str) -> SimpleNamespace:
    return SimpleNamespace(model=model, version=version, run_id=None, experiment_id=None)


def test_the_gate_rejects_a_candidate_better_overall_but_clearly_worse_in_one_district():
    staging = staging_with_signals()
    # The champion ranks with a weak signal everywhere; the candidate with a strong one,
    # except in district 009, where it scores at random.
    champion = served(ReadsSignal("longitude"), "1")
    candidate = served(ReadsSignal("latitude", {"009": "y_coordinate"}), "2")
    config = GateSettings()
    outcome = judge_candidate(candidate, champion, None, staging, pd.DataFrame(), config)

    assert outcome.candidate_metrics["pr_auc"] > outcome.champion_metrics["pr_auc"] + 0.1
    assert not outcome.decision.passed
    assert [r.split(":")[0] for r in outcome.decision.reasons] == ["district.pr_auc"]
    reason = outcome.decision.reasons[0]
    assert "district 009" in reason and "district 001" not in reason
    # The same candidate without the blind spot passes.
    fixed = served(ReadsSignal("latitude"), "3")
    assert judge_candidate(fixed, champion, None, staging, pd.DataFrame(), config).decision.passed
