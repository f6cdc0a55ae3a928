"""Production-form benchmark (issue #12): the prediction log on PostgreSQL, the API with N workers.

    python tests/benchmarks/bench_production.py [--only log,api] [--json out.json]
        [--log-seconds 5] [--batch-rows 1,64,512] [--appenders 256] [--log-writers 2]
        [--stores postgresql,sqlite] [--api-seconds 15] [--workers 1,2] [--concurrency 16,64]

Sections (`--only` picks some; all run by default, in this order):

log  Prediction-log insert capacity: the API's own group-commit writer (`PredictionLog`, built
     from settings as the API builds it) fed single-record appends (the shape of POST /predict)
     by `--appenders` concurrent callers, for each `--batch-rows`, on a fresh PostgreSQL
     database (created on 127.0.0.1:5432 as user postgres and dropped afterwards) and, for
     comparison, on a SQLite file (WAL, synchronous=FULL, as the API opens it). Then
     `--log-writers` writer processes at once on the largest batch size, as several API workers
     or pods share one database. Prints rows/s, commits/s, rows per commit and the append
     latency (queued + committed, what a request waits for) p50/p99, and the CPU of the writer
     process(es), of the PostgreSQL server and of the whole machine; checks that the table holds
     every committed row. The writer exposes no commit timer of its own, so the append latency
     is measured by the callers.
api  API throughput in the production form: `crimeflow api --workers N` as a subprocess, its
     prediction log on the same PostgreSQL database, `CRIMEFLOW_REDIS_URL` on the local Redis
     (db 14, flushed before each start) so the rate limit (set far above the load) is counted in
     Redis, a HistGradientBoosting champion in a throwaway MLflow store. Single-row POST
     /predict from each of `--concurrency` keep-alive clients for `--api-seconds`. Prints RPS,
     p50/p95/p99 and who used the CPU; checks that every 200 answer is in the log.

loop The loop latency in the production form (tests/production.py, as the e2e test runs it):
     three fresh PostgreSQL databases (Prefect, MLflow, the log), moto's S3 server with the lake
     behind its prefect-aws blocks, Redis, `crimeflow up --worker`'s stack (deploy + a worker
     polling every 10 s, Prefect's default) and two API workers; then the demo's loop on
     generated months. Prints the seconds from the drift event to the retrain run's start, to
     the gate's decision and to the API serving the new version. The API polls the champion
     alias every 2 s, as in `make bench-loop`, so the two forms compare.

When `log` and `api` both ran, the output ends with the capacity estimate: how many API pods one
PostgreSQL prediction log sustains (see docs/benchmarks.md). The machine has 2 cores shared with
other work; the load average is printed at the start and after every section. Exit status 1 if
a check fails (rows missing from the log, non-200 answers), else 0. No performance target.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Run as a script from anywhere: make the repo importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import sqlalchemy as sa

from crimeflow.contract.incident import CanonicalIncident
from crimeflow.contract.settings import Settings
from tests.benchmarks.bench_api import (
    RunResult,
    _logged_rows,
    _use_uvloop,
    busy_cpu_seconds,
    crimeflow_spec,
    dumps,
    http_request,
    incident_payloads,
    print_table,
    register_champion,
    run_load,
    server_environment,
)

# A Redis database no test of the project uses (the e2e workers test has 13).
REDIS_URL = "redis://127.0.0.1:6379/14"
# Run the log at no more than this share of its measured capacity (spikes, vacuum, the monitor's
# reads, a slower disk than this machine's).
HEADROOM = 0.5
INCIDENT_ROWS = 2000


# --- pure helpers ----------------------------------------------------------------------------


def percentiles_ms(latencies_s: Sequence[float], points: Sequence[float]) -> list[float]:
    """Percentiles of latencies given in seconds, in milliseconds (NaN for none)."""
    if not latencies_s:
        return [math.nan for _ in points]
    values = np.percentile(np.asarray(latencies_s, dtype=float) * 1000.0, list(points))
    return [float(v) for v in values]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A fixed-width text table: the first column left-aligned, the others right-aligned."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "-" if math.isnan(value) else f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        return str(value)

    texts = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in texts)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        first = values[0].ljust(widths[0])
        return "  ".join(
            [first, *(v.rjust(w) for v, w in zip(values[1:], widths[1:], strict=True))]
        )

    return "\n".join([line(headers), "-" * len(line(headers)), *(line(r) for r in texts)])


def pods_sustained(log_rows_per_s: float, pod_predictions_per_s: float, headroom: float) -> int:
    """API pods one log sustains: its capacity times the headroom share, over one pod's rate."""
    if pod_predictions_per_s <= 0 or not 0 < headroom <= 1:
        raise ValueError("need a positive pod rate and a headroom in (0, 1]")
    return math.floor(log_rows_per_s * headroom / pod_predictions_per_s)


