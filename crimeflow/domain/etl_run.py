"""One month of an ETL run: staged (raw upserted), checked (validated and enriched), then
reduced to what the run summary needs. Pure: the lake reads and writes happen in the tasks.

A run handles its months one at a time and keeps only each month's `MonthOutcome` (counts,
quarantine reasons, newest update, incidents per day: a few kilobytes), so its memory is
bounded by one month whatever the length of a backfill.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import geopandas as gpd
import pandas as pd

from crimeflow.contract.months import month_bounds
from crimeflow.domain.enrich import StationIndex, enrich_with_stations
from crimeflow.domain.etl_summary import EtlRunSummary, MonthCounts, daily_incidents
from crimeflow.domain.geography import (
    area_counts,
    check_layers,
    fill_missing,
    nearest_station_features,
    stations_layer,
)
from crimeflow.domain.ingest import (
    as_raw_strings,
    max_updated_on,
    rows_by_month,
    upsert_counts,
    upsert_raw,
)
from crimeflow.domain.validate import ValidationResult, check_bad_share, validate_incidents


class PartitionWrite(Protocol):
    """What the summary needs of one partition write (the lake's `WriteResult`)."""

    changed: bool


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
    geography: dict[str, int] = field(default_factory=dict)  # `area_counts` over clean rows


@dataclass(frozen=True)
class MonthOutcome:
    """What a run keeps of a month once it is written: the summary's inputs, no rows."""

    counts: MonthCounts
    reasons: dict[str, int]  # quarantine reasons, as `ValidationResult.reasons`
    newest_update: datetime | None  # newest `updated_on` of the month's raw rows
    daily: pd.DataFrame  # incidents and arrests per day, for the summary's plot


@dataclass
class LateUpdates:
    """Rows of already-ingested months updated since the last run (late arrests, mostly)."""

    pulled: int  # rows the late-update query returned, all months together
    by_month: dict[str, pd.DataFrame]  # the ones this run upserts, by month


def late_rows_by_month(
    late: pd.DataFrame | None, ingested: Sequence[str], pulled: Sequence[str]
) -> dict[str, pd.DataFrame]:
    """Late updates split by month, for the already-ingested months this run does not pull in
    full (a pulled month gets its late rows with the rest of its rows)."""
    if late is None or not len(late):
        return {}
    return rows_by_month(late, [m for m in ingested if m not in pulled])


def months_to_run(pulled: Sequence[str], late: Mapping[str, pd.DataFrame]) -> list[str]:
    """Every month a run stages, validates and writes, oldest first."""
    return sorted({*pulled, *late})


def stage_month(month: str, existing: pd.DataFrame | None, rows: pd.DataFrame) -> StagedMonth:
    """Upsert a month's incoming SODA rows (as raw text) into its existing raw partition (None:
    a new month)."""
    # Socrata's JSON gives booleans and strings; the raw zone stores them all as text.
    incoming = as_raw_strings(rows)
    merged = upsert_raw(existing, incoming)
    return StagedMonth(month, merged, len(incoming), *upsert_counts(existing, merged))


def check_staged(
    staged: StagedMonth,
    stations: StationIndex,
    max_bad_share: float,
    boundaries: Mapping[str, gpd.GeoDataFrame] | None = None,
) -> CheckedMonth:
    """Fill missing areas from coordinates, validate and enrich a staged month; raise before it
    is written if too many rows are bad. The raw partition keeps the rows as the source sent."""
    checks = check_layers(staged.raw, boundaries) if boundaries else []
    # A row missing its district but with a point gets the district it lies in before
    # validation, so it is kept instead of quarantined.
    filled = fill_missing(staged.raw, checks) if checks else staged.raw
    result = validate_incidents(filled, month_bounds(staged.month))
    check_bad_share(result, max_bad_share)
    raw_ids = pd.to_numeric(staged.raw["id"], errors="coerce")
    kept = raw_ids.isin(result.clean["id"].to_numpy()).to_numpy(dtype=bool)
    # Nearest station through geopandas (sjoin_nearest); the serving path's KD-tree
    # (`StationIndex.nearest`) gives the same meters (tests/domain/test_geography.py).
    near = nearest_station_features(
        result.clean, stations_layer(stations.x, stations.y, stations.districts)
    )
    features = enrich_with_stations(result.clean, near)
    return CheckedMonth(staged, result, features, area_counts(checks, kept))


def month_counts(item: CheckedMonth, written: Mapping[str, PartitionWrite]) -> MonthCounts:
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
        **item.geography,
    )


def month_outcome(item: CheckedMonth, written: Mapping[str, PartitionWrite]) -> MonthOutcome:
    """What the run keeps of a written month (its frames can then be dropped)."""
    return MonthOutcome(
        counts=month_counts(item, written),
        reasons=item.validation.reasons,
        newest_update=max_updated_on([item.staged.raw]),
        daily=daily_incidents(item.features),
    )


def newest_update(outcomes: Sequence[MonthOutcome]) -> datetime | None:
    """The newest `updated_on` a run saw (None when it saw none)."""
    stamps = [o.newest_update for o in outcomes if o.newest_update is not None]
    return max(stamps) if stamps else None


def run_summary(
    run_id: str,
    lake_url: str,
    outcomes: Sequence[MonthOutcome],
    late_updates_pulled: int,
    window: list[str],
    seconds: dict[str, float],
) -> EtlRunSummary:
    """The run's summary: counts per month, reasons, timings."""
    reasons: Counter[str] = Counter()
    for outcome in outcomes:
        reasons.update(outcome.reasons)
    return EtlRunSummary(
        run_id=run_id,
        months=[o.counts for o in outcomes],
        # Ordered as `ValidationResult.combine` orders them: by count, ties by first seen.
        quarantine_reasons=dict(reasons.most_common()),
        late_updates_pulled=late_updates_pulled,
        window=window,
        seconds=seconds,
        lake_url=lake_url,
        manifest_key=manifest_key(run_id),
    )


MANIFESTS_FOLDER = "manifests/runs"


def manifest_key(run_id: str) -> str:
    """Where a run's manifest lives in the lake."""
    return f"{MANIFESTS_FOLDER}/{run_id}.json"
