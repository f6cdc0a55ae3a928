"""The analyst's monthly statistics: arrest rates with confidence intervals, tests and a trend.

Pure functions of enriched month frames (the lake's `features` zone: `arrest`, `primary_type`,
`district`, `community_area`, `hour`, `weekday`). Only labelled rows count (`arrest` missing is
left out and counted). Every interval is a Wilson score interval; the tests are Pearson's
chi-square of independence (scipy) and the Cochran-Armitage test of a linear trend in the
monthly arrest rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

WEEKDAYS: tuple[str, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
CONFIDENCE = 0.95
# Pearson's chi-square is trusted when every expected count is at least 5 (Cochran's rule).
MIN_EXPECTED = 5.0
POOLED_LABEL = "other (pooled)"
# Fewer incidents than this in a heat-map cell: its rate is too noisy to colour.
MIN_CELL_INCIDENTS = 20


@dataclass(frozen=True)
class Rate:
    """Incidents, arrests and the arrest rate of one group, with its Wilson interval."""

    group: str
    incidents: int
    arrests: int
    rate: float
    low: float
    high: float


@dataclass(frozen=True)
class ChiSquare:
    """Pearson's chi-square of arrest x `variable` on the (pooled) table it was computed from."""

    variable: str
    statistic: float
    dof: int
    p_value: float
    incidents: int
    categories: list[str]
    # [no arrest, arrest] per category, in `categories` order: the table the test saw.
    table: list[list[int]]
    min_expected: float
    pooled: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Trend:
    """A linear trend of the monthly arrest rate (Cochran-Armitage): slope per month, Z, p."""

    months: list[str]
    slope_per_month: float
    standard_error: float
    z: float
    p_value: float


@dataclass(frozen=True)
class Analysis:
    """Everything the analyst's report shows for one month and its window."""

    month: str
    window: list[str]
    overall: Rate
    unlabelled: int
    by_type: list[Rate]
    by_district: list[Rate]
    by_hour: list[Rate]
    by_weekday: list[Rate]
    by_area: list[Rate]
    by_month: list[Rate]
    chi_square_district: ChiSquare | None
    chi_square_type: ChiSquare | None
    trend: Trend | None
    # 7 x 24 (Monday first, hour 0 first): arrest rate (None below MIN_CELL_INCIDENTS) and counts.
    heat_rate: list[list[float | None]]
    heat_incidents: list[list[int]]
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        """The numbers as plain JSON types (what the lake stores next to the HTML)."""
        return asdict(self)

    def key_numbers(self) -> dict[str, Any]:
        """The headline numbers (what a flow run returns): rate, both chi-squares, the trend."""
        chi_d, chi_t, trend = self.chi_square_district, self.chi_square_type, self.trend
        return {
            "month": self.month,
            "window": self.window,
            "incidents": self.overall.incidents,
            "arrest_rate": self.overall.rate,
            "chi_square_district": None if chi_d is None else chi_d.statistic,
            "chi_square_type": None if chi_t is None else chi_t.statistic,
            "trend_per_month": None if trend is None else trend.slope_per_month,
            "trend_z": None if trend is None else trend.z,
        }


