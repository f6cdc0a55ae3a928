"""One ETL run's months in memory: staged (raw upserted), checked (validated and enriched),
and counted for the run summary. Pure: the lake reads and writes happen in the tasks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import pandas as pd

from crimeflow.contract.months import month_bounds
from crimeflow.domain.enrich import StationIndex, enrich
from crimeflow.domain.etl_summary import EtlRunSummary, MonthCounts
from crimeflow.domain.ingest import as_raw_strings, rows_by_month, upsert_counts, upsert_raw
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


def incoming_by_month(
    pulled: dict[str, pd.DataFrame], late: pd.DataFrame | None, ingested: list[str]
) -> dict[str, pd.DataFrame]:
    """This run's rows per month as raw text: the pulled months, plus late updates of the
    already-ingested months that were not pulled again."""
    # Socrata's JSON gives booleans and strings; the raw zone stores them all as text.
    incoming = {month: as_raw_strings(rows) for month, rows in pulled.items()}
    if late is not None and len(late):
        late_months = [m for m in ingested if m not in pulled]
        incoming.update(rows_by_month(as_raw_strings(late), late_months))
    return incoming


def stage_month(month: str, existing: pd.DataFrame | None, rows: pd.DataFrame) -> StagedMonth:
    """Upsert a month's incoming rows into its existing raw partition (None: a new month)."""
    merged = upsert_raw(existing, rows)
    return StagedMonth(month, merged, len(rows), *upsert_counts(existing, merged))


def check_months(
    staged: list[StagedMonth], stations: StationIndex, max_bad_share: float
) -> list[CheckedMonth]:
    """Validate and enrich every staged month; raise before any write if too many rows are bad."""
    results = [validate_incidents(s.raw, month_bounds(s.month)) for s in staged]
    check_bad_share(ValidationResult.combine(results), max_bad_share)
    return [
        CheckedMonth(s, r, enrich(r.clean, stations)) for s, r in zip(staged, results, strict=True)
    ]


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
    )


def run_summary(
    run_id: str,
    lake_url: str,
    checked: list[CheckedMonth],
    written: Mapping[str, Mapping[str, PartitionWrite]],
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
        lake_url=lake_url,
        manifest_key=manifest_key(run_id),
    )


MANIFESTS_FOLDER = "manifests/runs"


def manifest_key(run_id: str) -> str:
    """Where a run's manifest lives in the lake."""
    return f"{MANIFESTS_FOLDER}/{run_id}.json"
