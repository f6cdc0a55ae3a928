"""Drift check benchmark: 100k current x 100k reference rows through the whole monitor.

    python tests/benchmarks/bench_drift.py [--rows 100000] [--drift type_mix=NARCOTICS:2]
                                           [--max-rows 50000] [--labelled-share 0.3] [--repeat 1]

Generates a seeded reference (a year of incidents scored by the generator's arrest model) and a
drifted window of served traffic (a month, `--drift` knob, a share with feedback labels), then
times on the same input:

- `compute_drift` with the default sampling cap (`--max-rows` per side, stratified by day);
- `compute_drift` without sampling (every row of both sides goes into Evidently);
- HTML rendering of the snapshot, and `ReportStore.save` (HTML + snapshot + result to a local
  lake, the run to an Evidently workspace, the index).

Prints wall and CPU seconds per step (CPU because the machine is shared) and the peak RSS.
Target: the unsampled check plus its HTML and save in <= 20 s on wall time.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Run as a script from anywhere: make the repo importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import pandas as pd

from crimeflow.standins.generate import Drift, arrest_probability, generate_incidents
from crimeflow.stores.lake import Lake
from monitoring.drift import DriftConfig, compute_drift
from monitoring.report_store import ReportStore

TARGET_S = 20.0


@dataclass
class Timing:
    """Best wall time of a step and the CPU time of that run."""

    name: str
    wall_s: float
    cpu_s: float


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(name: str, step: Callable[[], Any], repeat: int) -> tuple[Timing, Any]:
    """Run `step` `repeat` times; keep the fastest run's timing and the last result."""
    best: Timing | None = None
    result: Any = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = step()
        timing = Timing(name, time.perf_counter() - wall, time.process_time() - cpu)
        if best is None or timing.wall_s < best.wall_s:
            best = timing
    assert best is not None
    return best, result


def make_reference(rows: int) -> pd.DataFrame:
    """A year of generated incidents with the model score, as training logs the reference."""
    frame = generate_incidents("2024-01", "2024-12", rows_per_month=math.ceil(rows / 12), seed=0)
    frame = frame.head(rows)
    return frame.assign(arrest_probability=arrest_probability(frame))


def make_window(rows: int, drift: Drift, labelled_share: float) -> pd.DataFrame:
    """A month of drifted served traffic shaped like the prediction log."""
    frame = generate_incidents("2025-03", "2025-03", rows_per_month=rows, seed=1, drift=drift)
    probability = arrest_probability(frame)
    feedback = frame["arrest"].astype("boolean").copy()
    feedback[np.random.default_rng(2).random(len(frame)) >= labelled_share] = pd.NA
    return frame.drop(columns=["arrest"]).assign(
        served_at=frame["date"].dt.tz_localize("UTC"),
        probability=probability,
        label=probability >= 0.5,
        feedback_arrest=feedback,
    )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build both sides, time every step and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows on each side")
    parser.add_argument("--drift", default="type_mix=NARCOTICS:2")
    parser.add_argument("--max-rows", type=int, default=DriftConfig().max_rows)
    parser.add_argument("--labelled-share", type=float, default=0.3)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    reference = make_reference(args.rows)
    window = make_window(args.rows, Drift.parse(args.drift), args.labelled_share)
    print(
        f"input: {len(reference):,} reference x {len(window):,} current rows (drift "
        f"{args.drift!r}, {args.labelled_share:.0%} labelled), generated in "
        f"{time.perf_counter() - started:.1f} s; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs"
    )
    bounds = {
        "window_start": datetime(2025, 3, 1, tzinfo=UTC),
        "window_end": datetime(2025, 4, 1, tzinfo=UTC),
        "model_version": "bench",
    }
    # Warm-up: importing Evidently and plotly and their first report cost a few seconds once.
    compute_drift(reference.head(2000), window.head(2000), DriftConfig(), **bounds)

    sampled_config = DriftConfig(max_rows=args.max_rows)
    full_config = DriftConfig(max_rows=max(len(reference), len(window)))
    timings: list[Timing] = []
    t, (sampled, _) = timed(
        f"compute_drift, sampled to {args.max_rows:,}/side",
        lambda: compute_drift(reference, window, sampled_config, **bounds),
        args.repeat,
    )
    timings.append(t)
    t, (result, snapshot) = timed(
        "compute_drift, all rows",
        lambda: compute_drift(reference, window, full_config, **bounds),
        args.repeat,
    )
    timings.append(t)
    t, page = timed("HTML rendering", lambda: snapshot.get_html_str(as_iframe=False), args.repeat)
    timings.append(t)
    with tempfile.TemporaryDirectory() as tmp:
        store = ReportStore(Lake(str(Path(tmp) / "lake")), Path(tmp) / "evidently")
        t, _ = timed(
            "ReportStore.save (HTML + lake + workspace)",
            lambda: store.save(result, snapshot),
            args.repeat,
        )
        timings.append(t)

    print()
    print(f"{'step':<46}{'wall s':>8}{'cpu s':>8}")
    for t in timings:
        print(f"{t.name:<46}{t.wall_s:>8.2f}{t.cpu_s:>8.2f}")
    total = timings[1].wall_s + timings[3].wall_s
    verdict = "ok" if total <= TARGET_S else "MISSED"
    print(
        f"{'all rows: check + save':<46}{total:>8.2f}{'':>8}  target <= {TARGET_S:.0f} s: {verdict}"
    )
    print()
    for name, outcome in (("sampled", sampled), ("all rows", result)):
        print(
            f"{name}: {outcome.status}, drift share {outcome.drift_share:.2f}, drifted "
            f"{outcome.drifted_columns}, prediction drift "
            f"{outcome.prediction_drift and round(outcome.prediction_drift.score or 0, 3)}, "
            f"{outcome.sampled_current_rows:,} x {outcome.sampled_reference_rows:,} rows compared"
        )
    print(f"HTML {len(page) / 1e6:.1f} MB; peak RSS {peak_rss_mb():,.0f} MiB")
    return 0 if total <= TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
