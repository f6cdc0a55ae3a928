"""Prefect tasks of the retraining loop: debounce, staging set, the staging gate, promotion.

The candidate is staged exactly as the API would serve it (`load_serving_model`, the registry's
`challenger` alias, our skops loader, a warm-up score), so a model that cannot be served cannot
pass. Both models are scored on the same staging rows: the candidate's holdout months that the
champion did not learn from either, plus live traffic whose true outcome came back as feedback.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact

from api.model_service import ServingModel, load_serving_model
from crimeflow.contract.events import MODEL_PROMOTED, MODEL_REJECTED, MODEL_ROLLED_BACK, emit
from crimeflow.contract.months import previous_month, shift_month
from crimeflow.contract.schema import LABEL, SODA_COLUMNS
from crimeflow.contract.settings import Settings
from crimeflow.domain.behaviour import behavioural_failures
from crimeflow.domain.evaluate import evaluate
from crimeflow.domain.features import MODEL_INPUT_COLUMNS
from crimeflow.domain.gate import GateDecision, decide
from crimeflow.domain.training_run import FIT_MONTHS_TAG, HOLDOUT_MONTHS_TAG
from crimeflow.stores.lake import CLEAN_CRIMES, Lake
from crimeflow.stores.prediction_log import read_predictions
from crimeflow.stores.registry import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS_CHAMPION,
    mlflow_client,
    set_alias,
    version_by_alias,
)
from tasks import step

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


def target_month(until: str | None, today: datetime) -> str:
    """The newest month to retrain on: `until`, else the last complete month."""
    return until or previous_month(today.date())


@step
def earlier_retrain(flow_run_id: str | None, debounce_s: float) -> str | None:
    """Another retrain run that started within `debounce_s` before this one and did work.

    The earliest run of a burst wins: runs that started later see it and skip, so a burst of
    drift events causes one retrain even without the deployment's concurrency limit.
    """
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterStartTime,
    )

    if flow_run_id is None or debounce_s <= 0:
        return None
    with get_client(sync_client=True) as client:
        me = client.read_flow_run(flow_run_id)
        started = me.start_time or datetime.now(UTC)
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["retrain"])),
            flow_run_filter=FlowRunFilter(
                start_time=FlowRunFilterStartTime(after_=started - timedelta(seconds=debounce_s))
            ),
        )
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


@step
def build_staging_set(settings: Settings, lake: Lake, now: datetime) -> StagingSet:
    """The staging rows: unseen labelled lake months plus feedback-labelled live traffic."""
    client = mlflow_client(settings)
    candidate = version_by_alias(client, settings.model_name, CHALLENGER)
    champion = version_by_alias(client, settings.model_name, CHAMPION)
    months = [m for m in staging_months(candidate, champion) if m in lake.months(CLEAN_CRIMES)]
    parts = [lake.read_months(CLEAN_CRIMES, months)] if months else []
    since = now - timedelta(days=settings.drift.window_days)
    feedback = labelled_traffic(read_predictions(settings, since, now))
    if len(feedback):
        parts.append(feedback)
    if not parts:
        raise ValueError(
            "no staging data: the candidate's holdout months "
            f"({candidate.tags.get(HOLDOUT_MONTHS_TAG) if candidate else None}) were all "
            "learnt by the champion, and no prediction has feedback yet"
        )
    frame = pd.concat(parts, ignore_index=True)
    frame = frame[frame[LABEL].notna()].reset_index(drop=True)
    staging = StagingSet(frame, months, len(feedback))
    get_run_logger().info("staging set: %s", staging.describe())
    return staging


# --- staging both models -------------------------------------------------------------------------


@dataclass
class Staged:
    """A model as the API would serve it, or why it could not be loaded."""

    model: ServingModel | None
    error: str | None = None


@step
def stage_candidate(settings: Settings) -> ServingModel:
    """Load the challenger through the API's own loader; any failure fails the retrain."""
    return load_serving_model(settings, CHALLENGER)


