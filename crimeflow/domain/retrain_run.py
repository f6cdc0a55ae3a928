"""The retraining loop's pure parts: which months, which earlier run, the staging set, the
candidate's serving checks and the gate's outcome as tags, an artifact and an event payload,
each with links to the candidate in MLflow, the Prefect run and the drift report behind it.

Both models are scored on the same staging rows: the candidate's holdout months that the
champion did not learn from either, plus live traffic whose true outcome came back as feedback.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import pandas as pd

from crimeflow.contract.links import Links
from crimeflow.contract.months import month_bounds, previous_month, shift_month
from crimeflow.contract.schema import LABEL, SODA_COLUMNS
from crimeflow.contract.settings import GateSettings
from crimeflow.domain.audit import audit_by
from crimeflow.domain.behaviour import behavioural_failures
from crimeflow.domain.evaluate import evaluate
from crimeflow.domain.features import MODEL_INPUT_COLUMNS
from crimeflow.domain.gate import AreaMetrics, GateDecision, decide
from crimeflow.domain.model_card import metric_cell
from crimeflow.domain.training_run import FIT_MONTHS_TAG, HOLDOUT_MONTHS_TAG

SKIPPED = "Skipped"
LATENCY_CALLS = 200
LATENCY_ROUNDS = 3
LATENCY_WARMUP_CALLS = 10
METRICS_SHOWN = ("n", "positive_rate", "roc_auc", "pr_auc", "calibration_gap", "brier", "f1")


# --- which months, which runs -------------------------------------------------------------------


def missing_months(ingested: list[str], until: str) -> list[str]:
    """Months after the newest ingested one, up to and including `until`."""
    months, month = [], shift_month(max(ingested), 1)
    while month <= until:
        months.append(month)
        month = shift_month(month, 1)
    return months


def source_complete_month(newest: datetime) -> str:
    """The newest month a source whose newest incident is `newest` has in full: that month
    when the incident fell on its last day, else the month before."""
    month = f"{newest:%Y-%m}"
    last_day = month_bounds(month)[1] - timedelta(days=1)
    return month if newest.date() >= last_day.date() else shift_month(month, -1)


def default_until(today: date, source_newest: datetime | None) -> tuple[str, str]:
    """The newest month a retrain without `until` ingests and trains on, and why: the last
    complete month, or the newest month the source has in full when its data ends before."""
    last = previous_month(today)
    if source_newest is None:
        return last, f"the last complete month ({last}; the source's newest date is unknown)"
    complete = source_complete_month(source_newest)
    if complete < last:
        return complete, (
            f"the newest month the source has in full ({complete}; its newest incident is "
            f"{source_newest:%Y-%m-%d %H:%M}), before the last complete month {last}"
        )
    return last, f"the last complete month ({last}; the source has data up to it)"


def first_earlier_run(runs: Iterable[Any], me: Any, started: datetime) -> str | None:
    """The first of `runs` (Prefect flow runs) that started before `me` and did work, described.

    Ties on the start time go to the smaller run id, so of a burst exactly one run goes ahead.
    """
    for run in runs:
        if run.id == me.id or run.start_time is None or run.state is None:
            continue
        earlier = (run.start_time, str(run.id)) < (started, str(me.id))
        did_work = run.state.name != SKIPPED and run.state.type.value in ("RUNNING", "COMPLETED")
        if earlier and did_work:
            return f"{run.name} ({run.id}, {run.state.name}, started {run.start_time.isoformat()})"
    return None


# --- the staging set -----------------------------------------------------------------------------


def _months_tag(version: Any, name: str) -> set[str]:
    """A comma-joined months tag of a model version as a set (empty when absent)."""
    if version is None:
        return set()
    return {m for m in (version.tags.get(name) or "").split(",") if m}


def staging_months(candidate: Any, champion: Any) -> list[str]:
    """The candidate's holdout months that the champion did not learn from either."""
    return sorted(
        _months_tag(candidate, HOLDOUT_MONTHS_TAG) - _months_tag(champion, FIT_MONTHS_TAG)
    )