def parse_int_list(text: str) -> list[int]:
    """'1,64,512' as [1, 64, 512]; ValueError for anything but positive integers."""
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(v < 1 for v in values):
        raise ValueError(f"expected positive integers separated by commas, got {text!r}")
    return values


def parse_sections(text: str, known: Sequence[str]) -> list[str]:
    """The sections `--only` names, in the order of `known`; ValueError for an unknown one."""
    wanted = {part.strip() for part in text.split(",") if part.strip()}
    unknown = wanted - set(known)
    if unknown or not wanted:
        raise ValueError(f"unknown section(s) {sorted(unknown)}; choose from {', '.join(known)}")
    return [name for name in known if name in wanted]


def load_note() -> str:
    """The machine's 1/5/15-minute load averages (2 shared cores: above 2 means a queue)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (cpus: {os.cpu_count()})"


# --- the prediction log: one writer process ----------------------------------------------------


@dataclass
class WriterTally:
    """What one writer process measured over its timed window."""

    rows: int
    commits: int
    failed_commits: int
    committed_since_start: int
    elapsed_s: float
    cpu_s: float
    machine_busy_s: float
    database_cpu_s: float
    latencies_s: list[float] = field(repr=False)


def bench_incidents(rows: int = INCIDENT_ROWS) -> list[CanonicalIncident]:
    """Generated incidents as the validated records the API logs."""
    from crimeflow.contract.incident import incidents_from_frame
    from crimeflow.standins.generate import generate_incidents

    frame = generate_incidents("2024-04", "2024-04", rows_per_month=rows, seed=7)
    return incidents_from_frame(frame)


async def _append_loop(
    log: Any, incidents: Sequence[CanonicalIncident], offset: int, deadline: float, out: list[float]
) -> None:
    """Append one fresh record at a time, as POST /predict does, until `deadline`."""
    from crimeflow.stores.prediction_log import PredictionRecord, new_prediction_id

    index = offset
    while time.perf_counter() < deadline:
        record = PredictionRecord(
            prediction_id=new_prediction_id(),
            served_at=datetime.now(UTC),
            model_name="chicago-arrest",
            model_version="1",
            request_id=None,
            probability=0.25,
            label=False,
            incident=incidents[index % len(incidents)],
        )
        index += 1
        tick = time.perf_counter()
        await log.append([record])
        out.append(time.perf_counter() - tick)


async def _appenders(
    log: Any, incidents: Sequence[CanonicalIncident], callers: int, seconds: float
) -> list[float]:
    """`callers` concurrent appenders for `seconds`; every append's latency."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    # Callers start at different incidents, so they do not log the same one in lockstep.
    step = max(1, len(incidents) // callers)
    loops = (_append_loop(log, incidents, i * step, deadline, latencies) for i in range(callers))
    await asyncio.gather(*loops)
    return latencies


async def drive_log(
    url: str,
    batch_rows: int,
    appenders: int,
    seconds: float,
    incidents: Sequence[CanonicalIncident],
    postmaster: int | None = None,
    barrier: Any = None,
) -> WriterTally:
    """Start the API's log writer on `url`, warm it up, then time `appenders` callers."""
    from crimeflow.stores.prediction_log import PredictionLog

    # Built from settings exactly as the API builds it (batch wait: the API's default).
    settings = Settings(
        prediction_log_url=url, prediction_log_batch_rows=batch_rows, _env_file=None
    )
    log = PredictionLog.from_settings(settings)
    await log.start()
    try:
        await _appenders(log, incidents, appenders, min(1.0, seconds))
        if barrier is not None:  # several writer processes start their timed window together
            await asyncio.to_thread(barrier.wait)
        before, cpu, busy = log.stats, time.process_time(), busy_cpu_seconds()
        database = server_cpu_seconds(postmaster) if postmaster else math.nan
        started = time.perf_counter()
        latencies = await _appenders(log, incidents, appenders, seconds)
        elapsed = time.perf_counter() - started
        cpu, busy, after = time.process_time() - cpu, busy_cpu_seconds() - busy, log.stats
        if postmaster:
            database = server_cpu_seconds(postmaster) - database
    finally:
        await log.stop()
    return WriterTally(
        rows=after.committed_rows - before.committed_rows,
        commits=after.committed_batches - before.committed_batches,
        failed_commits=after.failed_batches,
        committed_since_start=after.committed_rows,
        elapsed_s=elapsed,
        cpu_s=cpu,
        machine_busy_s=busy,
        database_cpu_s=database,
        latencies_s=latencies,
    )


def _writer_process(job: dict[str, Any], barrier: Any, results: Any) -> None:
    """Entry point of a spawned writer process: run `drive_log`, put its tally on `results`."""
    _use_uvloop()
    incidents = bench_incidents()
    results.put(asdict(asyncio.run(drive_log(**job, incidents=incidents, barrier=barrier))))


def run_writers(job: dict[str, Any], writers: int) -> list[WriterTally]:
    """`writers` spawned processes, each with its own writer, timed over the same window."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(writers), context.Queue()
    processes = [
        context.Process(target=_writer_process, args=(job, barrier, results), daemon=True)
        for _ in range(writers)
    ]
    for process in processes:
        process.start()
    try:
        timeout = 120 + job["seconds"]
        tallies = [WriterTally(**results.get(timeout=timeout)) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
    return tallies


# --- the prediction log section -----------------------------------------------------------------


@dataclass
class LogRun:
    """One prediction-log measurement: a store, a batch size, a number of writer processes."""

    store: str
    batch_rows: int
    writers: int
    appenders: int
    rows_per_s: float
    commits_per_s: float
    rows_per_commit: float
    p50_ms: float
    p99_ms: float
    bench_cpu_pct: float
    database_cpu_pct: float
    machine_cpu_pct: float
    failed_commits: int
    table_rows: int
    committed_rows: int

    @property
    def checked(self) -> bool:
        """Whether the table holds exactly the committed rows and no commit failed."""
        return self.table_rows == self.committed_rows and self.failed_commits == 0


def _table_rows(url: str) -> int:
    """Rows in the prediction table (after the writers stopped)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.exec_driver_sql("SELECT count(*) FROM predictions").scalar())
    finally:
        engine.dispose()