@step
def stage_champion(settings: Settings) -> Staged:
    """Load the champion the same way, or say why it cannot be (then only floors apply)."""
    try:
        return Staged(load_serving_model(settings, CHAMPION))
    except LookupError as error:
        return Staged(None, str(error))
    except Exception as error:  # a broken champion must not block a good candidate
        get_run_logger().warning("the champion cannot be loaded: %r", error)
        return Staged(None, f"cannot be loaded: {error!r}")


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
        }


@step
def run_gate(
    settings: Settings, candidate: ServingModel, champion: Staged, staging: StagingSet
) -> GateOutcome:
    """Score both models on the staging set, time and shadow-test the candidate, decide."""
    now = datetime.now(UTC)
    candidate_metrics = evaluate(candidate.model, staging.frame)["model"]
    champion_metrics = None
    if champion.model is not None:
        champion_metrics = evaluate(champion.model.model, staging.frame)["model"]
    since = now - timedelta(days=settings.drift.window_days)
    recent = read_predictions(settings, since, now).tail(settings.gate.shadow_rows)
    p99 = single_row_p99_ms(candidate.model, staging.frame)
    decision = decide(
        candidate_metrics,
        champion_metrics,
        p99_ms=p99,
        shadow_failures=shadow_failures(candidate.model, recent),
        behaviour_failures=behavioural_failures(candidate.model, staging.frame),
        config=settings.gate,
    )
    return GateOutcome(
        decision=decision,
        candidate_version=candidate.version,
        champion_version=None if champion.model is None else champion.model.version,
        champion_note=champion.error,
        candidate_metrics=candidate_metrics,
        champion_metrics=champion_metrics,
        p99_ms=p99,
        shadow_rows=len(recent),
        staging=staging.describe(),
    )


# --- recording and acting on the decision -------------------------------------------------------


def decision_tags(outcome: GateOutcome, reason: str) -> dict[str, str]:
    """MLflow version tags: gate=passed|failed, the reasons, both models' staging metrics."""
    tags = {
        "gate": "passed" if outcome.decision.passed else "failed",
        "gate.reasons": "; ".join(outcome.decision.reasons) or "all checks passed",
        "gate.trigger": reason,
        "gate.staging": outcome.staging,
        "gate.champion_version": outcome.champion_version or "none",
        "gate.decided_at": datetime.now(UTC).isoformat(),
        "gate.p99_ms": f"{outcome.p99_ms:.2f}",
    }
    for who, metrics in (
        ("candidate", outcome.candidate_metrics),
        ("champion", outcome.champion_metrics),
    ):
        for name in ("roc_auc", "pr_auc", "calibration_gap"):
            value = None if metrics is None else metrics.get(name)
            tags[f"gate.{who}.{name}"] = "none" if value is None else f"{value:.4f}"
    # MLflow caps a tag value at 5,000 characters.
    return {k: v[:5000] for k, v in tags.items()}


def _cell(value: Any) -> str:
    """A metric in the side-by-side table."""
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4f}"


def decision_markdown(outcome: GateOutcome, reason: str, promoted: bool) -> str:
    """The Prefect artifact: the verdict, the side-by-side table, every check."""
    verdict = "**Promoted**" if promoted else "**Rejected**"
    champion = outcome.champion_metrics or {}
    lines = [
        f"# Staging gate — candidate v{outcome.candidate_version}: {verdict}",
        "",
        f"Trigger: {reason} · champion: v{outcome.champion_version or '–'}"
        + (f" ({outcome.champion_note})" if outcome.champion_note else "")
        + f" · staging set: {outcome.staging}",
        "",
        f"| metric | candidate v{outcome.candidate_version} "
        f"| champion v{outcome.champion_version or '–'} |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {name} | {_cell(outcome.candidate_metrics.get(name))} | {_cell(champion.get(name))} |"
        for name in METRICS_SHOWN
    ]
    lines += ["", "| check | passed | detail |", "|---|---|---|"]
    lines += [
        f"| {c.name} | {'yes' if c.passed else '**no**'} | {c.detail} |"
        for c in outcome.decision.checks
    ]
    return "\n".join(lines)


