"""The monthly ETL: Socrata → validated, enriched, partitioned data lake, one month at a time."""

from __future__ import annotations

from datetime import datetime

import geopandas as gpd
import pandas as pd
from prefect import flow, runtime

from crimeflow.contract.schema import chicago
from crimeflow.contract.settings import Settings, get_settings
from crimeflow.domain.etl_run import MonthOutcome, month_outcome, months_to_run, run_summary
from crimeflow.domain.etl_summary import Stopwatch
from crimeflow.domain.ingest import plan_months
from crimeflow.stores.etl_run import run_manifest
from crimeflow.stores.lake import Lake, WriteResult
from crimeflow.stores.socrata import crimes_in_month_where
from tasks.etl_steps import (
    commit_run,
    load_state,
    publish_summary,
    stage_raw,
    update_training_window,
    validate_month,
    write_boundary_layers,
    write_month,
    write_stations,
)
from tasks.extract import (
    extract_boundaries,
    extract_crimes,
    extract_late_updates,
    extract_stations,
)


@flow(name="monthly-etl")
def monthly_etl(month: str | None = None) -> dict:
    """Pull one month of crimes (default: last month; a backfill on an empty lake) into the lake.

    Months go through one at a time, so a backfill of any length holds one month in memory; the
    run commits (manifest, then state) after the last month is written.
    """
    settings = get_settings()
    lake = Lake.from_settings(settings)
    now = datetime.now(chicago())
    run_id = str(runtime.flow_run.id or now.strftime("%Y%m%dT%H%M%S"))
    clock = Stopwatch()

    state = load_state(lake)
    months = plan_months(month, state.months, now.date(), settings.etl.backfill_months)
    with clock("extract"):
        stations = extract_stations(settings.socrata)
        boundaries = extract_boundaries(settings.socrata, lake)
        late = extract_late_updates(settings.socrata, state, months)
    outcomes: list[MonthOutcome] = []
    written: dict[str, dict[str, WriteResult]] = {}
    for each in months_to_run(months, late.by_month):
        # pop: a month's late rows are released once that month is done.
        outcome, written[each] = etl_month(
            settings, lake, each, late.by_month.pop(each, None), stations, boundaries, clock
        )
        outcomes.append(outcome)
    with clock("write"):
        stations_written = write_stations(lake, stations)
        write_boundary_layers(lake, boundaries)
        window = update_training_window(lake, settings.etl.training_window_months)

    summary = run_summary(run_id, settings.lake_url, outcomes, late.pulled, window, clock.seconds)
    manifest = run_manifest(settings.socrata, summary, months, written, stations_written, now)
    commit_run(lake, state, run_id, outcomes, manifest, datetime.now(chicago()))
    publish_summary(lake, summary, outcomes)
    return summary.to_json()


def etl_month(
    settings: Settings,
    lake: Lake,
    month: str,
    late_rows: pd.DataFrame | None,
    stations: pd.DataFrame,
    boundaries: dict[str, gpd.GeoDataFrame],
    clock: Stopwatch,
) -> tuple[MonthOutcome, dict[str, WriteResult]]:
    """One month: pull it (or take its late updates), upsert it into its raw partition, fill
    and flag its areas, validate and enrich it, write it. Only counts and write results outlive
    the call, not its rows."""
    with clock("extract"):
        rows = late_rows
        if rows is None:
            rows = extract_crimes(settings.socrata, crimes_in_month_where(month))
    with clock("upsert"):
        staged = stage_raw(lake, month, rows)
    with clock("validate+enrich"):
        checked = validate_month(staged, stations, settings.etl.max_bad_row_share, boundaries)
    with clock("write"):
        written = write_month(lake, checked)
    return month_outcome(checked, written), written


if __name__ == "__main__":
    monthly_etl()