def _empty_table(url: str) -> None:
    """Drop the prediction table, so the next run starts from an empty one."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE IF EXISTS predictions")
    finally:
        engine.dispose()


def postmaster_pid(url: str) -> int | None:
    """The pid of the local PostgreSQL server's postmaster (None if /proc does not show it)."""
    from crimeflow.cli.processes import read_stat

    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            backend = int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar())
            stat = read_stat(backend)
    finally:
        engine.dispose()
    return None if stat is None else stat.ppid


def server_cpu_seconds(postmaster: int) -> float:
    """User + system CPU seconds of a PostgreSQL server: the postmaster and its children."""
    from crimeflow.cli.processes import scan_processes

    # Each child calls setsid(), so a process group would not find them; their parent does.
    ticks = sum(p.cpu_ticks for p in scan_processes() if postmaster in (p.pid, p.ppid))
    return ticks / os.sysconf("SC_CLK_TCK")


def measure_log(
    store: str, url: str, batch_rows: int, writers: int, args: argparse.Namespace, incidents: list
) -> LogRun:
    """One log run (in this process for one writer, spawned processes for more)."""
    job = {"url": url, "batch_rows": batch_rows, "appenders": args.appenders}
    job["seconds"] = args.log_seconds
    job["postmaster"] = postmaster_pid(url) if store == "postgresql" else None
    if writers == 1:
        tallies = [asyncio.run(drive_log(**job, incidents=incidents))]
    else:
        tallies = run_writers(job, writers)
    elapsed = max(t.elapsed_s for t in tallies)
    rows, commits = sum(t.rows for t in tallies), sum(t.commits for t in tallies)
    p50, p99 = percentiles_ms([x for t in tallies for x in t.latencies_s], (50, 99))
    run = LogRun(
        store=store,
        batch_rows=batch_rows,
        writers=writers,
        appenders=args.appenders,
        rows_per_s=rows / elapsed,
        commits_per_s=commits / elapsed,
        rows_per_commit=rows / max(commits, 1),
        p50_ms=p50,
        p99_ms=p99,
        bench_cpu_pct=100.0 * sum(t.cpu_s for t in tallies) / elapsed,
        # Every process of the server (other clients' backends too); same window in each writer.
        database_cpu_pct=100.0 * max(t.database_cpu_s for t in tallies) / elapsed,
        # Everything busy in the timed window: the writers, PostgreSQL's backends, other jobs.
        machine_cpu_pct=100.0 * max(t.machine_busy_s for t in tallies) / elapsed,
        failed_commits=sum(t.failed_commits for t in tallies),
        table_rows=_table_rows(url),
        committed_rows=sum(t.committed_since_start for t in tallies),
    )
    _empty_table(url)
    return run