def labelled_traffic(logged: pd.DataFrame) -> pd.DataFrame:
    """Logged predictions whose true outcome came back, as labelled incidents."""
    rows = logged[logged["feedback_arrest"].notna()]
    # The log stores the API body, which has no `arrest`: the feedback is the label.
    labelled = rows.reindex(columns=list(SODA_COLUMNS))
    labelled[LABEL] = rows["feedback_arrest"].astype("boolean")
    return labelled


@dataclass
class StagingSet:
    """The rows both models are scored on, and where they came from."""

    frame: pd.DataFrame
    months: list[str]
    feedback_rows: int

    def describe(self) -> str:
        """'2018-09 (22,553 rows) + 0 feedback-labelled predictions'."""
        months = ", ".join(self.months) or "no lake months"
        lake_rows = len(self.frame) - self.feedback_rows
        return f"{months} ({lake_rows:,} rows) + {self.feedback_rows:,} feedback-labelled"


def assemble_staging_set(
    lake_rows: pd.DataFrame | None, months: list[str], feedback: pd.DataFrame, holdout_tag: Any
) -> StagingSet:
    """The labelled rows of the staging months plus the feedback-labelled traffic.

    `holdout_tag` (the candidate's holdout months) only explains an empty staging set.
    """
    parts = [] if lake_rows is None else [lake_rows]
    if len(feedback):
        parts.append(feedback)
    if not parts:
        raise ValueError(
            f"no staging data: the candidate's holdout months ({holdout_tag}) were all "
            "learnt by the champion, and no prediction has feedback yet"
        )
    frame = pd.concat(parts, ignore_index=True)
    frame = frame[frame[LABEL].notna()].reset_index(drop=True)
    return StagingSet(frame, months, len(feedback))


# --- the candidate's serving checks and the gate ---------------------------------------------


def single_row_p99_ms(
    model: Any, rows: pd.DataFrame, calls: int = LATENCY_CALLS, rounds: int = LATENCY_ROUNDS
) -> float:
    """p99 of `predict_proba` on one canonical row at a time (the API's single-row cost).

    The best of `rounds` rounds: on a shared machine a burst of other work inflates one round's
    tail, and the question is what the model costs, not what the neighbours did meanwhile.
    """
    inputs = rows.reindex(columns=list(MODEL_INPUT_COLUMNS))
    if inputs.empty:
        raise ValueError("no rows to time the model on")
    singles = [inputs.iloc[[i % len(inputs)]] for i in range(calls)]
    for row in singles[:LATENCY_WARMUP_CALLS]:
        model.predict_proba(row)
    p99s = []
    for _ in range(rounds):
        times = []
        for row in singles:
            start = time.perf_counter()
            model.predict_proba(row)
            times.append((time.perf_counter() - start) * 1000)
        p99s.append(float(np.percentile(times, 99)))
    return min(p99s)


def shadow_failures(model: Any, requests: pd.DataFrame) -> list[str]:
    """Problems scoring recently logged requests (an exception or invalid probabilities)."""
    if requests.empty:
        return []
    inputs = requests.reindex(columns=list(MODEL_INPUT_COLUMNS))
    try:
        proba = np.asarray(model.predict_proba(inputs))[:, 1]
    except Exception as error:  # any failure on real traffic disqualifies the candidate
        return [f"scoring {len(inputs):,} logged requests raised {error!r}"]
    bad = ~(np.isfinite(proba) & (proba >= 0) & (proba <= 1))
    if bad.any():
        return [f"{int(bad.sum())} of {len(inputs):,} logged requests got invalid probabilities"]
    return []


