"""Prefect tasks of the retraining loop: debounce, staging set, the staging gate, promotion.

The candidate is staged exactly as the API would serve it (`load_serving_model`, the registry's
`challenger` alias, our skops loader, a warm-up score), so a model that cannot be served cannot
pass. The rules and the staging set live in `crimeflow.domain.retrain_run`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mlflow.tracking import MlflowClient
from prefect import get_run_logger, runtime
from prefect.artifacts import create_markdown_artifact

from crimeflow.contract.events import MODEL_PROMOTED, MODEL_REJECTED, MODEL_ROLLED_BACK, emit
from crimeflow.contract.links import Links
from crimeflow.contract.months import newest_mature_month
from crimeflow.contract.schema import chicago
from crimeflow.contract.settings import Settings
from crimeflow.domain.retrain_run import (
    RETRAIN_SECONDS_TAG,
    GateOutcome,
    StagingSet,
    Urls,
    assemble_staging_set,
    decision_markdown,
    decision_payload,
    default_until,
    first_earlier_run,
    gate_card_section,
    gate_urls,
    judge_candidate,
    labelled_traffic,
    rollback_markdown,
    rollback_urls,
    staging_months,
)
from crimeflow.domain.training_run import HOLDOUT_MONTHS_TAG
from crimeflow.stores.lake import CLEAN_CRIMES, Lake
from crimeflow.stores.prediction_log import read_predictions
from crimeflow.stores.promotion import record_decision, roll_back_champion
from crimeflow.stores.registry import CHALLENGER, CHAMPION, mlflow_client, version_by_alias
from crimeflow.stores.serving import ServingModel, load_serving_model
from crimeflow.stores.socrata import SodaSource
from crimeflow.stores.training_log import record_decision_on_card
from tasks import step


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
    return first_earlier_run(runs, me, started)


@step
def choose_until(settings: Settings, until: str | None, now: datetime, ask_source: bool) -> str:
    """The newest month this retrain ingests and trains on: `until`, else
    CRIMEFLOW_RETRAIN_UNTIL, else the last complete month or, when the source's data ends
    before it, the newest month the source has in full; recorded as the `retrain-until`
    artifact."""
    requested = until or settings.retrain.until or None
    if requested is not None:
        month, why = requested, "requested (the `until` parameter or CRIMEFLOW_RETRAIN_UNTIL)"
    else:
        newest = None
        if ask_source:
            newest = SodaSource(settings.socrata).newest(settings.socrata.crimes_dataset)
        month, why = default_until(now.astimezone(chicago()).date(), newest)
    mature = newest_mature_month(now.astimezone(chicago()).date(), settings.etl.label_maturity_days)
    text = (
        f"# Retrain until {month}\n\n{month}: {why}.\n\nTraining, validation and holdout use "
        f"months up to {min(month, mature)}: labels count as final "
        f"{settings.etl.label_maturity_days} days after the incident "
        f"(CRIMEFLOW_LABEL_MATURITY_DAYS), so {mature} is the newest mature month."
    )
    create_markdown_artifact(key="retrain-until", markdown=text, description="Retrain months")
    get_run_logger().info("retrain until %s: %s", month, why)
    return month


@step
def build_staging_set(settings: Settings, lake: Lake, now: datetime) -> StagingSet:
    """The staging rows: unseen labelled lake months plus feedback-labelled live traffic."""
    client = mlflow_client(settings)
    candidate = version_by_alias(client, settings.model_name, CHALLENGER)
    champion = version_by_alias(client, settings.model_name, CHAMPION)
    months = [m for m in staging_months(candidate, champion) if m in lake.months(CLEAN_CRIMES)]
    lake_rows = lake.read_months(CLEAN_CRIMES, months) if months else None
    since = now - timedelta(days=settings.drift.window_days)
    feedback = labelled_traffic(read_predictions(settings, since, now))
    holdout_tag = candidate.tags.get(HOLDOUT_MONTHS_TAG) if candidate else None
    staging = assemble_staging_set(lake_rows, months, feedback, holdout_tag)
    get_run_logger().info("staging set: %s", staging.describe())
    return staging


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


@step
def run_gate(
    settings: Settings, candidate: ServingModel, champion: Staged, staging: StagingSet
) -> GateOutcome:
    """Score both models on the staging set, time and shadow-test the candidate, decide."""
    now = datetime.now(UTC)
    since = now - timedelta(days=settings.drift.window_days)
    recent = read_predictions(settings, since, now).tail(settings.gate.shadow_rows)
    return judge_candidate(
        candidate, champion.model, champion.error, staging, recent, settings.gate
    )


@step
def record_and_act(
    settings: Settings,
    outcome: GateOutcome,
    reason: str,
    report_id: str | None = None,
    started_at: datetime | None = None,
) -> bool:
    """Tag the candidate, promote it if the gate passed, publish the artifact, emit the event.

    `report_id` is the drift report that triggered the retrain, linked from all three.
    `started_at`, the retrain's start, gives the `retrain.seconds` tag: how long refreshing,
    training and staging took (the loop exporter reports it).
    """
    name, version = settings.model_name, outcome.candidate_version
    links = Links.from_settings(settings)
    urls = gate_urls(links, name, outcome, runtime.flow_run.id, report_id)
    client = mlflow_client(settings)
    passed = record_decision(client, name, outcome, reason, urls)
    record_on_card(client, outcome, reason, passed, urls)
    if started_at is not None:
        seconds = (datetime.now(UTC) - started_at).total_seconds()
        client.set_model_version_tag(name, version, RETRAIN_SECONDS_TAG, f"{seconds:.1f}")
    create_markdown_artifact(
        key="staging-gate",
        markdown=decision_markdown(outcome, reason, passed, urls),
        description=f"Staging gate: v{version} {'promoted' if passed else 'rejected'}",
    )
    payload = decision_payload(outcome, reason, urls)
    emit(MODEL_PROMOTED if passed else MODEL_REJECTED, name, version, payload)
    get_run_logger().info(
        "v%s %s: %s",
        version,
        "promoted" if passed else "rejected",
        "; ".join(outcome.decision.reasons) or "all checks passed",
    )
    return passed


def record_on_card(
    client: MlflowClient, outcome: GateOutcome, reason: str, passed: bool, urls: Urls
) -> None:
    """Write the decision into the candidate's model card (the version's tags already hold it).

    A card that cannot be updated is logged, not raised: the decision itself is recorded and
    acted on, and a missing paragraph must not undo a promotion.
    """
    logger = get_run_logger()
    if outcome.candidate_run_id is None:
        logger.warning(
            "v%s has no training run: no model card to update", outcome.candidate_version
        )
        return
    section = gate_card_section(outcome, reason, passed, urls)
    try:
        updated = record_decision_on_card(client, outcome.candidate_run_id, section)
    except Exception as error:  # the registry answered the decision; the card is a report
        logger.warning(
            "could not update the model card of v%s: %r", outcome.candidate_version, error
        )
        return
    if not updated:
        logger.warning("v%s's training run has no model card", outcome.candidate_version)


@step
def roll_back(settings: Settings, reason: str) -> dict[str, str]:
    """Point `champion` back at `previous-champion` (and `previous-champion` at the one left)."""
    result = roll_back_champion(mlflow_client(settings), settings.model_name, reason)
    urls = rollback_urls(Links.from_settings(settings), settings.model_name, result)
    payload = {**result, "reason": reason, **urls}
    emit(MODEL_ROLLED_BACK, settings.model_name, result["champion"], payload)
    create_markdown_artifact(
        key="rollback",
        markdown=rollback_markdown(result, reason, urls),
        description="Champion rolled back",
    )
    return result
