"""Seeded sampling of large frames, stratified by calendar day (both sides of a drift check)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _day_keys(values: pd.Series) -> np.ndarray:
    """An integer per calendar day of a datetime column (-1 for missing)."""
    if not pd.api.types.is_datetime64_any_dtype(values):
        values = pd.to_datetime(values, errors="coerce")
    codes, _ = pd.factorize(values.dt.normalize(), use_na_sentinel=True)
    return codes


def sample_positions(frame: pd.DataFrame, max_rows: int, seed: int, time_column: str) -> np.ndarray:
    """Positions of the rows `sample_by_day` keeps (all rows when the frame is small enough)."""
    if max_rows < 0:
        raise ValueError("max_rows must be >= 0")
    if len(frame) <= max_rows:
        return np.arange(len(frame))
    if time_column in frame.columns:
        days = _day_keys(frame[time_column])
    else:
        days = np.zeros(len(frame), dtype=np.int64)
    _, strata = np.unique(days, return_inverse=True)
    counts = np.bincount(strata)
    exact = counts * (max_rows / len(frame))
    quota = np.floor(exact).astype(np.int64)
    short = max_rows - int(quota.sum())
    if short:
        # Largest remainders first; ties broken by stratum order, so it is deterministic.
        by_remainder = np.argsort(-(exact - quota), kind="stable")
        quota[by_remainder[:short]] += 1
    keys = np.random.default_rng(seed).random(len(frame))
    # Rank rows inside their day by a random key; a row is kept when its rank is within quota.
    order = np.lexsort((keys, strata))
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(len(frame), dtype=np.int64)
    rank[order] = np.arange(len(frame)) - first[strata[order]]
    return np.flatnonzero(rank < quota[strata])


def sample_by_day(frame: pd.DataFrame, max_rows: int, seed: int, time_column: str) -> pd.DataFrame:
    """At most `max_rows` rows, seeded, each calendar day keeping its share of the frame.

    Quotas are allocated by largest remainder so the total is exactly `max_rows`; rows without
    a timestamp form their own stratum. The row order of `frame` is kept; a frame that is
    small enough is returned as it is.
    """
    if len(frame) <= max_rows:
        return frame
    return frame.iloc[sample_positions(frame, max_rows, seed, time_column)]


def stratum_column(frame: pd.DataFrame) -> str:
    """The column a side is stratified by: when it was served (log) or happened (reference)."""
    return "served_at" if "served_at" in frame.columns else "date"