@dataclass
class GateOutcome:
    """What the gate saw and decided."""

    decision: GateDecision
    candidate_version: str
    champion_version: str | None
    champion_note: str | None
    candidate_metrics: dict[str, Any]
    champion_metrics: dict[str, Any] | None
    p99_ms: float
    shadow_rows: int
    staging: str
    candidate_run_id: str | None = None
    candidate_experiment_id: str | None = None
    # The same metrics without the arrest-defined crime types (the honest measure of skill).
    candidate_excluding: dict[str, Any] | None = None
    champion_excluding: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (flow result, event payload source)."""
        return {
            **self.decision.to_dict(),
            "candidate_version": self.candidate_version,
            "champion_version": self.champion_version,
            "champion_note": self.champion_note,
            "candidate_metrics": self.candidate_metrics,
            "champion_metrics": self.champion_metrics,
            "p99_ms": self.p99_ms,
            "shadow_rows": self.shadow_rows,
            "staging": self.staging,
            "candidate_excluding_arrest_defined": self.candidate_excluding,
            "champion_excluding_arrest_defined": self.champion_excluding,
        }


def district_metrics(model: Any, frame: pd.DataFrame, min_rows: int) -> AreaMetrics:
    """Rows and PR-AUC per police district of `model` on labelled `frame` (districts with
    fewer than `min_rows` rows left out: the gate's per-district rule ignores them)."""
    proba = np.asarray(model.predict_proba(frame))[:, 1]
    y = frame[LABEL].astype("int64").to_numpy()
    threshold = float(getattr(model, "decision_threshold_", 0.5))
    table = audit_by(frame, y, proba, threshold, "district", min_rows)
    own = table[~table["pooled"]]
    return {
        row.area: {"rows": int(row.rows), "pr_auc": None if pd.isna(row.pr_auc) else row.pr_auc}
        for row in own.itertuples()
    }


class ServedModel(Protocol):
    """A model as the API serves it: the fitted estimator, its registry version and run."""

    model: Any
    version: str
    run_id: str | None
    experiment_id: str | None


def judge_candidate(
    candidate: ServedModel,
    champion: ServedModel | None,
    champion_note: str | None,
    staging: StagingSet,
    recent: pd.DataFrame,
    config: GateSettings,
) -> GateOutcome:
    """Score both models on the staging set, time and shadow-test the candidate, decide."""
    candidate_report = evaluate(candidate.model, staging.frame)
    candidate_metrics = candidate_report["model"]
    champion_metrics = champion_excluding = None
    if champion is not None:
        champion_report = evaluate(champion.model, staging.frame)
        champion_metrics = champion_report["model"]
        champion_excluding = champion_report["excluding_arrest_defined"]["model"]
    min_rows = config.district_min_rows
    candidate_districts = district_metrics(candidate.model, staging.frame, min_rows)
    champion_districts = None
    if champion is not None:
        champion_districts = district_metrics(champion.model, staging.frame, min_rows)
    p99 = single_row_p99_ms(candidate.model, staging.frame)
    decision = decide(
        candidate_metrics,
        champion_metrics,
        p99_ms=p99,
        shadow_failures=shadow_failures(candidate.model, recent),
        behaviour_failures=behavioural_failures(candidate.model, staging.frame),
        config=config,
        candidate_districts=candidate_districts,
        champion_districts=champion_districts,
    )
    return GateOutcome(
        decision=decision,
        candidate_version=candidate.version,
        champion_version=None if champion is None else champion.version,
        champion_note=champion_note,
        candidate_metrics=candidate_metrics,
        champion_metrics=champion_metrics,
        p99_ms=p99,
        shadow_rows=len(recent),
        staging=staging.describe(),
        candidate_run_id=candidate.run_id,
        candidate_experiment_id=candidate.experiment_id,
        candidate_excluding=candidate_report["excluding_arrest_defined"]["model"],
        champion_excluding=champion_excluding,
    )


# --- recording the decision ----------------------------------------------------------------------

Urls = dict[str, str | None]

# Version tags read back by the loop exporter: the verdict, when, and how long the retrain took.
GATE_TAG = "gate"
GATE_PASSED, GATE_FAILED = "passed", "failed"
GATE_DECIDED_AT_TAG = "gate.decided_at"
RETRAIN_SECONDS_TAG = "retrain.seconds"


def gate_urls(
    links: Links,
    model_name: str,
    outcome: GateOutcome,
    flow_run_id: str | None,
    report_id: str | None,
) -> Urls:
    """The decision's links by payload key: the candidate's version and run and the champion's
    version in MLflow, the retrain's Prefect flow run, the drift report that triggered it."""
    champion = outcome.champion_version
    return {
        "mlflow_url": links.model_version(model_name, outcome.candidate_version),
        "mlflow_run_url": links.optional_run(
            outcome.candidate_experiment_id, outcome.candidate_run_id
        ),
        "previous_mlflow_url": links.model_version(model_name, champion) if champion else None,
        "flow_run_url": links.optional_flow_run(flow_run_id),
        "report_url": links.report(report_id) if report_id else None,
    }


def decision_tags(outcome: GateOutcome, reason: str, urls: Urls | None = None) -> dict[str, str]:
    """MLflow version tags: gate=passed|failed, the reasons, both models' staging metrics, and
    links back to the retrain's flow run and drift report."""
    tags = {
        GATE_TAG: GATE_PASSED if outcome.decision.passed else GATE_FAILED,
        "gate.reasons": "; ".join(outcome.decision.reasons) or "all checks passed",
        "gate.trigger": reason,
        "gate.staging": outcome.staging,
        "gate.champion_version": outcome.champion_version or "none",
        GATE_DECIDED_AT_TAG: datetime.now(UTC).isoformat(),
        "gate.p99_ms": f"{outcome.p99_ms:.2f}",
    }
    for who, metrics in (
        ("candidate", outcome.candidate_metrics),
        ("champion", outcome.champion_metrics),
    ):
        for name in ("roc_auc", "pr_auc", "calibration_gap"):
            value = None if metrics is None else metrics.get(name)
            tags[f"gate.{who}.{name}"] = "none" if value is None else f"{value:.4f}"
    for who, metrics in (
        ("candidate", outcome.candidate_excluding),
        ("champion", outcome.champion_excluding),
    ):
        for name in ("roc_auc", "pr_auc"):
            value = None if metrics is None else metrics.get(name)
            if value is not None:
                tags[f"gate.{who}.excluding_arrest_defined.{name}"] = f"{value:.4f}"
    for key in ("flow_run_url", "report_url"):
        url = (urls or {}).get(key)
        if url:
            tags[f"gate.{key}"] = url
    # MLflow caps a tag value at 5,000 characters.
    return {k: v[:5000] for k, v in tags.items()}


def _link_line(outcome: GateOutcome, urls: Urls) -> str:
    """'[candidate v2 in MLflow](...) · [its run](...) · ...' for the links that exist."""
    labels = {
        "mlflow_url": f"candidate v{outcome.candidate_version} in MLflow",
        "mlflow_run_url": "its training run",
        "previous_mlflow_url": f"champion v{outcome.champion_version}",
        "report_url": "drift report",
        "flow_run_url": "this Prefect run",
    }
    return " · ".join(f"[{label}]({urls[key]})" for key, label in labels.items() if urls.get(key))


def _side_by_side(
    outcome: GateOutcome, candidate: dict[str, Any], champion: dict[str, Any] | None
) -> list[str]:
    """The candidate's and the champion's staging metrics as table lines."""
    lines = [
        f"| metric | candidate v{outcome.candidate_version} "
        f"| champion v{outcome.champion_version or '–'} |",
        "|---|---:|---:|",
    ]
    other = champion or {}
    return lines + [
        f"| {name} | {metric_cell(candidate.get(name))} | {metric_cell(other.get(name))} |"
        for name in METRICS_SHOWN
    ]


def gate_body(outcome: GateOutcome, reason: str, urls: Urls) -> list[str]:
    """Trigger, links, the staging metrics (overall and excluding the arrest-defined types) and
    every check: what the artifact and the model card show below their titles."""
    lines = [
        f"Trigger: {reason} · champion: v{outcome.champion_version or '–'}"
        + (f" ({outcome.champion_note})" if outcome.champion_note else "")
        + f" · staging set: {outcome.staging}",
        "",
        _link_line(outcome, urls),
        "",
        *_side_by_side(outcome, outcome.candidate_metrics, outcome.champion_metrics),
    ]
    if outcome.candidate_excluding is not None:
        lines += [
            "",
            "Excluding the arrest-defined crime types (records created by an arrest, e.g. "
            "NARCOTICS, PROSTITUTION): the honest measure of skill.",
            "",
            *_side_by_side(outcome, outcome.candidate_excluding, outcome.champion_excluding),
        ]
    lines += ["", "| check | passed | detail |", "|---|---|---|"]
    return lines + [
        f"| {c.name} | {'yes' if c.passed else '**no**'} | {c.detail} |"
        for c in outcome.decision.checks
    ]


def decision_markdown(outcome: GateOutcome, reason: str, promoted: bool, urls: Urls) -> str:
    """The Prefect artifact: the verdict, the links, the side-by-side tables, every check."""
    verdict = "**Promoted**" if promoted else "**Rejected**"
    title = f"# Staging gate — candidate v{outcome.candidate_version}: {verdict}"
    return "\n".join([title, "", *gate_body(outcome, reason, urls)])


def gate_card_section(outcome: GateOutcome, reason: str, promoted: bool, urls: Urls) -> str:
    """The model card's "Gate decision" section: verdict and date, then `gate_body`."""
    verdict = "**Promoted** to champion" if promoted else "**Rejected** (not served)"
    failed = "; ".join(outcome.decision.reasons) or "all checks passed"
    decided = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"{verdict} by the staging gate on {decided}: {failed}.", ""]
    return "\n".join(lines + gate_body(outcome, reason, urls))


