"""What an ETL run asks SODA for beyond its months, and the manifest it leaves in the lake."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from crimeflow.contract.settings import SocrataSettings
from crimeflow.domain.etl_summary import EtlRunSummary
from crimeflow.domain.ingest import EtlState, late_update_window
from crimeflow.stores.lake import WriteResult
from crimeflow.stores.socrata import crimes_in_month_where, updated_since_where


def late_updates_where(state: EtlState, pulled_months: list[str]) -> str | None:
    """SoQL for rows of already-ingested months whose `updated_on` moved past the watermark
    (None: nothing to re-pull, e.g. on a first run)."""
    window = late_update_window(state.months, pulled_months)
    if state.watermark is None or window is None:
        return None
    return updated_since_where(datetime.fromisoformat(state.watermark), *window)


def _entry(result: WriteResult) -> dict[str, Any]:
    """One written partition in the manifest."""
    return {
        "key": result.key,
        "rows": result.rows,
        "sha256": result.content_hash,
        "changed": result.changed,
    }


def run_manifest(
    soda: SocrataSettings,
    summary: EtlRunSummary,
    pulled_months: list[str],
    written: dict[str, dict[str, WriteResult]],
    stations: WriteResult,
    finished_at: datetime,
) -> dict[str, Any]:
    """The run manifest: lineage (source, queries), counts and content hashes per partition."""
    return {
        **summary.to_json(),
        "partitions": {
            month: {zone: _entry(result) for zone, result in zones.items()}
            for month, zones in written.items()
        },
        "stations": _entry(stations),
        "source": {
            "url": soda.url,
            "crimes_dataset": soda.crimes_dataset,
            "stations_dataset": soda.stations_dataset,
            "queries": {m: crimes_in_month_where(m) for m in pulled_months},
        },
        "finished_at": finished_at.isoformat(timespec="seconds"),
    }
