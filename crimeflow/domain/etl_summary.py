"""The ETL run summary: what a person reads (markdown) and looks at (a small plot)."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import pandas as pd


class Stopwatch:
    """Collects wall-clock seconds per named step, in the order the steps ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        """Time the body of a `with` block as `step` (repeated names add up)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] = self.seconds.get(step, 0.0) + time.perf_counter() - start


@dataclass
class MonthCounts:
    """Row counts of one month partition after a run."""

    month: str
    pulled: int  # rows the source returned for this month in this run
    new_ids: int  # ids the raw partition did not have before
    updated_ids: int  # ids it had, with a newer `updated_on` now
    raw: int
    clean: int
    quarantined: int
    missing_coordinates: int  # clean rows kept without a station distance
    arrest_rate: float
    changed: bool  # did any partition of this month change on disk
    # Clean rows whose area id was missing and was filled from their coordinates; clean rows
    # whose point lies in another polygon, more than 10 m from the reported one (left as
    # reported); and those within 10 m of it (geocoded onto the boundary street: the same place).
    community_area_filled: int = 0
    community_area_disagrees: int = 0
    community_area_on_edge: int = 0
    district_filled: int = 0
    district_disagrees: int = 0
    district_on_edge: int = 0


@dataclass
class EtlRunSummary:
    """Everything the run reports: counts per month, quarantine reasons, timings, lineage."""

    run_id: str
    months: list[MonthCounts]
    quarantine_reasons: dict[str, int]
    late_updates_pulled: int
    window: list[str]
    seconds: dict[str, float]
    lake_url: str
    manifest_key: str
    plot_key: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        """JSON-ready form (the run manifest embeds it)."""
        return asdict(self)


def summary_markdown(summary: EtlRunSummary, plot_png: bytes | None = None) -> str:
    """The Prefect markdown artifact: totals, per-month table, quarantine reasons, timings."""
    months = summary.months
    pulled = sum(m.pulled for m in months)
    clean = sum(m.clean for m in months)
    quarantined = sum(m.quarantined for m in months)
    no_coords = sum(m.missing_coordinates for m in months)
    arrests = sum(m.arrest_rate * m.clean for m in months)
    rate = arrests / clean if clean else float("nan")
    lines = [
        f"# Monthly ETL — {', '.join(m.month for m in months) or 'nothing to do'}",
        "",
        f"**{pulled:,}** rows pulled (+{summary.late_updates_pulled:,} late updates), "
        f"**{clean:,}** clean and enriched, **{quarantined:,}** quarantined, "
        f"{no_coords:,} kept without coordinates. Arrest rate {rate:.1%}.",
        "",
        "| month | pulled | new ids | updated ids | clean | quarantined | no coords | arrest rate "
        "| changed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    lines += [
        f"| {m.month} | {m.pulled:,} | {m.new_ids:,} | {m.updated_ids:,} | {m.clean:,} "
        f"| {m.quarantined:,} | {m.missing_coordinates:,} | {m.arrest_rate:.1%} "
        f"| {'yes' if m.changed else 'no'} |"
        for m in months
    ]
    lines += _geography_lines(months, clean)
    if summary.quarantine_reasons:
        lines += ["", "**Quarantine reasons**", "", "| reason | rows |", "|---|---:|"]
        top = sorted(summary.quarantine_reasons.items(), key=lambda kv: -kv[1])
        lines += [f"| {reason} | {count:,} |" for reason, count in top]
    lines += ["", "**Time per step**", "", "| step | seconds |", "|---|---:|"]
    lines += [f"| {step} | {sec:.2f} |" for step, sec in summary.seconds.items()]
    lines += ["", f"Training window: {', '.join(summary.window)}", ""]
    lines += [f"Lake: `{summary.lake_url}` · manifest `{summary.manifest_key}`"]
    if plot_png is not None:
        encoded = base64.b64encode(plot_png).decode()
        lines += ["", f"![incidents per day](data:image/png;base64,{encoded})"]
    if summary.plot_key:
        lines += ["", f"Plot stored at `{summary.plot_key}`."]
    return "\n".join(lines)


def _geography_lines(months: Sequence[MonthCounts], clean: int) -> list[str]:
    """One paragraph: area ids filled from coordinates and reported ids that disagree with them."""
    parts = []
    for label, column in (("community area", "community_area"), ("district", "district")):
        filled = sum(getattr(m, f"{column}_filled") for m in months)
        disagrees = sum(getattr(m, f"{column}_disagrees") for m in months)
        edge = sum(getattr(m, f"{column}_on_edge") for m in months)
        share = f" ({disagrees / clean:.1%})" if clean else ""
        parts.append(
            f"{label}: {filled:,} filled, {disagrees:,} disagree{share}, {edge:,} on the edge"
        )
    return [
        "",
        f"Geography (clean rows, point-in-polygon; 'on the edge' = in another area but within "
        f"10 m of the reported one): {'; '.join(parts)}.",
    ]


def daily_incidents(features: pd.DataFrame) -> pd.DataFrame:
    """Incidents and arrests per day (index `day`) of enriched rows: what the plot draws."""
    return (
        features.assign(day=features["date"].dt.floor("D"), arrests=features["arrest"].astype(int))
        .groupby("day")
        .agg(incidents=("id", "size"), arrests=("arrests", "sum"))
    )


def combine_daily(frames: Sequence[pd.DataFrame]) -> pd.DataFrame | None:
    """One per-day frame from several months' (None when they hold no day)."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return None
    # A day lies in one month, so the sum only guards against a caller passing a day twice.
    return pd.concat(frames).groupby(level="day").sum()


def incidents_per_day_png(daily: pd.DataFrame) -> bytes:
    """A small bar-and-line PNG of `daily_incidents`: incidents and arrests per day."""
    # Imported here: matplotlib is heavy and only the summary step needs it.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 2.4), dpi=80)
    ax.bar(daily.index, daily["incidents"], width=0.9, color="#4c78a8", label="incidents")
    ax.plot(daily.index, daily["arrests"], color="#e45756", label="arrests")
    ax.set_title("Incidents and arrests per day", fontsize=10)
    ax.set_ylim(top=max(1, daily["incidents"].max()) * 1.35)  # headroom for the legend
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