def decision_payload(outcome: GateOutcome, reason: str, urls: Urls) -> dict[str, Any]:
    """The promoted/rejected event's payload, links included (`mlflow_url`: the candidate)."""
    return {
        "version": outcome.candidate_version,
        "previous_version": outcome.champion_version,
        "reason": reason,
        "reasons": "; ".join(outcome.decision.reasons),
        "staging": outcome.staging,
        "candidate_pr_auc": outcome.candidate_metrics.get("pr_auc"),
        "champion_pr_auc": (outcome.champion_metrics or {}).get("pr_auc"),
        **urls,
    }


def rollback_urls(links: Links, model_name: str, result: dict[str, str]) -> Urls:
    """The rollback's links: the champion now and the version rolled back, in MLflow."""
    rolled_back = result["rolled_back"]
    return {
        "mlflow_url": links.model_version(model_name, result["champion"]),
        "rolled_back_mlflow_url": (
            None if rolled_back == "none" else links.model_version(model_name, rolled_back)
        ),
    }


def rollback_markdown(result: dict[str, str], reason: str, urls: Urls) -> str:
    """The rollback artifact: from which version to which (linked to MLflow), and why."""
    rolled_back = "–" if result["rolled_back"] == "none" else result["rolled_back"]
    text = f"# Rollback — champion v{rolled_back} → v{result['champion']}\n\nReason: {reason}"
    links = [f"[champion v{result['champion']} in MLflow]({urls['mlflow_url']})"]
    if urls.get("rolled_back_mlflow_url"):
        links.append(f"[v{rolled_back}]({urls['rolled_back_mlflow_url']})")
    return text + "\n\n" + " · ".join(links)
