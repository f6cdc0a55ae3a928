"""Prefect tasks of the monthly ETL around the lake; the pure work lives in crimeflow.domain."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import geopandas as gpd
import pandas as pd
from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from crimeflow.domain.enrich import StationIndex
from crimeflow.domain.etl_run import (
    CheckedMonth,
    MonthOutcome,
    StagedMonth,
    check_staged,
    manifest_key,
    newest_update,
    stage_month,
)
from crimeflow.domain.etl_summary import (
    EtlRunSummary,
    combine_daily,
    incidents_per_day_png,
    summary_markdown,
)
from crimeflow.domain.geography import layer_named
from crimeflow.domain.ingest import EtlState
from crimeflow.stores.boundaries import write_boundaries
from crimeflow.stores.files import normalize_stations
from crimeflow.stores.lake import (
    CLEAN_CRIMES,
    FEATURES,
    QUARANTINE_CRIMES,
    RAW_CRIMES,
    RAW_STATIONS,
    STATE_KEY,
    WINDOW_KEY,
    Lake,
    WriteResult,
    rolling_window,
)
from tasks import step


@step
def load_state(lake: Lake) -> EtlState:
    """Read the ETL state (watermark, ingested months) from the lake."""
    return EtlState.from_json(lake.read_json(STATE_KEY))


@step
def stage_raw(lake: Lake, month: str, rows: pd.DataFrame) -> StagedMonth:
    """Upsert a month's incoming rows into its raw partition (in memory only)."""
    return stage_month(month, lake.read(RAW_CRIMES, month), rows)


@step
def validate_month(
    staged: StagedMonth,
    stations: pd.DataFrame,
    max_bad_share: float,
    boundaries: Mapping[str, gpd.GeoDataFrame] | None = None,
) -> CheckedMonth:
    """Fill areas from coordinates, validate and enrich a staged month; fail before it is
    written if too many rows are bad."""
    # Indexing the ~23 stations again per month costs well under a millisecond.
    index = StationIndex(normalize_stations(stations))
    return check_staged(staged, index, max_bad_share, boundaries)


@step
def write_month(lake: Lake, checked: CheckedMonth) -> dict[str, WriteResult]:
    """Write a month's clean, quarantine, features and raw partitions, atomically each."""
    month = checked.staged.month
    # Derived zones first, raw last; the state advances only after every month (commit_run),
    # so a crash in between is repaired by the next run, which re-pulls and re-derives.
    return {
        "clean": lake.write(CLEAN_CRIMES, checked.validation.clean, month),
        "quarantine": lake.write(QUARANTINE_CRIMES, checked.validation.quarantine, month),
        "features": lake.write(FEATURES, checked.features, month),
        "raw": lake.write(RAW_CRIMES, checked.staged.raw, month),
    }


@step
def write_stations(lake: Lake, stations: pd.DataFrame) -> WriteResult:
    """Store the stations snapshot the enrichment used."""
    return lake.write(RAW_STATIONS, normalize_stations(stations))


@step
def write_boundary_layers(
    lake: Lake, boundaries: Mapping[str, gpd.GeoDataFrame]
) -> dict[str, WriteResult]:
    """Store the boundary layers the run used (unchanged layers are not rewritten)."""
    return {
        name: write_boundaries(lake, layer_named(name), shapes)
        for name, shapes in boundaries.items()
    }


@step
def update_training_window(lake: Lake, months_to_keep: int) -> list[str]:
    """Rewrite `window.json`: the newest feature months with their content hashes."""
    months = rolling_window(lake.months(FEATURES), months_to_keep)
    hashes = {m: lake.content_hash(FEATURES, m) for m in months}
    lake.write_json(WINDOW_KEY, {"months": months, "features_sha256": hashes})
    return months


@step
def commit_run(
    lake: Lake,
    state: EtlState,
    run_id: str,
    outcomes: list[MonthOutcome],
    manifest: dict,
    now: datetime,
) -> EtlState:
    """Write the run manifest, then advance the state (the commit point of a run)."""
    lake.write_json(manifest_key(run_id), manifest)
    months = [o.counts.month for o in outcomes]
    new_state = state.advanced(run_id, months, newest_update(outcomes), now)
    lake.write_json(STATE_KEY, new_state.to_json())
    return new_state


@step
def publish_summary(lake: Lake, summary: EtlRunSummary, outcomes: list[MonthOutcome]) -> None:
    """Publish the run summary as Prefect artifacts (markdown + per-month table) and a plot."""
    daily = combine_daily([o.daily for o in outcomes])
    png = incidents_per_day_png(daily) if daily is not None else None
    if png is not None:
        summary.plot_key = f"reports/etl/{summary.run_id}/incidents_per_day.png"
        lake.write_bytes(summary.plot_key, png)
    create_markdown_artifact(
        key="etl-summary", markdown=summary_markdown(summary, png), description="Monthly ETL run"
    )
    create_table_artifact(
        key="etl-months", table=[vars(m) for m in summary.months], description="Rows per month"
    )
    get_run_logger().info(
        "ETL %s: %s", summary.run_id, ", ".join(f"{m.month}={m.clean:,}" for m in summary.months)
    )