def wilson_interval(
    arrests: np.ndarray | int, incidents: np.ndarray | int, confidence: float = CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial rate (works at 0 and 1; empty groups give NaN)."""
    k = np.asarray(arrests, dtype=float)
    n = np.asarray(incidents, dtype=float)
    z = stats.norm.ppf(0.5 + confidence / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows whose `arrest` is known, with `arrest` as 0/1 int."""
    known = frame[frame["arrest"].notna()]
    return known.assign(arrest=known["arrest"].astype(bool).astype(int))


def _rates(groups: pd.Series, arrest: pd.Series) -> list[Rate]:
    """Rates per distinct value of `groups` (missing values as 'unknown'), in sorted order."""
    keys = groups.astype("string").fillna("unknown")
    table = arrest.groupby(keys.to_numpy()).agg(["size", "sum"]).sort_index()
    low, high = wilson_interval(table["sum"].to_numpy(), table["size"].to_numpy())
    columns = (table.index, table["size"], table["sum"], low, high)
    return [
        Rate(str(key), int(n), int(k), float(k / n), float(lo), float(hi))
        for key, n, k, lo, hi in zip(*columns, strict=True)
    ]


def rate_of(frame: pd.DataFrame, group: str = "all") -> Rate:
    """The arrest rate of a labelled frame as one Rate."""
    n, k = len(frame), int(frame["arrest"].sum())
    low, high = wilson_interval(k, n)
    return Rate(group, n, k, k / n if n else float("nan"), float(low), float(high))


def rates_by(frame: pd.DataFrame, column: str) -> list[Rate]:
    """Rates by `column` of a labelled frame; hours in order, weekdays (0-6) named Mon..Sun."""
    rates = _rates(frame[column], frame["arrest"])
    if column not in ("hour", "weekday"):
        return rates
    ordered = sorted(rates, key=lambda r: int(r.group))
    if column == "hour":
        return ordered
    return [
        Rate(WEEKDAYS[int(r.group)], r.incidents, r.arrests, r.rate, r.low, r.high) for r in ordered
    ]


def contingency(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """Counts of [no arrest, arrest] (columns 0, 1) per value of `column` of a labelled frame."""
    keys = frame[column].astype("string").fillna("unknown").to_numpy()
    table = pd.crosstab(keys, frame["arrest"].to_numpy()).reindex(columns=[0, 1], fill_value=0)
    return table.sort_index()


def pool_sparse(
    table: pd.DataFrame, min_expected: float = MIN_EXPECTED
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Pool the categories whose expected counts fall below `min_expected` into one row.

    Returns the pooled table, the pooled categories and the dropped ones (the pool itself, when
    even together they stay below the rule: it is left out rather than bias the statistic).
    """
    shares = table.sum(axis=0) / table.to_numpy().sum()
    smallest_share = float(shares.min())
    sparse = table.sum(axis=1) * smallest_share < min_expected
    pooled = [str(c) for c in table.index[sparse]]
    kept = table[~sparse]
    if not pooled:
        return table, [], []
    pool = table[sparse].sum(axis=0)
    if float(pool.sum()) * smallest_share >= min_expected:
        kept = pd.concat([kept, pool.to_frame(POOLED_LABEL).T])
        return kept, pooled, []
    return kept, pooled, pooled


def chi_square(frame: pd.DataFrame, column: str) -> ChiSquare | None:
    """Pearson's chi-square of arrest x `column` (sparse categories pooled); None if < 2 left."""
    table, pooled, dropped = pool_sparse(contingency(frame, column))
    if len(table) < 2 or (table.sum(axis=0) == 0).any():
        return None
    # No Yates correction: the statistic is Pearson's, whatever the table's size.
    result = stats.chi2_contingency(table.to_numpy(), correction=False)
    return ChiSquare(
        variable=column,
        statistic=float(result.statistic),
        dof=int(result.dof),
        p_value=float(result.pvalue),
        incidents=int(table.to_numpy().sum()),
        categories=[str(c) for c in table.index],
        table=table.to_numpy().astype(int).tolist(),
        min_expected=float(result.expected_freq.min()),
        pooled=pooled,
        dropped=dropped,
    )


def arrest_trend(by_month: list[Rate]) -> Trend | None:
    """Cochran-Armitage trend of the monthly rates (month index as score); None for < 2 months.

    The slope is the weighted least-squares slope of the rate on the month index (weights =
    incidents), in rate units per month; its standard error uses the pooled rate (the test's
    null), so Z is the Cochran-Armitage statistic and p its two-sided normal p-value.
    """
    months = [r for r in by_month if r.incidents > 0]
    if len(months) < 2:
        return None
    n = np.array([r.incidents for r in months], dtype=float)
    k = np.array([r.arrests for r in months], dtype=float)
    t = np.arange(len(months), dtype=float)
    pooled = k.sum() / n.sum()
    t_bar = (n * t).sum() / n.sum()
    spread = (n * (t - t_bar) ** 2).sum()
    slope = ((k - n * pooled) * (t - t_bar)).sum() / spread
    se = float(np.sqrt(pooled * (1 - pooled) / spread))
    z = slope / se if se > 0 else float("nan")
    return Trend(
        months=[r.group for r in months],
        slope_per_month=float(slope),
        standard_error=se,
        z=float(z),
        p_value=float(2 * stats.norm.sf(abs(z))),
    )


def heat_table(frame: pd.DataFrame) -> tuple[list[list[float | None]], list[list[int]]]:
    """Arrest rate and incidents per weekday (rows, Monday first) x hour (columns, 0-23)."""
    grouped = frame.groupby([frame["weekday"].astype(int), frame["hour"].astype(int)])["arrest"]
    full = pd.MultiIndex.from_product([range(7), range(24)])
    counts = grouped.size().reindex(full, fill_value=0).to_numpy().reshape(7, 24)
    arrests = grouped.sum().reindex(full, fill_value=0).to_numpy().reshape(7, 24)
    rates = [
        [float(a / c) if c >= MIN_CELL_INCIDENTS else None for a, c in zip(ra, rc, strict=True)]
        for ra, rc in zip(arrests, counts, strict=True)
    ]
    return rates, counts.astype(int).tolist()


def _numeric_first(rate: Rate) -> tuple[bool, int, str]:
    """Sort key: numeric groups (community areas 1..77) in number order, then the rest."""
    numeric = rate.group.isdigit()
    return (not numeric, int(rate.group) if numeric else 0, rate.group)


def _month_rate(month: str, frame: pd.DataFrame) -> Rate:
    """One window month's arrest rate (its labelled rows)."""
    return rate_of(labelled(frame), month)


def analyse(month: str, frames: Mapping[str, pd.DataFrame]) -> Analysis:
    """The report's numbers: `frames` holds the window's month frames; `month` is reported on."""
    if month not in frames:
        raise ValueError(f"month {month} is not among the frames ({sorted(frames)})")
    window = sorted(frames)
    current = labelled(frames[month])
    if current.empty:
        raise ValueError(f"month {month} has no incident with a known arrest flag")
    notes = []
    by_month = [_month_rate(m, frames[m]) for m in window]
    chi_district, chi_type = chi_square(current, "district"), chi_square(current, "primary_type")
    for test in (chi_district, chi_type):
        if test is not None and test.pooled:
            notes.append(
                f"chi-square by {test.variable}: {len(test.pooled)} categories with expected "
                f"counts below {MIN_EXPECTED:g} were "
                + ("left out" if test.dropped else f"pooled as '{POOLED_LABEL}'")
            )
    trend = arrest_trend(by_month)
    if trend is None:
        notes.append("trend: the window holds a single month; a trend needs two or more")
    heat_rate, heat_incidents = heat_table(current)
    return Analysis(
        month=month,
        window=window,
        overall=rate_of(current, month),
        unlabelled=int(len(frames[month]) - len(current)),
        by_type=sorted(rates_by(current, "primary_type"), key=lambda r: -r.incidents),
        by_district=rates_by(current, "district"),
        by_hour=rates_by(current, "hour"),
        by_weekday=rates_by(current, "weekday"),
        by_area=sorted(rates_by(current, "community_area"), key=_numeric_first),
        by_month=by_month,
        chi_square_district=chi_district,
        chi_square_type=chi_type,
        trend=trend,
        heat_rate=heat_rate,
        heat_incidents=heat_incidents,
        notes=notes,
    )


def analysis_window(available: list[str], month: str | None, size: int) -> list[str]:
    """The window of a report: the newest `size` available months up to `month` (default: the
    newest available), oldest first; a month the lake lacks is an error naming it."""
    if not available:
        raise ValueError("the lake has no features partition yet: run monthly-etl first")
    target = month or max(available)
    if target not in available:
        raise ValueError(
            f"month {target} has no features partition in the lake (it has "
            f"{min(available)}..{max(available)}): run monthly-etl --month {target} first"
        )
    return sorted(m for m in available if m <= target)[-size:]
