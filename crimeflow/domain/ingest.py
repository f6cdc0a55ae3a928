"""Pure bookkeeping of the monthly ETL: which months to pull, raw upserts, the watermark state.

The raw zone keeps what Socrata returned, as strings, so that re-validating a month from its raw
partition gives exactly the reasons the first validation gave (a garbled `arrest` stays garbled
instead of turning into a missing value).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime

import numpy as np
import pandas as pd

from crimeflow.contract.months import check_month, month_bounds, previous_month, shift_month
from crimeflow.contract.schema import (
    BOOL_COLUMNS,
    SODA_COLUMNS,
    normalize_columns,
    parse_timestamps,
)


def plan_months(
    month: str | None,
    ingested: list[str],
    today: date,
    backfill_months: int,
    until: str | None = None,
) -> list[str]:
    """Months this run pulls: the explicit one, a backfill on an empty lake (ending at `until`,
    default last month), else last month."""
    if month is not None:
        return [check_month(month)]
    last = previous_month(today)
    if until is not None and not ingested:
        last = min(last, check_month(until))
    if ingested:
        return [last]
    return [shift_month(last, -offset) for offset in range(backfill_months - 1, -1, -1)]


def late_update_window(ingested: list[str], pulled: list[str]) -> tuple[datetime, datetime] | None:
    """Date span of lake months this run does not pull in full, where late arrests may land."""
    others = sorted(set(ingested) - set(pulled))
    if not others:
        return None
    return month_bounds(others[0])[0], month_bounds(others[-1])[1]


def as_raw_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """SODA rows as the contract's columns, every value a string (booleans as 'true'/'false')."""
    df = normalize_columns(frame)
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    for column in SODA_COLUMNS:
        values = df[column].reset_index(drop=True)
        if column in BOOL_COLUMNS:
            # SODA JSON sends booleans; keep the text form Socrata's CSV export uses.
            values = values.map(lambda v: str(v).lower() if isinstance(v, bool | np.bool_) else v)
        out[column] = values.astype("string")
    return out


def upsert_raw(existing: pd.DataFrame | None, incoming: pd.DataFrame) -> pd.DataFrame:
    """Union of raw rows, one per `id`, the latest `updated_on` winning (ties: incoming wins)."""
    frames = [incoming.assign(_incoming=1)]
    if existing is not None and len(existing):
        frames.insert(0, existing.assign(_incoming=0))
    both = pd.concat(frames, ignore_index=True)
    both["_updated"] = parse_timestamps(both["updated_on"])
    both["_id"] = pd.to_numeric(both["id"], errors="coerce")
    both = both.sort_values(["_updated", "_incoming"], na_position="first", kind="stable")
    # Rows whose id is unreadable cannot be upserted; keep each distinct one once so that
    # validation still sees (and quarantines) them.
    keyed = both[both["_id"].notna()].drop_duplicates("_id", keep="last")
    unkeyed = both[both["_id"].isna()].drop_duplicates(subset=list(SODA_COLUMNS), keep="last")
    merged = pd.concat([keyed, unkeyed]).sort_values("_id", na_position="last", kind="stable")
    return merged[list(SODA_COLUMNS)].reset_index(drop=True)


def upsert_counts(existing: pd.DataFrame | None, merged: pd.DataFrame) -> tuple[int, int]:
    """(new ids, ids whose `updated_on` changed) between a raw partition and its upsert."""
    after = merged.dropna(subset=["id"]).set_index("id")["updated_on"]
    if existing is None:
        return len(after), 0
    before = existing.dropna(subset=["id"]).set_index("id")["updated_on"]
    is_new = ~after.index.isin(before.index)
    kept = after[~is_new]
    moved = (kept != before.reindex(kept.index)).fillna(False)
    return int(is_new.sum()), int(moved.sum())


def rows_by_month(raw: pd.DataFrame, months: list[str]) -> dict[str, pd.DataFrame]:
    """Split raw rows by the month of their `date`, keeping only the given months."""
    month_of = parse_timestamps(raw["date"]).dt.strftime("%Y-%m")
    return {m: raw[month_of == m].reset_index(drop=True) for m in months if (month_of == m).any()}


def max_updated_on(frames: list[pd.DataFrame]) -> datetime | None:
    """The newest `updated_on` across raw frames (None when there is none)."""
    stamps = [parse_timestamps(f["updated_on"]).max() for f in frames if len(f)]
    stamps = [s for s in stamps if pd.notna(s)]
    return max(stamps).to_pydatetime() if stamps else None


@dataclass
class EtlState:
    """What the ETL remembers between runs (stored as `state/etl.json` in the lake)."""

    watermark: str | None = None  # newest `updated_on` seen, ISO; late arrests are newer
    months: list[str] = field(default_factory=list)  # months with clean/features partitions
    last_run_id: str | None = None
    last_success_at: str | None = None

    @classmethod
    def from_json(cls, data: dict | None) -> EtlState:
        """Build from the stored JSON (None = a fresh lake)."""
        return cls(**data) if data else cls()

    def to_json(self) -> dict:
        """The JSON to store."""
        return asdict(self)

    def advanced(
        self, run_id: str, months: list[str], seen: datetime | None, now: datetime
    ) -> EtlState:
        """The state after a successful run that wrote `months` and saw updates up to `seen`."""
        marks = [m for m in (self.watermark, seen.isoformat() if seen else None) if m]
        return EtlState(
            watermark=max(marks) if marks else None,
            months=sorted(set(self.months) | set(months)),
            last_run_id=run_id,
            last_success_at=now.isoformat(timespec="seconds"),
        )