def promote(client: MlflowClient, name: str, version: str, champion: str | None) -> None:
    """Move `champion` to `version` and `previous-champion` to the old one, as one step.

    Order matters: `previous-champion` first (the champion is untouched if that fails), then
    `champion`; if the second call fails, `previous-champion` is put back where it was, so a
    failure midway leaves both aliases as they were.
    """
    before = version_by_alias(client, name, PREVIOUS_CHAMPION)
    if champion is not None:
        set_alias(client, name, PREVIOUS_CHAMPION, champion)
    try:
        set_alias(client, name, CHAMPION, version)
    except Exception:
        if champion is not None:
            if before is None:
                client.delete_registered_model_alias(name, PREVIOUS_CHAMPION)
            else:
                set_alias(client, name, PREVIOUS_CHAMPION, str(before.version))
        raise


@step
def record_and_act(settings: Settings, outcome: GateOutcome, reason: str) -> bool:
    """Tag the candidate, promote it if the gate passed, publish the artifact, emit the event."""
    client = mlflow_client(settings)
    name, version = settings.model_name, outcome.candidate_version
    for key, value in decision_tags(outcome, reason).items():
        client.set_model_version_tag(name, version, key, value)
    passed = outcome.decision.passed
    if passed:
        promote(client, name, version, outcome.champion_version)
        client.set_model_version_tag(name, version, "promoted_by", f"gate ({reason})")
        client.set_model_version_tag(name, version, "promoted_at", datetime.now(UTC).isoformat())
    create_markdown_artifact(
        key="staging-gate",
        markdown=decision_markdown(outcome, reason, passed),
        description=f"Staging gate: v{version} {'promoted' if passed else 'rejected'}",
    )
    payload = {
        "version": version,
        "previous_version": outcome.champion_version,
        "reason": reason,
        "reasons": "; ".join(outcome.decision.reasons),
        "staging": outcome.staging,
        "candidate_pr_auc": outcome.candidate_metrics.get("pr_auc"),
        "champion_pr_auc": (outcome.champion_metrics or {}).get("pr_auc"),
    }
    emit(MODEL_PROMOTED if passed else MODEL_REJECTED, name, version, payload)
    get_run_logger().info(
        "v%s %s: %s",
        version,
        "promoted" if passed else "rejected",
        "; ".join(outcome.decision.reasons) or "all checks passed",
    )
    return passed


@step
def roll_back(settings: Settings, reason: str) -> dict[str, str]:
    """Point `champion` back at `previous-champion` (and `previous-champion` at the one left)."""
    client = mlflow_client(settings)
    name = settings.model_name
    previous = version_by_alias(client, name, PREVIOUS_CHAMPION)
    if previous is None:
        raise LookupError(f"{name!r} has no {PREVIOUS_CHAMPION!r} to roll back to")
    current = version_by_alias(client, name, CHAMPION)
    current_version = None if current is None else str(current.version)
    promote(client, name, str(previous.version), current_version)
    now = datetime.now(UTC).isoformat()
    if current_version is not None:
        client.set_model_version_tag(name, current_version, "rolled_back_at", now)
        client.set_model_version_tag(name, current_version, "rolled_back_reason", reason)
    client.set_model_version_tag(name, str(previous.version), "promoted_by", f"rollback ({reason})")
    client.set_model_version_tag(name, str(previous.version), "promoted_at", now)
    result = {"champion": str(previous.version), "rolled_back": current_version or "none"}
    emit(MODEL_ROLLED_BACK, name, str(previous.version), {**result, "reason": reason})
    create_markdown_artifact(
        key="rollback",
        markdown=(
            f"# Rollback — champion v{current_version or '–'} → v{previous.version}\n\n"
            f"Reason: {reason}"
        ),
        description="Champion rolled back",
    )
    return result
