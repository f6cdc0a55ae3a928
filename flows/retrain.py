"""The retraining loop: refresh the lake → train a challenger → staging gate → promote or reject.

`retrain` is what the `crimeflow.drift.detected` trigger runs (reason `drift`), what a completed
run of the monthly-etl deployment starts (reason `schedule`, until the ETL's month) and what
`crimeflow retrain` runs by hand; `rollback` moves the champion back to the previous one. The API
follows either change by itself: it polls the `champion` alias and hot-swaps the model.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, runtime
from prefect.states import Completed, State

from crimeflow.contract.settings import get_settings
from crimeflow.domain.retrain_run import SKIPPED, missing_months
from crimeflow.stores.lake import Lake
from flows.etl import monthly_etl
from flows.train import train
from tasks.etl_steps import load_state
from tasks.retrain_steps import (
    build_staging_set,
    choose_until,
    earlier_retrain,
    record_and_act,
    roll_back,
    run_gate,
    stage_candidate,
    stage_champion,
)

# Reasons an event trigger passes (drift, performance): debounced together.
TRIGGERED_REASONS = ("drift", "performance")


def refresh_lake(lake: Lake, until: str) -> list[str]:
    """Run the ETL (as subflows) for every month up to `until` the lake has not ingested yet."""
    known = load_state(lake).months
    if not known:
        # An empty lake: the ETL's own backfill, ending at `until`.
        return monthly_etl(until=until)["window"]
    months = missing_months(known, until)
    for month in months:
        monthly_etl(month=month)
    return months


@flow(name="retrain")
def retrain(
    reason: str = "manual",
    drift_report_id: str | None = None,
    refresh: bool = True,
    until: str | None = None,
) -> dict | State:
    """Retrain on the newest window and promote the challenger only if the staging gate passes.

    `until` (YYYY-MM) is the newest month to ingest and train on; default
    CRIMEFLOW_RETRAIN_UNTIL, else the last complete month or, when the source ends before it,
    the newest month the source has (training stops at the newest month with mature labels).
    A drift- or performance-triggered run skips itself when another retrain started shortly
    before it.
    """
    settings = get_settings()
    lake = Lake.from_settings(settings)
    now = datetime.now(UTC)
    trigger = reason if drift_report_id is None else f"{reason} (report {drift_report_id})"

    if reason in TRIGGERED_REASONS:
        earlier = earlier_retrain(runtime.flow_run.id, settings.retrain.debounce_s)
        if earlier is not None:
            return Completed(name=SKIPPED, message=f"debounced: {earlier} retrains already")

    month = choose_until(settings, until, now, ask_source=refresh)
    ingested = refresh_lake(lake, month) if refresh else []
    trained = train(until=month, holdout_months=settings.retrain.holdout_months)

    candidate = stage_candidate(settings)
    champion = stage_champion(settings)
    staging = build_staging_set(settings, lake, now)
    outcome = run_gate(settings, candidate, champion, staging)
    promoted = record_and_act(settings, outcome, trigger, drift_report_id, started_at=now)
    return {
        "reason": trigger,
        "ingested_months": ingested,
        "until": month,
        "trained_version": trained["version"],
        "promoted": promoted,
        "gate": outcome.to_dict(),
    }


@flow(name="rollback")
def rollback(reason: str = "manual") -> dict:
    """Point `champion` back at `previous-champion`; the API follows within its poll interval."""
    return roll_back(get_settings(), reason)


if __name__ == "__main__":
    retrain()