def log_section(args: argparse.Namespace, context: dict[str, Any]) -> bool:
    """Measure the prediction log on PostgreSQL and SQLite; print the table; whether it checked."""
    incidents = bench_incidents()
    sqlite_dir = Path(context["home"]) / "log-bench"
    sqlite_dir.mkdir(parents=True, exist_ok=True)
    urls = {"postgresql": context["postgres_url"]}
    urls["sqlite"] = f"sqlite:///{sqlite_dir / 'predictions.db'}"
    stores = {store: urls[store] for store in args.stores}
    plan = [(store, batch, 1) for store in stores for batch in args.batch_rows]
    plan += [
        (store, max(args.batch_rows), n) for store in stores for n in args.log_writers if n > 1
    ]
    runs: list[LogRun] = []
    for store, batch, writers in plan:
        run = measure_log(store, stores[store], batch, writers, args, incidents)
        print(
            f"  {store:<10} batch_rows {batch:>4}, {writers} writer(s): "
            f"{run.rows_per_s:,.0f} rows/s, {run.rows_per_commit:.0f} rows/commit",
            flush=True,
        )
        runs.append(run)
    headers = ["store", "batch_rows", "writers", "appenders", "rows/s", "commits/s", "rows/commit"]
    headers += ["p50 ms", "p99 ms", "bench CPU %", "PG CPU %", "machine CPU %", "log check"]
    rows = [
        [
            *(r.store, r.batch_rows, r.writers, r.appenders, r.rows_per_s, r.commits_per_s),
            *(r.rows_per_commit, r.p50_ms, r.p99_ms, r.bench_cpu_pct, r.database_cpu_pct),
            r.machine_cpu_pct,
            "OK" if r.checked else f"{r.table_rows:,} of {r.committed_rows:,}",
        ]
        for r in runs
    ]
    print()
    print(format_table(headers, rows))
    print("p50/p99: one append's wait, queued + committed (a /predict request waits for it).")
    print("CPU, 100 % = one core: bench = the writer process(es) with their callers; PG = every")
    print("PostgreSQL process; machine = everything, other jobs included.")
    context["log_runs"] = runs
    return all(r.checked for r in runs)


# --- the API section -----------------------------------------------------------------------------


@dataclass
class WorkersReport:
    """The runs against one `crimeflow api --workers N` and its log check."""

    workers: int
    runs: list[RunResult]
    ok_total: int
    logged: int
    startup_s: float


def _flush_redis() -> None:
    """Empty the benchmark's Redis database, so no window of an earlier run counts."""
    from redis import Redis

    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    finally:
        client.close()


def bench_workers(
    settings: Settings, workers: int, incidents: list[dict[str, Any]], args: argparse.Namespace
) -> WorkersReport:
    """Start `crimeflow api --workers N` on the PostgreSQL log and Redis; warm up; load it."""
    from crimeflow.cli.processes import free_port, start, stop, wait_http
    from tests.e2e.test_api_workers import wait_for_workers

    port = free_port()
    spec = crimeflow_spec(port, workers)
    requests = [(http_request("/predict", port, dumps(i)), 1) for i in incidents]
    _flush_redis()
    env = {**server_environment(settings), "CRIMEFLOW_REDIS_URL": REDIS_URL}
    logged_before = _logged_rows(settings)
    log_file = settings.home / "logs" / f"api-{workers}w.log"
    tick = time.perf_counter()
    process = start(f"api-{workers}w", spec.args, env, log_file, cwd=settings.home)
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", timeout_s=180, process=process)
        wait_for_workers(log_file, workers)
        startup_s = time.perf_counter() - tick
        name = f"{workers} worker" + ("s" if workers > 1 else "")
        warm = run_load(
            name, "warm-up", port, "/predict", requests, max(args.concurrency),
            args.warmup, "raw", None,
        )  # fmt: skip
        runs = []
        for concurrency in args.concurrency:
            run = run_load(
                name, "single", port, "/predict", requests, concurrency,
                args.api_seconds, "raw", process.pid,
            )  # fmt: skip
            runs.append(run)
    finally:
        stop(process, timeout_s=30)
    ok_total = warm.ok + sum(r.ok for r in runs)
    logged = _logged_rows(settings) - logged_before
    return WorkersReport(workers, runs, ok_total, logged, startup_s)


