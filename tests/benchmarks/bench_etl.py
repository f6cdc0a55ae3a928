"""ETL benchmark: the transforms' throughput, then a backfill's peak memory, short and long.

    python tests/benchmarks/bench_etl.py [--rows 1000000] [--bad-share 0.01] [--repeat 1]
        [--backfill-years 1 10] [--rows-per-month 25000] [--skip-transforms] [--skip-backfill]

Transforms: generates seeded incidents with `crimeflow.standins.generate`, turns them into the
all-string rows a SODA page gives the extract (optionally with a share of corrupted rows), then
times each step on the same input and prints rows/s (wall clock), CPU seconds and peak RSS. CPU
seconds are printed because the machine is shared: when other processes compete, wall time
inflates but CPU time stays comparable. `--repeat` keeps the best wall time of several runs.

Backfill: one SODA stand-in process serves `--rows-per-month` generated incidents for every
month of the longest backfill (ending last month); then, for each of `--backfill-years`, a fresh
process runs the real `monthly-etl` flow on an empty lake (a backfill of that many years over
HTTP through sodapy, into a temporary lake) and reports its own peak RSS (`ru_maxrss`), so the
peaks of the runs never mix and the stand-in's memory is never counted.

Targets (2-core machine): end to end (validate + enrich + features) >= 250k rows/s; the
nearest-station query alone >= 1M rows/s; the longest backfill's peak RSS within 1.5x of the
shortest's (memory bounded by one month, not by the length of the backfill).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

# Run as a script from anywhere: make the repo importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pandas as pd

from crimeflow.contract.schema import to_canonical
from crimeflow.domain.enrich import (
    StationIndex,
    add_station_distance,
    add_temporal_features,
    enrich,
    state_plane_xy,
)
from crimeflow.domain.validate import validate_incidents
from crimeflow.standins.generate import add_bad_rows, generate_incidents, to_soda_strings

END_TO_END_TARGET = 250_000
NEAREST_TARGET = 1_000_000
BACKFILL_RSS_RATIO_TARGET = 1.5
FIRST_MONTH, LAST_MONTH = "2024-01", "2024-12"
WINDOW = (datetime(2024, 1, 1), datetime(2025, 1, 1))


@dataclass
class Timing:
    """Best wall time of a step, the CPU time of that run, and the rows it processed."""

    name: str
    rows: int
    wall_s: float
    cpu_s: float
    target: int | None = None

    @property
    def rows_per_s(self) -> float:
        """Throughput on wall-clock time."""
        return self.rows / self.wall_s if self.wall_s > 0 else math.inf


def rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc), NaN elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(
    name: str, rows: int, step: Callable[[], Any], repeat: int, target: int | None = None
) -> tuple[Timing, Any]:
    """Run `step` `repeat` times; keep the fastest run's timing and the last result."""
    best: Timing | None = None
    result: Any = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = step()
        timing = Timing(name, rows, time.perf_counter() - wall, time.process_time() - cpu, target)
        if best is None or timing.wall_s < best.wall_s:
            best = timing
    assert best is not None
    return best, result


def make_raw(rows: int, bad_share: float) -> pd.DataFrame:
    """`rows` generated incidents as SODA strings, `bad_share` of them corrupted."""
    per_month = math.ceil(rows / 12)
    frame = generate_incidents(FIRST_MONTH, LAST_MONTH, rows_per_month=per_month, seed=0)
    frame = frame.head(rows).reset_index(drop=True)
    raw = add_bad_rows(frame, bad_share, seed=1) if bad_share > 0 else to_soda_strings(frame)
    # The generator records its bad rows in `attrs`; a SODA page carries no attrs.
    raw.attrs = {}
    return raw


def print_table(timings: list[Timing]) -> None:
    """One line per step: wall and CPU seconds, rows/s on each, and the target verdict."""
    print(
        f"{'step':<42}{'rows':>10}{'wall s':>8}{'cpu s':>8}"
        f"{'rows/s':>12}{'rows/cpu-s':>12}  target (on wall time)"
    )
    for t in timings:
        verdict = ""
        if t.target is not None:
            verdict = f">= {t.target:,}: " + ("ok" if t.rows_per_s >= t.target else "MISSED")
        per_cpu = t.rows / t.cpu_s if t.cpu_s > 0 else math.inf
        print(
            f"{t.name:<42}{t.rows:>10,}{t.wall_s:>8.2f}{t.cpu_s:>8.2f}"
            f"{t.rows_per_s:>12,.0f}{per_cpu:>12,.0f}  {verdict}"
        )


