"""Prefect tasks of the monthly ETL around the lake; the pure work lives in crimeflow.domain."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from crimeflow.contract.months import month_bounds
from crimeflow.contract.settings import Settings
from crimeflow.domain.enrich import StationIndex, enrich
from crimeflow.domain.etl_summary import (
    EtlRunSummary,
    MonthCounts,
    incidents_per_day_png,
    summary_markdown,
)
from crimeflow.domain.ingest import (
    EtlState,
    as_raw_strings,
    late_update_window,
    max_updated_on,
    rows_by_month,
    upsert_counts,
    upsert_raw,
)
from crimeflow.domain.validate import ValidationResult, check_bad_share, validate_incidents
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
from crimeflow.stores.socrata import crimes_in_month_where, updated_since_where
from tasks import step
from tasks.extract import extract_crimes


@dataclass
class StagedMonth:
    """One month's raw rows after the upsert, with what the upsert changed."""

    month: str
    raw: pd.DataFrame
    pulled: int
    new_ids: int
    updated_ids: int


@dataclass
class CheckedMonth:
    """One month after validation and enrichment, ready to be written."""

    staged: StagedMonth
    validation: ValidationResult
    features: pd.DataFrame


@step
def load_state(lake: Lake) -> EtlState:
    """Read the ETL state (watermark, ingested months) from the lake."""
    return EtlState.from_json(lake.read_json(STATE_KEY))


def extract_late_updates(
    settings: Settings, state: EtlState, pulled_months: list[str]
) -> pd.DataFrame | None:
    """Re-pull rows of already-ingested months whose `updated_on` moved past the watermark."""
    window = late_update_window(state.months, pulled_months)
    if state.watermark is None or window is None:
        return None
    where = updated_since_where(datetime.fromisoformat(state.watermark), *window)
    return extract_crimes(settings.socrata, where)


@step
def stage_raw(
    lake: Lake,
    pulled: dict[str, pd.DataFrame],
    late: pd.DataFrame | None,
    ingested: list[str],
) -> list[StagedMonth]:
    """Upsert this run's rows into each touched month's raw partition (in memory only)."""
    # Socrata's JSON gives booleans and strings; the raw zone stores them all as text.
    incoming = {month: as_raw_strings(rows) for month, rows in pulled.items()}
    if late is not None and len(late):
        late_months = [m for m in ingested if m not in pulled]
        incoming.update(rows_by_month(as_raw_strings(late), late_months))
    staged = []
    for month, rows in sorted(incoming.items()):
        existing = lake.read(RAW_CRIMES, month)
        merged = upsert_raw(existing, rows)
        staged.append(StagedMonth(month, merged, len(rows), *upsert_counts(existing, merged)))
    return staged


@step
def validate_months(
    staged: list[StagedMonth], stations: pd.DataFrame, max_bad_share: float
) -> list[CheckedMonth]:
    """Validate and enrich every staged month; fail before any write if too many rows are bad."""
    results = [validate_incidents(s.raw, month_bounds(s.month)) for s in staged]
    check_bad_share(ValidationResult.combine(results), max_bad_share)
    index = StationIndex(normalize_stations(stations))
    return [
        CheckedMonth(s, r, enrich(r.clean, index)) for s, r in zip(staged, results, strict=True)
    ]


@step
def write_months(lake: Lake, checked: list[CheckedMonth]) -> dict[str, dict[str, WriteResult]]:
    """Write clean, quarantine, features and raw partitions of every month, atomically each."""
    written: dict[str, dict[str, WriteResult]] = {}
    for item in checked:
        month = item.staged.month
        # Derived zones first, raw last; the state advances only after all of them (commit_run),
        # so a crash in between is repaired by the next run, which re-pulls and re-derives.
        written[month] = {
            "clean": lake.write(CLEAN_CRIMES, item.validation.clean, month),
            "quarantine": lake.write(QUARANTINE_CRIMES, item.validation.quarantine, month),
            "features": lake.write(FEATURES, item.features, month),
            "raw": lake.write(RAW_CRIMES, item.staged.raw, month),
        }
    return written


@step
def write_stations(lake: Lake, stations: pd.DataFrame) -> WriteResult:
    """Store the stations snapshot the enrichment used."""
    return lake.write(RAW_STATIONS, normalize_stations(stations))


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
    checked: list[CheckedMonth],
    manifest: dict,
    now: datetime,
) -> EtlState:
    """Write the run manifest, then advance the state (the commit point of a run)."""
    lake.write_json(f"manifests/runs/{run_id}.json", manifest)
    seen = max_updated_on([c.staged.raw for c in checked])
    new_state = state.advanced(run_id, [c.staged.month for c in checked], seen, now)
    lake.write_json(STATE_KEY, new_state.to_json())
    return new_state


def month_counts(item: CheckedMonth, written: dict[str, WriteResult]) -> MonthCounts:
    """Counts of one written month, for the summary."""
    clean, features = item.validation.clean, item.features
    return MonthCounts(
        month=item.staged.month,
        pulled=item.staged.pulled,
        new_ids=item.staged.new_ids,
        updated_ids=item.staged.updated_ids,
        raw=len(item.staged.raw),
        clean=len(clean),
        quarantined=len(item.validation.quarantine),
        missing_coordinates=int(features["station_distance_m"].isna().sum()),
        arrest_rate=float(clean["arrest"].mean()) if len(clean) else 0.0,
        changed=any(result.changed for result in written.values()),
    )


def run_summary(
    run_id: str,
    settings: Settings,
    checked: list[CheckedMonth],
    written: dict[str, dict[str, WriteResult]],
    late: pd.DataFrame | None,
    window: list[str],
    seconds: dict[str, float],
) -> EtlRunSummary:
    """The run's summary: counts per month, reasons, timings."""
    return EtlRunSummary(
        run_id=run_id,
        months=[month_counts(c, written[c.staged.month]) for c in checked],
        quarantine_reasons=ValidationResult.combine([c.validation for c in checked]).reasons,
        late_updates_pulled=0 if late is None else len(late),
        window=window,
        seconds=seconds,
        lake_url=settings.lake_url,
        manifest_key=f"manifests/runs/{run_id}.json",
    )


def run_manifest(
    settings: Settings,
    summary: EtlRunSummary,
    pulled_months: list[str],
    written: dict[str, dict[str, WriteResult]],
    stations: WriteResult,
    finished_at: datetime,
) -> dict:
    """The run manifest: lineage (source, queries), counts and content hashes per partition."""

    def entry(result: WriteResult) -> dict:
        return {
            "key": result.key,
            "rows": result.rows,
            "sha256": result.content_hash,
            "changed": result.changed,
        }

    return {
        **summary.to_json(),
        "partitions": {
            month: {zone: entry(result) for zone, result in zones.items()}
            for month, zones in written.items()
        },
        "stations": entry(stations),
        "source": {
            "url": settings.socrata.url,
            "crimes_dataset": settings.socrata.crimes_dataset,
            "stations_dataset": settings.socrata.stations_dataset,
            "queries": {m: crimes_in_month_where(m) for m in pulled_months},
        },
        "finished_at": finished_at.isoformat(timespec="seconds"),
    }


@step
def publish_summary(lake: Lake, summary: EtlRunSummary, checked: list[CheckedMonth]) -> None:
    """Publish the run summary as Prefect artifacts (markdown + per-month table) and a plot."""
    features = [c.features for c in checked if len(c.features)]
    png = incidents_per_day_png(pd.concat(features)) if features else None
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
