"""The monthly ETL: Socrata → validated, enriched, partitioned data lake."""

from __future__ import annotations

from datetime import datetime

from prefect import flow, runtime

from crimeflow.contract.schema import chicago
from crimeflow.contract.settings import get_settings
from crimeflow.domain.etl_run import run_summary
from crimeflow.domain.etl_summary import Stopwatch
from crimeflow.domain.ingest import plan_months
from crimeflow.stores.etl_run import late_updates_where, run_manifest
from crimeflow.stores.lake import Lake
from crimeflow.stores.socrata import crimes_in_month_where
from tasks.etl_steps import (
    commit_run,
    load_state,
    publish_summary,
    stage_raw,
    update_training_window,
    validate_months,
    write_months,
    write_stations,
)
from tasks.extract import extract_crimes, extract_stations


@flow(name="monthly-etl")
def monthly_etl(month: str | None = None) -> dict:
    """Pull one month of crimes (default: last month; a backfill on an empty lake) into the lake."""
    settings = get_settings()
    lake = Lake.from_settings(settings)
    now = datetime.now(chicago())
    run_id = str(runtime.flow_run.id or now.strftime("%Y%m%dT%H%M%S"))
    clock = Stopwatch()

    state = load_state(lake)
    months = plan_months(month, state.months, now.date(), settings.etl.backfill_months)
    with clock("extract"):
        stations = extract_stations(settings.socrata)
        pulled = {m: extract_crimes(settings.socrata, crimes_in_month_where(m)) for m in months}
        late_where = late_updates_where(state, months)
        late = extract_crimes(settings.socrata, late_where) if late_where else None
    with clock("upsert"):
        staged = stage_raw(lake, pulled, late, state.months)
    with clock("validate+enrich"):
        checked = validate_months(staged, stations, settings.etl.max_bad_row_share)
    with clock("write"):
        stations_written = write_stations(lake, stations)
        written = write_months(lake, checked)
        window = update_training_window(lake, settings.etl.training_window_months)

    summary = run_summary(run_id, settings.lake_url, checked, written, late, window, clock.seconds)
    manifest = run_manifest(settings.socrata, summary, months, written, stations_written, now)
    commit_run(lake, state, run_id, checked, manifest, datetime.now(chicago()))
    publish_summary(lake, summary, checked)
    return summary.to_json()


if __name__ == "__main__":
    monthly_etl()