def api_section(args: argparse.Namespace, context: dict[str, Any]) -> bool:
    """Measure single-row RPS with each worker count; print the table; whether it checked."""
    home = Path(context["home"]) / "api"
    settings = Settings(home=home, prediction_log_url=context["postgres_url"], _env_file=None)
    tick = time.perf_counter()
    version = register_champion(settings)
    print(f"  registered HGB champion v{version} in {time.perf_counter() - tick:.1f} s")
    incidents = incident_payloads()
    reports = []
    for workers in args.workers:
        report = bench_workers(settings, workers, incidents, args)
        best = max(report.runs, key=lambda r: r.rps)
        print(
            f"  {workers} worker(s): ready in {report.startup_s:.1f} s, best {best.rps:,.0f} rps",
            flush=True,
        )
        reports.append(report)
    print()
    print_table([run for report in reports for run in report.runs])
    checked = True
    for report in reports:
        errors = sum(sum(r.errors.values()) for r in report.runs)
        same = report.logged == report.ok_total
        checked &= same and errors == 0
        print(
            f"{report.workers} worker(s): {report.ok_total:,} answered 200 (warm-up included), "
            f"{report.logged:,} in the PostgreSQL log -> {'OK' if same else 'MISMATCH'}; "
            f"{errors} non-200"
        )
    context["api_reports"] = reports
    return checked


# --- the capacity estimate -----------------------------------------------------------------------


def print_capacity(context: dict[str, Any]) -> None:
    """Pods of W workers one PostgreSQL log sustains, from this run's figures."""
    postgres = [r for r in context["log_runs"] if r.store == "postgresql"]
    if not postgres or not context.get("api_reports"):
        return
    log = max(postgres, key=lambda r: r.rows_per_s)
    print(
        f"\ncapacity: PostgreSQL log {log.rows_per_s:,.0f} rows/s (batch_rows {log.batch_rows}, "
        f"{log.writers} writer(s)); planned at {HEADROOM:.0%} of it"
    )
    for report in context["api_reports"]:
        pod = max(r.rps for r in report.runs)
        pods = pods_sustained(log.rows_per_s, pod, HEADROOM)
        print(
            f"  pods of {report.workers} worker(s) at {pod:,.0f} predictions/s each: "
            f"{pods} pod(s) per PostgreSQL log"
        )


# --- orchestration -------------------------------------------------------------------------------

# --- the loop in the production form --------------------------------------------------------------

# A Redis database of its own (the e2e tests use 12 and 13, the api section 14).
LOOP_REDIS_URL = "redis://127.0.0.1:6379/11"


def loop_section(args: argparse.Namespace, context: dict[str, Any]) -> bool:
    """Run the loop once in the production form; print its latencies; whether it closed."""
    from datetime import date

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from crimeflow.cli.demo import DemoSummary, generated_plan, run_loop
    from crimeflow.standins.soda import StandinServer
    from tests.production import loop_overrides, production_form

    plan = generated_plan(
        date.today(),
        args.loop_old_months,
        rows_per_month=args.loop_rows,
        maturity_days=Settings(_env_file=None).etl.label_maturity_days,
    )
    summary = DemoSummary()
    with (
        StandinServer(plan.crimes) as soda,
        production_form(
            Path(context["home"]) / "loop",
            LOOP_REDIS_URL,
            **loop_overrides(soda.url, model_poll_interval_s=2.0),
        ) as form,
        temporary_settings(updates={PREFECT_API_URL: form.stack.prefect_api_url}),
    ):
        run_loop(form.stack, plan, summary, echo=lambda line: None)
    months = len(plan.old_months) + len(plan.new_months)
    print(
        f"  {months} generated months ({len(plan.crimes):,} incidents), loop closed: "
        f"{summary.loop_completed}; gate: "
        + (", ".join(f"v{g['version']} {g['decision']}" for g in summary.gate_decisions) or "-")
    )
    print(
        format_table(
            ["from the drift event", "seconds"],
            [[name, f"{seconds:.1f}"] for name, seconds in summary.loop_latency_s.items()],
        )
    )
    print(
        format_table(
            ["phase", "seconds"],
            [[name, f"{seconds:.1f}"] for name, seconds in summary.timings_s.items()],
        )
    )
    context["loop"] = summary
    return summary.loop_completed


