"""Label maturity: how long after an incident its arrest flag can still change.

One snapshot of the crimes dataset holds only each record's *last* `updated_on`, not its
history, so it cannot date the moment an arrest was recorded. It gives a bound: a record last
updated L days after the incident has not changed at all since day L, its arrest flag included.
The share of arrests last updated more than L days after the incident is therefore an upper
bound on the share whose flag was set (or reset) after day L. Records change for other reasons
too (reclassification, geocoding), which non-arrests show at their own rate; the excess of the
arrests' share over the non-arrests' is a rough estimate of the arrest-related part.

Two things in a snapshot would bias the bound, and `late_update_profile` avoids both:
- censoring: a young incident cannot show a late update yet, so only incidents at least
  `horizon_days` older than the snapshot (its newest `updated_on`) are used;
- bulk rewrites: a day on which the portal touched a large share of all records (the 2018 file
  has one, 2018-05-04, with 74k rows) overwrites the earlier update times; only incidents after
  the newest such day are used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "bulk_update_days",
    "late_update_profile",
    "mature_mask",
    "maturity_days",
    "update_lag_days",
]

DEFAULT_LAGS: tuple[int, ...] = (7, 8, 10, 14, 21, 30, 45, 60, 90)


def update_lag_days(frame: pd.DataFrame) -> pd.Series:
    """Days from each incident (`date`) to its last update (`updated_on`)."""
    missing = [c for c in ("date", "updated_on") if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks column(s) {', '.join(missing)}")
    return (frame["updated_on"] - frame["date"]).dt.total_seconds() / 86_400


def bulk_update_days(frame: pd.DataFrame, factor: float = 10.0) -> list[pd.Timestamp]:
    """Days on which more records were last updated than `factor` times a typical day."""
    per_day = frame["updated_on"].dt.normalize().value_counts()
    if per_day.empty:
        return []
    typical = float(per_day.median())
    return sorted(per_day.index[per_day > factor * typical])


def late_update_profile(
    frame: pd.DataFrame,
    lags_days: Sequence[int] = DEFAULT_LAGS,
    horizon_days: int = 110,
) -> tuple[pd.DataFrame, dict[str, object]]:
    """Per lag L: share of arrests / non-arrests last updated more than L days after the incident.

    Uses incidents after the newest bulk-update day and at least `horizon_days` before the
    snapshot (see the module notes). Returns the table and a description of the cohort.
    """
    if max(lags_days) > horizon_days:
        raise ValueError(f"lags_days: the largest lag must not exceed horizon_days={horizon_days}")
    data = frame.dropna(subset=["date", "updated_on", "arrest"])
    snapshot = data["updated_on"].max()
    bulk = bulk_update_days(data)
    start = bulk[-1] + pd.Timedelta(days=1) if bulk else data["date"].min()
    end = snapshot - pd.Timedelta(days=horizon_days)
    cohort = data[(data["date"] >= start) & (data["date"] <= end)]
    if cohort.empty:
        raise ValueError(
            f"no incidents between {start:%Y-%m-%d} and {end:%Y-%m-%d}: the snapshot "
            f"({snapshot:%Y-%m-%d}) is too close to the newest bulk update for this horizon"
        )
    lag = update_lag_days(cohort)
    arrested = cohort["arrest"].astype(bool).to_numpy()
    rate = float(arrested.mean())
    rows = []
    for days in lags_days:
        later = (lag > days).to_numpy()
        arrests_later = float(later[arrested].mean())
        others_later = float(later[~arrested].mean())
        rows.append(
            {
                "lag_days": int(days),
                "arrests_updated_later": arrests_later,
                "others_updated_later": others_later,
                "excess": arrests_later - others_later,
                "rate_at_risk_pp": 100 * arrests_later * rate,
            }
        )
    cohort_info: dict[str, object] = {
        "snapshot": snapshot,
        "bulk_update_days": [f"{d:%Y-%m-%d}" for d in bulk],
        "first_incident": cohort["date"].min(),
        "last_incident": cohort["date"].max(),
        "rows": len(cohort),
        "arrest_rate": rate,
        "first_update_lag_days": float(lag.min()),
    }
    return pd.DataFrame(rows), cohort_info


def maturity_days(profile: pd.DataFrame, max_late_share: float = 0.05) -> int:
    """Smallest profiled lag after which at most `max_late_share` of arrests were still updated."""
    settled = profile[profile["arrests_updated_later"] <= max_late_share]
    if settled.empty:
        longest = int(profile["lag_days"].max())
        raise ValueError(
            f"more than {max_late_share:.0%} of arrests were updated after {longest} days; "
            "profile longer lags"
        )
    return int(settled["lag_days"].min())


def mature_mask(dates: pd.Series, as_of: pd.Timestamp, maturity: int) -> np.ndarray:
    """True for incidents at least `maturity` days before `as_of` (their labels count as final)."""
    return (dates <= as_of - pd.Timedelta(days=maturity)).fillna(False).to_numpy(dtype=bool)