def bench_transforms(rows: int, bad_share: float, repeat: int) -> None:
    """Build the input, time every transform step and print the table."""
    started = time.perf_counter()
    raw = make_raw(rows, bad_share)
    n = len(raw)
    print(
        f"input: {n:,} SODA-string rows ({bad_share:.1%} corrupted), generated in "
        f"{time.perf_counter() - started:.1f} s; RSS {rss_mb():,.0f} MiB; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )

    index = StationIndex.packaged()
    # Warm-up: pandera's first validate, pyproj's transformer and the KD-tree cost ~0.5 s once.
    warm = validate_incidents(raw.head(200), WINDOW)
    enrich(warm.clean, index)

    timings: list[Timing] = []
    t, _ = timed("to_canonical (part of validate)", n, lambda: to_canonical(raw), repeat)
    timings.append(t)
    t, result = timed(
        "validate_incidents (incl. to_canonical)",
        n,
        lambda: validate_incidents(raw, WINDOW),
        repeat,
    )
    timings.append(t)
    canonical = timings[0]
    timings.append(
        Timing(
            "  validate minus to_canonical",
            n,
            max(t.wall_s - canonical.wall_s, 1e-9),
            max(t.cpu_s - canonical.cpu_s, 1e-9),
        )
    )

    clean = result.clean
    m = len(clean)
    x, y = state_plane_xy(clean)
    t, _ = timed("state_plane_xy (published x/y)", m, lambda: state_plane_xy(clean), repeat)
    timings.append(t)
    lonlat_only = clean.drop(columns=["x_coordinate", "y_coordinate"])
    t, _ = timed(
        "state_plane_xy (projecting lat/lon)", m, lambda: state_plane_xy(lonlat_only), repeat
    )
    timings.append(t)
    t, _ = timed(
        "nearest-station query alone", m, lambda: index.nearest(x, y), repeat, NEAREST_TARGET
    )
    timings.append(t)
    t, _ = timed("add_station_distance", m, lambda: add_station_distance(clean, index), repeat)
    timings.append(t)
    t, _ = timed("add_temporal_features", m, lambda: add_temporal_features(clean), repeat)
    timings.append(t)
    t, features = timed("enrich (station + calendar)", m, lambda: enrich(clean, index), repeat)
    timings.append(t)

    def end_to_end() -> pd.DataFrame:
        return enrich(validate_incidents(raw, WINDOW).clean, index)

    t, _ = timed("end to end: validate + enrich", n, end_to_end, repeat, END_TO_END_TARGET)
    timings.append(t)

    print()
    print_table(timings)
    print()
    print(
        f"validation: {m:,} clean, {len(result.quarantine):,} quarantined "
        f"({result.bad_share:.2%}), {result.superseded:,} superseded duplicates"
    )
    for reason, count in list(result.reasons.items())[:6]:
        print(f"  {count:>8,}  {reason}")
    share_missing = features["station_distance_m"].isna().mean()
    print(
        f"enriched frame: {features.shape[1]} columns, station distance missing {share_missing:.2%}"
    )
    print(f"peak RSS {peak_rss_mb():,.0f} MiB")


# --- backfill: peak memory of a short and a long backfill, each in its own process -----------


def serve_standin(first: str, last: str, rows_per_month: int) -> int:
    """(Child role) Serve generated incidents for first..last over SODA until terminated."""
    from crimeflow.standins.soda import StandinServer

    frame = generate_incidents(first, last, rows_per_month=rows_per_month, seed=0)
    server = StandinServer(frame)
    del frame  # the server keeps its own rendered tables
    print(server.start(), flush=True)
    threading.Event().wait()  # until the parent terminates this process
    return 0


def run_backfill() -> int:
    """(Child role) Run the monthly-etl flow once on the empty lake the environment names."""
    from prefect.client.orchestration import get_client

    from flows.etl import monthly_etl

    # Start the throwaway Prefect API (a separate process) before the clock starts.
    with get_client(sync_client=True) as client:
        client.api_healthcheck()
    rss_before = rss_mb()
    cpu_before = time.process_time()
    started = time.perf_counter()
    summary = monthly_etl()
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report = {
        "months": len(summary["months"]),
        "rows": sum(m["pulled"] for m in summary["months"]),
        "flow_s": seconds,
        "cpu_s": usage.ru_utime + usage.ru_stime - cpu_before,
        "steps_s": summary["seconds"],
        "rss_before_mib": rss_before,
        "rss_after_mib": rss_mb(),
        "peak_rss_mib": peak_rss_mb(),
    }
    print(json.dumps(report), flush=True)
    return 0


def last_complete_month() -> str:
    """The newest month a backfill pulls (the flow's own rule: last month, Chicago time)."""
    from crimeflow.contract.months import previous_month
    from crimeflow.contract.schema import chicago

    return previous_month(datetime.now(chicago()).date())


def child_env(home: Path, soda_url: str, months: int) -> dict[str, str]:
    """A clean environment for one backfill: its own home, lake and throwaway Prefect API."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRIMEFLOW_", "PREFECT_"))}
    env.update(
        CRIMEFLOW_HOME=str(home),
        CRIMEFLOW_SOCRATA_URL=soda_url,
        CRIMEFLOW_BACKFILL_MONTHS=str(months),
        PREFECT_HOME=str(home / "prefect"),
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",  # no telemetry from a throwaway server
        # A fresh Prefect home migrates its database first: slow on a busy machine.
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
    )
    return env


def backfill_in_child(home: Path, soda_url: str, months: int) -> dict[str, Any]:
    """Run one backfill in a fresh process; its JSON report, or exit with its log on failure."""
    home.mkdir(parents=True)
    log = home / "child.log"
    with log.open("w") as stderr:
        done = subprocess.run(
            [sys.executable, __file__, "--role", "backfill"],
            env=child_env(home, soda_url, months),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        sys.exit(f"backfill of {months} months failed:\n{log.read_text()[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_backfill(years: list[int], rows_per_month: int) -> None:
    """Backfill each number of years on an empty lake from one stand-in; print peak RSS."""
    from crimeflow.contract.months import shift_month

    last = last_complete_month()
    first = shift_month(last, -(12 * max(years) - 1))
    started = time.perf_counter()
    standin = subprocess.Popen(
        [sys.executable, __file__, "--role", "serve", first, last, str(rows_per_month)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert standin.stdout is not None
        url = standin.stdout.readline().strip()
        if not url.startswith("http"):
            sys.exit("the SODA stand-in did not start")
        print(
            f"\nbackfill: SODA stand-in at {url} with {rows_per_month:,} rows/month, {first}.."
            f"{last}, ready in {time.perf_counter() - started:.0f} s"
        )
        print_backfill_header()
        reports: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
            for y in years:
                reports.append(backfill_in_child(Path(tmp) / f"{y}y", url, 12 * y))
                print_backfill_row(y, reports[-1])
    finally:
        standin.terminate()
        standin.wait()
    ratio = reports[-1]["peak_rss_mib"] / reports[0]["peak_rss_mib"]
    verdict = "ok" if ratio <= BACKFILL_RSS_RATIO_TARGET else "MISSED"
    print(
        f"peak RSS {years[-1]} years / {years[0]} year(s): {ratio:.2f}x "
        f"(target <= {BACKFILL_RSS_RATIO_TARGET}x: {verdict})"
    )


def print_backfill_header() -> None:
    """The column titles of the backfill lines."""
    print(
        f"{'backfill':<10}{'months':>8}{'rows':>12}{'flow s':>9}{'rows/s':>10}{'rows/cpu-s':>12}"
        f"{'RSS start':>11}{'peak RSS':>10}{'RSS end':>9}  (MiB, the ETL process alone)"
    )


def print_backfill_row(years: int, r: dict[str, Any]) -> None:
    """One backfill's line: rows, wall and CPU throughput, RSS before, at peak and after."""
    print(
        f"{f'{years} years':<10}{r['months']:>8}{r['rows']:>12,}{r['flow_s']:>9.1f}"
        f"{r['rows'] / r['flow_s']:>10,.0f}{r['rows'] / r['cpu_s']:>12,.0f}"
        f"{r['rss_before_mib']:>11,.0f}{r['peak_rss_mib']:>10,.0f}{r['rss_after_mib']:>9,.0f}"
    )
    print(
        "          seconds per step: "
        + json.dumps({k: round(v, 1) for k, v in r["steps_s"].items()})
    )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments; run the transform table, then the backfill comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--bad-share", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--backfill-years", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--rows-per-month", type=int, default=25_000)
    parser.add_argument("--skip-transforms", action="store_true")
    parser.add_argument("--skip-backfill", action="store_true")
    # The child processes' roles (the benchmark starts them itself).
    parser.add_argument("--role", choices=["serve", "backfill"], help=argparse.SUPPRESS)
    parser.add_argument("role_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # lines as they come

    if args.role == "serve":
        first, last, rows_per_month = args.role_args
        return serve_standin(first, last, int(rows_per_month))
    if args.role == "backfill":
        return run_backfill()
    if not args.skip_transforms:
        bench_transforms(args.rows, args.bad_share, args.repeat)
    if not args.skip_backfill:
        bench_backfill(sorted(args.backfill_years), args.rows_per_month)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