SECTIONS: dict[str, Callable[[argparse.Namespace, dict[str, Any]], bool]] = {
    "log": log_section,
    "api": api_section,
    "loop": loop_section,
}


def _int_list(text: str) -> list[int]:
    """argparse type for comma-separated positive integers."""
    try:
        return parse_int_list(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help="Sections: log, api, loop.")
    parser.add_argument("--loop-old-months", type=int, default=6, help="Months before drift.")
    parser.add_argument("--loop-rows", type=int, default=4000, help="Generated rows per month.")
    parser.add_argument("--log-seconds", type=float, default=5.0, help="Seconds per log run.")
    parser.add_argument("--batch-rows", type=_int_list, default=[1, 64, 512])
    parser.add_argument("--stores", default="postgresql,sqlite", help="Log stores to measure.")
    parser.add_argument("--appenders", type=int, default=256, help="Concurrent log callers.")
    parser.add_argument("--log-writers", type=_int_list, default=[2], help="Writer processes.")
    parser.add_argument("--api-seconds", type=float, default=15.0, help="Seconds per API run.")
    parser.add_argument("--warmup", type=float, default=3.0, help="Seconds of API warm-up.")
    parser.add_argument("--workers", type=_int_list, default=[1, 2], help="uvicorn workers.")
    parser.add_argument("--concurrency", type=_int_list, default=[16, 64], help="API clients.")
    parser.add_argument("--json", type=Path, help="Also write the results as JSON here.")
    args = parser.parse_args(argv)
    try:
        args.only = parse_sections(args.only, list(SECTIONS))
    except ValueError as error:
        parser.error(str(error))
    args.stores = [store.strip() for store in args.stores.split(",") if store.strip()]
    if not args.stores or not set(args.stores) <= {"postgresql", "sqlite"}:
        parser.error("--stores takes postgresql and/or sqlite")
    if not 0 < args.log_seconds <= 120 or not 0 < args.api_seconds <= 120:
        parser.error("--log-seconds and --api-seconds must be in (0, 120]")
    if max(args.concurrency) > 256 or not 1 <= args.appenders <= 4096:
        parser.error("--concurrency at most 256, --appenders in [1, 4096]")
    return args


def _postgres_database(stack: contextlib.ExitStack) -> str:
    """A fresh PostgreSQL database for both sections, dropped when `stack` closes; or exit."""
    import pytest

    from tests.conftest import fresh_postgres_database

    try:
        return stack.enter_context(fresh_postgres_database("crimeflow_bench"))
    except pytest.skip.Exception as error:  # the helper skips a test when PostgreSQL is down
        raise SystemExit(f"bench_production needs PostgreSQL: {error}") from None


def _write_json(path: Path, context: dict[str, Any]) -> None:
    """The measured runs as JSON."""
    payload = {
        "load_average": os.getloadavg(),
        "log": [asdict(r) for r in context["log_runs"]],
        "api": [asdict(r) for r in context.get("api_reports", [])],
        "loop": asdict(context["loop"]) if "loop" in context else None,
    }
    path.write_text(json.dumps(payload, indent=2, default=str))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen sections; the exit status (see the module docstring)."""
    args = parse_args(argv)
    _use_uvloop()
    started = time.perf_counter()
    print(f"sections: {', '.join(args.only)}; {load_note()}", flush=True)
    checked = True
    with contextlib.ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="crimeflow-bench-")))
        context: dict[str, Any] = {"home": home, "log_runs": []}
        context["postgres_url"] = _postgres_database(stack)
        for name in args.only:
            print(f"\n== {name} ==", flush=True)
            checked &= SECTIONS[name](args, context)
            print(f"after {name}: {load_note()}", flush=True)
        print_capacity(context)
    print(f"\ntotal {time.perf_counter() - started:.0f} s; checks: {'OK' if checked else 'FAILED'}")
    if args.json:
        _write_json(args.json, context)
    return 0 if checked else 1


if __name__ == "__main__":
    sys.exit(main())
