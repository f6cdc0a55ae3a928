"""Prediction API load benchmark: crimeflow's Litestar API vs a typical MLflow-style FastAPI server.

    python tests/benchmarks/bench_api.py [--duration 20] [--concurrency 16]
        [--batch-rows 1000,10000] [--batch-concurrency 4] [--batch-duration 10]
        [--servers crimeflow,crimeflow-pg,baseline] [--json out.json]

What it does, all on 127.0.0.1 and bounded in time:

1. A temporary CRIMEFLOW_HOME with an embedded MLflow registry whose `chicago-arrest@champion`
   is what production serves: the HistGradientBoosting pipeline (`train_model` with
   `ModelConfig(classifier="hist_gradient_boosting")`) fitted on 3 months x 5,000 generated
   incidents, logged like the training flow logs it (skops, signature, input example,
   `pyfunc_predict_fn="predict_proba"`).
2. The client's own ceiling: the load client against a trivial asyncio server that answers
   every request with a fixed body. If that is not far above the servers' numbers, the client
   is the bottleneck and the comparison says nothing.
3. For each server (crimeflow: `python -m crimeflow api`, 1 worker, SQLite prediction log;
   baseline: `tests/benchmarks/baseline_server.py` under uvicorn, 1 worker): start it on a
   free port, warm it up, then single-row POST /predict from `--concurrency` keep-alive
   connections for `--duration` s, then POST /predict/batch for each size of `--batch-rows`
   (`--batch-concurrency` connections). Bodies are realistic generated incidents (April 2024,
   the month after training) as SODA JSON strings, serialized before the clock starts.
   `crimeflow-pg` is crimeflow again with its durable log on PostgreSQL (`--postgres-url`, a
   throwaway schema), batches only.
4. After crimeflow's runs: the prediction log must hold exactly one row per prediction that
   was answered 200 (warm-up included) -- checked before and after stopping the server.
5. The model's own speed for comparison: `score_rows` of the champion on 1,000 and 10,000
   canonical rows in this process (best of 5), i.e. scoring without HTTP, JSON or the log.

The machine has 2 cores that client and server share. The client is a minimal asyncio
HTTP/1.1 client (uvloop when available; `--client httpx` uses httpx.AsyncClient instead, which
costs several times more CPU per request). Every run prints the CPU the client, the server and
everything else on the machine ("other": the OS, other people's jobs) used, as a share of one
core (200 % = both cores), so a reader can see who competed for what. `--pin` puts the server
on CPU 0 and the client on CPU 1 instead of letting them share both.

Targets (2-core machine): single-row RPS >= 5x the baseline's; p99 <= 25 ms at 16 clients;
`/predict/batch` >= 50k rows/s on one worker with the durable log.
Exit status: 1 if the log check fails or crimeflow answered any non-200; 2 with `--strict` when a
performance target is missed; else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Run as a script from anywhere: make the repo importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

from crimeflow.cli.processes import (
    ServiceProcess,
    free_port,
    scan_processes,
    start,
    stop,
    wait_http,
)
from crimeflow.contract.settings import Settings, child_environment

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
RPS_RATIO_TARGET = 5.0
P99_TARGET_MS = 25.0
BATCH_ROWS_PER_S_TARGET = 50_000.0
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TRAIN_MONTHS = ("2024-01", "2024-03")
TRAIN_ROWS_PER_MONTH = 5000
PAYLOAD_MONTH = "2024-04"
PAYLOAD_ROWS = 5000
ROW_CHECK_EVERY = 8  # count the rows of every 8th response per connection (the 1st included)
ROW_MARKER = b'probability"'  # once per row: crimeflow's arrest_probability, baseline's probability
SEED = 2024
# Far above the load, so the limiter still runs (its cost is measured) but never answers 429.
RATE_LIMIT_PER_MINUTE = 100_000_000


# --- the champion -----------------------------------------------------------------------------


def register_champion(
    settings: Settings, classifier: str = "hist_gradient_boosting", seed: int = SEED
) -> str:
    """Train the production pipeline (HGB) on generated data and register it as champion."""
    import mlflow
    from mlflow.models import infer_signature

    from crimeflow.domain.model import (
        MODEL_INPUT_COLUMNS,
        SKOPS_TRUSTED_TYPES,
        ModelConfig,
        time_split,
        train_model,
    )
    from crimeflow.standins.generate import generate_incidents
    from crimeflow.stores.registry import (
        CHAMPION,
        ensure_experiment,
        mlflow_client,
        record_content_hash,
        set_alias,
    )

    frame = generate_incidents(*TRAIN_MONTHS, rows_per_month=TRAIN_ROWS_PER_MONTH, seed=seed)
    train, valid, _ = time_split(frame, 1, 0)
    trained = train_model(train, valid, ModelConfig(classifier=classifier))  # type: ignore[arg-type]
    client = mlflow_client(settings)
    example = valid.head(5)[list(MODEL_INPUT_COLUMNS)]
    with mlflow.start_run(experiment_id=ensure_experiment(client, settings)):
        mlflow.log_metrics({f"holdout.model.{k}": v for k, v in trained.validation.items()})
        info = mlflow.sklearn.log_model(
            trained.estimator,
            name="model",
            serialization_format="skops",
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
            signature=infer_signature(example, trained.estimator.predict_proba(example)),
            input_example=example,
            pyfunc_predict_fn="predict_proba",
            registered_model_name=settings.model_name,
            metadata={"decision_threshold": trained.threshold, "classifier": trained.classifier},
        )
    version = str(info.registered_model_version)
    record_content_hash(client, settings, version)
    set_alias(client, settings.model_name, CHAMPION, version)
    return version


def incident_payloads(rows: int = PAYLOAD_ROWS, seed: int = SEED + 1) -> list[dict[str, Any]]:
    """Generated incidents as the SODA feed's JSON (strings), without the label."""
    from crimeflow.standins.generate import generate_incidents, to_soda_strings

    frame = generate_incidents(PAYLOAD_MONTH, PAYLOAD_MONTH, rows_per_month=rows, seed=seed)
    records = to_soda_strings(frame.drop(columns=["arrest"])).to_dict("records")
    # SODA leaves missing fields out of a record rather than sending null.
    return [{k: v for k, v in record.items() if v is not None} for record in records]


def dumps(value: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(value, separators=(",", ":")).encode()


# --- the servers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server and what its endpoints take."""

    name: str
    args: list[str]
    ready_path: str
    batch_body: Callable[[list[dict[str, Any]]], Any]
    logs_predictions: bool
    # The prediction log's URL when it is not the settings' own (crimeflow-pg); singles or not.
    log_url: str | None = None
    singles: bool = True


def crimeflow_spec(
    port: int, workers: int = 1, log_url: str | None = None, name: str = "crimeflow"
) -> ServerSpec:
    """crimeflow's API as users run it: `crimeflow api` (one uvicorn worker unless asked)."""
    args = [sys.executable, "-m", "crimeflow", "api"]
    args += ["--host", HOST, "--port", str(port), "--workers", str(workers)]
    return ServerSpec(
        name,
        args,
        "/ready",
        lambda rows: rows,
        logs_predictions=True,
        log_url=log_url,
        singles=log_url is None,
    )


def baseline_spec(port: int) -> ServerSpec:
    """The typical FastAPI + mlflow.pyfunc server (tests/benchmarks/baseline_server.py)."""
    args = [sys.executable, "-m", "uvicorn", "tests.benchmarks.baseline_server:create_app"]
    args += ["--factory", "--host", HOST, "--port", str(port), "--workers", "1"]
    # Access logging off: it would only slow the baseline down (crimeflow keeps its own off).
    args += ["--no-access-log"]
    return ServerSpec(
        "baseline", args, "/health", lambda rows: {"instances": rows}, logs_predictions=False
    )


def server_environment(settings: Settings) -> dict[str, str]:
    """Environment of both servers: the temp home, its registry and SQLite log."""
    return child_environment(
        {
            "CRIMEFLOW_HOME": str(settings.home),
            "CRIMEFLOW_MLFLOW_TRACKING_URI": settings.mlflow.tracking_uri,
            "CRIMEFLOW_PREDICTION_LOG_URL": settings.prediction_log.url,
            "CRIMEFLOW_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT_PER_MINUTE),
            # MLflow 3.17 refuses to load any model without it (the baseline's pyfunc load).
            "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",
            "PYTHONPATH": str(REPO),
        }
    )


def busy_cpu_seconds() -> float:
    """CPU seconds all processes of the machine have used since boot (Linux /proc/stat)."""
    # user nice system idle iowait irq softirq steal: everything but idle and iowait is busy.
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of the processes in a process group (Linux /proc)."""
    ticks = sum(p.cpu_ticks for p in scan_processes() if p.pgid == pgid)
    return ticks / os.sysconf("SC_CLK_TCK")


# --- the load client --------------------------------------------------------------------------


@dataclass
class RunResult:
    """One load run: counts, latency percentiles, throughput and CPU shares."""

    server: str
    mode: str
    concurrency: int
    duration_s: float
    requests: int
    ok: int
    ok_rows: int
    errors: dict[str, int]
    rps: float
    rows_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    client_cpu_pct: float
    server_cpu_pct: float = math.nan
    other_cpu_pct: float = math.nan
    checked: int = 0  # responses whose rows were counted (a sample: see ROW_CHECK_EVERY)
    load_1m: float = math.nan  # the machine's 1-minute load average at the end of the run


@dataclass
class _Tally:
    """What the workers of one run collect."""

    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    ok_rows: int = 0
    checked: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def answered(self, status: int, body: bytes, rows: int) -> None:
        """Count one response; on a sample, check it holds one prediction per row sent."""
        if status != 200:
            self.error(f"http {status}")
            return
        # Counting a marker in the raw bytes (C speed) instead of parsing the JSON: the client
        # shares the 2 cores with the server, and decoding 10,000-row answers would take one.
        if (len(self.latencies) - 1) % ROW_CHECK_EVERY == 0:  # this connection's 1st, 9th, ...
            self.checked += 1
            if body.count(ROW_MARKER) != rows:
                self.error("wrong row count")
                return
        self.ok += 1
        self.ok_rows += rows

    def error(self, kind: str) -> None:
        """Count one failed request by kind."""
        self.errors[kind] = self.errors.get(kind, 0) + 1


def http_request(path: str, port: int, body: bytes) -> bytes:
    """A complete HTTP/1.1 keep-alive POST with a JSON body."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Read one response: status, body, and whether the server will close the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            chunks.append(chunk[:-2])
        body = b"".join(chunks)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, body, headers.get("connection", "").lower() == "close"


async def _raw_worker(
    port: int, requests: Sequence[tuple[bytes, int]], offset: int, deadline: float, tally: _Tally
) -> None:
    """Send requests back to back over one keep-alive connection until `deadline`."""
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    index = offset
    try:
        while time.perf_counter() < deadline:
            if writer is None:
                try:
                    reader, writer = await asyncio.open_connection(HOST, port)
                except OSError:
                    tally.error("connect")
                    await asyncio.sleep(0.05)
                    continue
            assert reader is not None
            payload, rows = requests[index % len(requests)]
            index += 1
            tick = time.perf_counter()
            try:
                writer.write(payload)
                status, body, closing = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                tally.error("connection")
                writer.close()
                writer = None
                continue
            tally.latencies.append(time.perf_counter() - tick)
            tally.answered(status, body, rows)
            if closing:
                writer.close()
                writer = None
    finally:
        if writer is not None:
            writer.close()


async def _httpx_worker(
    client: Any,
    url: str,
    requests: Sequence[tuple[bytes, int]],
    offset: int,
    deadline: float,
    tally: _Tally,
) -> None:
    """The same loop through httpx.AsyncClient (for comparing client overheads)."""
    import httpx

    index = offset
    headers = {"content-type": "application/json"}
    while time.perf_counter() < deadline:
        raw, rows = requests[index % len(requests)]
        index += 1
        body = raw.split(b"\r\n\r\n", 1)[1]
        tick = time.perf_counter()
        try:
            response = await client.post(url, content=body, headers=headers)
        except httpx.HTTPError:
            tally.error("connection")
            continue
        tally.latencies.append(time.perf_counter() - tick)
        tally.answered(response.status_code, response.content, rows)


async def _drive(
    port: int,
    path: str,
    requests: Sequence[tuple[bytes, int]],
    concurrency: int,
    duration_s: float,
    client: str,
) -> _Tally:
    """Run `concurrency` workers for `duration_s` and merge their tallies."""
    deadline = time.perf_counter() + duration_s
    tallies = [_Tally() for _ in range(concurrency)]
    # Workers start at different offsets, so they do not send the same incident in lockstep.
    step = max(1, len(requests) // concurrency)
    if client == "raw":
        await asyncio.gather(
            *(
                _raw_worker(port, requests, i * step, deadline, tally)
                for i, tally in enumerate(tallies)
            )
        )
    else:
        import httpx

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, trust_env=False, timeout=30.0) as session:
            url = f"http://{HOST}:{port}{path}"
            await asyncio.gather(
                *(
                    _httpx_worker(session, url, requests, i * step, deadline, tally)
                    for i, tally in enumerate(tallies)
                )
            )
    merged = _Tally()
    for tally in tallies:
        merged.latencies.extend(tally.latencies)
        merged.ok += tally.ok
        merged.ok_rows += tally.ok_rows
        merged.checked += tally.checked
        for kind, count in tally.errors.items():
            merged.errors[kind] = merged.errors.get(kind, 0) + count
    return merged


def run_load(
    server: str,
    mode: str,
    port: int,
    path: str,
    requests: Sequence[tuple[bytes, int]],
    concurrency: int,
    duration_s: float,
    client: str,
    server_pgid: int | None,
) -> RunResult:
    """One timed run; CPU of this process (the client) and of the server group alongside."""
    server_cpu = group_cpu_seconds(server_pgid) if server_pgid else math.nan
    client_cpu = time.process_time()
    busy = busy_cpu_seconds()
    started = time.perf_counter()
    tally = asyncio.run(_drive(port, path, requests, concurrency, duration_s, client))
    elapsed = time.perf_counter() - started
    client_cpu = time.process_time() - client_cpu
    busy = busy_cpu_seconds() - busy
    if server_pgid:
        server_cpu = group_cpu_seconds(server_pgid) - server_cpu
    latencies_ms = np.asarray(tally.latencies) * 1000.0
    p50, p95, p99 = (
        np.percentile(latencies_ms, [50, 95, 99]) if latencies_ms.size else (math.nan,) * 3
    )
    return RunResult(
        server=server,
        mode=mode,
        concurrency=concurrency,
        duration_s=round(elapsed, 2),
        requests=int(latencies_ms.size),
        ok=tally.ok,
        ok_rows=tally.ok_rows,
        errors=tally.errors,
        rps=tally.ok / elapsed,
        rows_per_s=tally.ok_rows / elapsed,
        p50_ms=float(p50),
        p95_ms=float(p95),
        p99_ms=float(p99),
        max_ms=float(latencies_ms.max()) if latencies_ms.size else math.nan,
        client_cpu_pct=100.0 * client_cpu / elapsed,
        server_cpu_pct=100.0 * server_cpu / elapsed,
        # Whatever else ran on the machine meanwhile (other people's tests, the OS).
        other_cpu_pct=100.0 * max(0.0, busy - client_cpu - server_cpu) / elapsed
        if server_pgid
        else math.nan,
        checked=tally.checked,
        load_1m=os.getloadavg()[0],
    )


# --- the client's ceiling: a server that does nothing ------------------------------------------

_FIXED_BODY = b'{"arrest_probability":0.25,"arrest":false}'
_FIXED_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(_FIXED_BODY)).encode()
    + b"\r\n\r\n"
    + _FIXED_BODY
)


async def _serve_fixed(port: int) -> None:
    """Answer every request on `port` with one small fixed 200 response (framing only)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                writer.write(_FIXED_RESPONSE)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, HOST, port, backlog=1024)
    async with server:
        await server.serve_forever()


def _use_uvloop() -> None:
    """Install uvloop's event loop policy when it is available (less client CPU per request)."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


# --- orchestration ----------------------------------------------------------------------------


def _pin(pid: int, cpu: int) -> None:
    """Restrict a process to one CPU (threads it starts later inherit the mask)."""
    if hasattr(os, "sched_setaffinity") and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(pid, {cpu})


def _logged_rows(settings: Settings, url: str | None = None) -> int:
    """Rows in the prediction log (the settings' own, or `url`), read with the log's reader."""
    from crimeflow.stores.prediction_log import PredictionLog

    log = PredictionLog(url or settings.prediction_log.url)
    try:
        return log.count()
    finally:
        log.engine.dispose()


@dataclass
class ServerReport:
    """Every run against one server, plus the log check and its exit code."""

    name: str
    runs: list[RunResult]
    startup_s: float
    exit_code: int | None = None
    logged_rows_under_load: int | None = None
    logged_rows_after_stop: int | None = None
    ok_rows_total: int | None = None


def bench_server(
    spec: ServerSpec,
    port: int,
    settings: Settings,
    singles: Sequence[tuple[bytes, int]],
    batches: dict[int, list[tuple[bytes, int]]],
    args: argparse.Namespace,
    log_dir: Path,
) -> ServerReport:
    """Start one server, warm it up, run the single-row and batch loads, stop it."""
    log_file = log_dir / f"{spec.name}.log"
    # A reused --home already holds predictions: the check counts what this run adds.
    logged_before = _logged_rows(settings, spec.log_url) if spec.logs_predictions else 0
    env = server_environment(settings)
    if spec.name.startswith("crimeflow"):
        env.update(args.server_env)
    if spec.log_url is not None:
        env["CRIMEFLOW_PREDICTION_LOG_URL"] = spec.log_url
    tick = time.perf_counter()
    process: ServiceProcess = start(spec.name, spec.args, env, log_file, cwd=REPO)
    try:
        if args.pin:
            _pin(process.pid, 0)
        wait_http(f"http://{HOST}:{port}{spec.ready_path}", timeout_s=180, process=process)
        report = ServerReport(spec.name, [], startup_s=time.perf_counter() - tick)
        print(f"  {spec.name} ready in {report.startup_s:.1f} s (log: {log_file})", flush=True)
        runs = [
            run_load(
                spec.name, "warm-up", port, "/predict/batch", batches[min(batches)],
                args.batch_concurrency, min(args.warmup, 2.0), args.client, None,
            )
        ]  # fmt: skip
        if spec.singles:
            runs.append(
                run_load(
                    spec.name, "warm-up", port, "/predict", singles, args.concurrency,
                    args.warmup, args.client, None,
                )
            )  # fmt: skip
            report.runs.append(
                run_load(
                    spec.name, "single", port, "/predict", singles, args.concurrency,
                    args.duration, args.client, process.pid,
                )
            )  # fmt: skip
        for rows, requests in sorted(batches.items()):
            report.runs.append(
                run_load(
                    spec.name, f"batch x{rows}", port, "/predict/batch", requests,
                    args.batch_concurrency, args.batch_duration, args.client, process.pid,
                )
            )  # fmt: skip
        if spec.logs_predictions:
            report.ok_rows_total = sum(r.ok_rows for r in (*runs, *report.runs))
            report.logged_rows_under_load = _logged_rows(settings, spec.log_url) - logged_before
    finally:
        code = stop(process, timeout_s=30)
    report.exit_code = code
    if spec.logs_predictions:
        report.logged_rows_after_stop = _logged_rows(settings, spec.log_url) - logged_before
    return report


def model_speed(settings: Settings, incidents: Sequence[dict[str, Any]]) -> dict[int, float]:
    """Rows/s of the champion's own `score_rows` on 1,000 and 10,000 canonical rows (best of 5)."""
    import msgspec

    from api.schemas import Incident, canonicalize_many
    from crimeflow.stores.serving import load_serving_model, score_rows

    model = load_serving_model(settings)
    decoded = msgspec.json.decode(dumps(list(incidents)), type=list[Incident])
    rows = canonicalize_many(decoded)
    speeds = {}
    for size in (1000, 10000):
        batch = (rows * (size // len(rows) + 1))[:size]
        best = math.inf
        for _ in range(5):
            tick = time.perf_counter()
            score_rows(model, batch)
            best = min(best, time.perf_counter() - tick)
        speeds[size] = size / best
    return speeds


@contextlib.contextmanager
def postgres_log(base_url: str) -> Iterator[str]:
    """A prediction-log URL whose table lives in a throwaway schema of `base_url`'s database."""
    import sqlalchemy as sa

    schema = f"bench_api_{os.getpid()}_{int(time.time())}"
    engine = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
        url = sa.make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        engine.dispose()


def client_ceiling(args: argparse.Namespace, bodies: Sequence[bytes]) -> RunResult:
    """The load client against a server that does no work: the most it can measure here."""
    port = free_port()
    code = f"import sys; sys.path.insert(0, {str(REPO)!r}); "
    code += "from tests.benchmarks.bench_api import _serve_fixed, _use_uvloop; import asyncio; "
    code += f"_use_uvloop(); asyncio.run(_serve_fixed({port}))"
    log_dir = Path(args.home) / "logs"
    process = start("fixed-response", [sys.executable, "-c", code], None, log_dir / "fixed.log")
    try:
        if args.pin:
            _pin(process.pid, 0)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
                break
            time.sleep(0.05)
        requests = [(http_request("/predict", port, body), 1) for body in bodies]
        return run_load(
            "fixed-response", "client ceiling", port, "/predict", requests, args.concurrency,
            min(args.duration, 5.0), args.client, process.pid,
        )  # fmt: skip
    finally:
        stop(process, timeout_s=5)


def print_table(results: Sequence[RunResult]) -> None:
    """The runs as a fixed-width table."""
    header = (
        f"{'server':<15}{'mode':<16}{'conc':>5}{'ok':>9}{'rps':>9}{'rows/s':>10}"
        f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}"
        f"{'client CPU':>12}{'server CPU':>12}{'other CPU':>11}{'load':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.server:<15}{r.mode:<16}{r.concurrency:>5}{r.ok:>9,}{r.rps:>9,.0f}"
            f"{r.rows_per_s:>10,.0f}{r.p50_ms:>9.1f}{r.p95_ms:>9.1f}{r.p99_ms:>9.1f}"
            f"{r.max_ms:>9.1f}{sum(r.errors.values()):>8}"
            f"{r.client_cpu_pct:>11.0f}%{r.server_cpu_pct:>11.0f}%{r.other_cpu_pct:>10.0f}%"
            f"{r.load_1m:>7.2f}"
        )
    for r in results:
        if r.errors:
            print(f"  errors of {r.server} {r.mode}: {r.errors}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="Seconds of single-row load.")
    parser.add_argument("--concurrency", type=int, default=16, help="Single-row connections.")
    parser.add_argument(
        "--batch-rows", default="1000,10000", help="Rows per batch request (comma-separated sizes)."
    )
    parser.add_argument("--batch-concurrency", type=int, default=4, help="Batch connections.")
    parser.add_argument("--batch-duration", type=float, default=10.0, help="Seconds of batches.")
    parser.add_argument("--warmup", type=float, default=3.0, help="Seconds of warm-up load.")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw", help="Load client.")
    parser.add_argument("--pin", action="store_true", help="Server on CPU 0, client on CPU 1.")
    parser.add_argument(
        "--workers", type=int, default=1, help="crimeflow's uvicorn workers (baseline: 1)."
    )
    parser.add_argument(
        "--servers",
        default="crimeflow,crimeflow-pg,baseline",
        help="Comma-separated: crimeflow, crimeflow-pg (log on PostgreSQL), baseline.",
    )
    parser.add_argument(
        "--postgres-url", default=POSTGRES_URL, help="crimeflow-pg's database (a temp schema)."
    )
    parser.add_argument("--home", type=Path, help="Keep state here (default: a temp folder).")
    parser.add_argument("--json", type=Path, help="Also write the results as JSON here.")
    parser.add_argument(
        "--classifier",
        default="hist_gradient_boosting",
        choices=("hist_gradient_boosting", "logistic_regression", "random_forest"),
        help="Champion to train (a fresh --home only); production serves HGB.",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="Extra env var for crimeflow's server (tuning experiments); repeatable.",
    )
    parser.add_argument("--strict", action="store_true", help="Exit 2 when a target is missed.")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.duration > 600 or args.batch_duration > 600:
        parser.error("durations must be in (0, 600] s")
    if not 1 <= args.concurrency <= 256 or not 1 <= args.batch_concurrency <= 64:
        parser.error("concurrency must be in [1, 256], batch concurrency in [1, 64]")
    args.servers = [name.strip() for name in args.servers.split(",") if name.strip()]
    if not set(args.servers) <= {"crimeflow", "crimeflow-pg", "baseline"}:
        parser.error("--servers takes crimeflow, crimeflow-pg, baseline ('' measures the client)")
    try:
        args.batch_rows = sorted({int(size) for size in str(args.batch_rows).split(",")})
    except ValueError:
        parser.error("--batch-rows takes comma-separated integers")
    if not all(1 <= size <= 10_000 for size in args.batch_rows):
        parser.error("batch sizes must be in [1, 10000] (the API's default limit)")
    pairs = [item.partition("=") for item in args.server_env]
    if any(not sep or not name for name, sep, _ in pairs):
        parser.error("--server-env takes NAME=VALUE")
    args.server_env = {name: value for name, _, value in pairs}
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; the exit status (see the module docstring)."""
    args = parse_args(argv)
    _use_uvloop()
    temporary = args.home is None
    args.home = Path(tempfile.mkdtemp(prefix="crimeflow-bench-api-")) if temporary else args.home
    settings = Settings(home=args.home.resolve(), _env_file=None)
    log_dir = settings.home / "logs"
    try:
        print(f"home: {settings.home}  client: {args.client}  cpus: {os.cpu_count()}", flush=True)
        tick = time.perf_counter()
        if not (settings.home / "mlflow.db").exists():
            version = register_champion(settings, args.classifier)
            print(
                f"registered {args.classifier} champion v{version} "
                f"in {time.perf_counter() - tick:.1f} s"
            )
        incidents = incident_payloads(max(PAYLOAD_ROWS, 2 * max(args.batch_rows)))
        speeds = model_speed(settings, incidents[:PAYLOAD_ROWS])
        if args.pin:
            _pin(os.getpid(), 1)
        results: list[RunResult] = []
        ceiling = client_ceiling(args, [dumps(i) for i in incidents[:PAYLOAD_ROWS]])
        results.append(ceiling)
        reports: dict[str, ServerReport] = {}
        with contextlib.ExitStack() as stack:
            for name in args.servers:
                port = free_port()
                if name == "crimeflow":
                    spec = crimeflow_spec(port, args.workers)
                elif name == "crimeflow-pg":
                    try:
                        url = stack.enter_context(postgres_log(args.postgres_url))
                    except Exception as error:  # no PostgreSQL here: the other servers still run
                        print(f"crimeflow-pg: skipped, no PostgreSQL ({type(error).__name__})")
                        continue
                    spec = crimeflow_spec(port, args.workers, log_url=url, name=name)
                else:
                    spec = baseline_spec(port)
                singles = [
                    (http_request("/predict", port, dumps(i)), 1) for i in incidents[:PAYLOAD_ROWS]
                ]
                batches = {
                    size: batch_requests(spec, port, incidents, size) for size in args.batch_rows
                }
                print(f"{name}: starting", flush=True)
                report = bench_server(spec, port, settings, singles, batches, args, log_dir)
                reports[name] = report
                results.extend(report.runs)
        print()
        print_table(results)
        return _verdict(reports, results, args, speeds)
    finally:
        if temporary:
            shutil.rmtree(args.home, ignore_errors=True)


def batch_requests(
    spec: ServerSpec, port: int, incidents: Sequence[dict[str, Any]], size: int
) -> list[tuple[bytes, int]]:
    """Complete /predict/batch requests of `size` rows each, over consecutive incidents."""
    return [
        (
            http_request("/predict/batch", port, dumps(spec.batch_body(incidents[i : i + size]))),
            size,
        )
        for i in range(0, len(incidents) - size + 1, size)
    ]


def _batch_summary(results: list[RunResult], speeds: dict[int, float]) -> bool:
    """Print /predict/batch rows/s per server and size next to the model's own; target met?"""
    print(
        "model alone (score_rows, canonical rows, no HTTP/JSON/log): "
        + ", ".join(f"{size:,} rows {speed:,.0f} rows/s" for size, speed in sorted(speeds.items()))
    )
    met = True
    stores = {"crimeflow": "SQLite log", "crimeflow-pg": "PostgreSQL log", "baseline": "no log"}
    for r in results:
        if not r.mode.startswith("batch"):
            continue
        size = int(r.mode.removeprefix("batch x"))
        line = f"/predict/batch x{size:,} {r.server} ({stores.get(r.server, '')}): "
        line += f"{r.rows_per_s:,.0f} rows/s"
        if r.server_cpu_pct == r.server_cpu_pct:  # not NaN
            # CPU per row is steadier than rows/s on a machine shared with other jobs.
            cpu_ms = 1e4 * r.server_cpu_pct / max(r.rows_per_s, 1e-9)
            line += f", server CPU {cpu_ms:.0f} ms per 1,000 rows"
            line += f"; CPU % of a core: server {r.server_cpu_pct:.0f}, client "
            line += f"{r.client_cpu_pct:.0f}, other {r.other_cpu_pct:.0f}; load {r.load_1m:.2f}"
        if r.server.startswith("crimeflow"):
            line += f" (target >= {BATCH_ROWS_PER_S_TARGET:,.0f} rows/s)"
            met &= r.rows_per_s >= BATCH_ROWS_PER_S_TARGET
        print(line)
    return met


def _verdict(
    reports: dict[str, ServerReport],
    results: list[RunResult],
    args: argparse.Namespace,
    speeds: dict[int, float],
) -> int:
    """Print ratios, the log check and the targets; the exit status."""
    status = 0
    print()
    ceiling = results[0]
    print(
        f"client ceiling ({args.client}, {args.concurrency} connections, fixed-response server): "
        f"{ceiling.rps:,.0f} rps at {ceiling.client_cpu_pct:.0f}% of a core"
    )
    targets_met = True
    single = {r.server: r for r in results if r.mode == "single"}
    if "crimeflow" in single and "baseline" in single:
        ratio = single["crimeflow"].rps / max(single["baseline"].rps, 1e-9)
        print(f"single-row RPS ratio crimeflow/baseline: {ratio:.1f}x (target >= 5x)")
        targets_met &= ratio >= RPS_RATIO_TARGET
    if "crimeflow" in single:
        p99 = single["crimeflow"].p99_ms
        print(f"crimeflow single-row p99: {p99:.1f} ms (target <= {P99_TARGET_MS:.0f} ms)")
        targets_met &= p99 <= P99_TARGET_MS
    targets_met &= _batch_summary(results, speeds)
    for name, report in reports.items():
        if not name.startswith("crimeflow"):
            continue
        errors = sum(sum(r.errors.values()) for r in results if r.server == name)
        if errors:
            print(f"FAIL: {name} answered {errors} requests without a 200")
            status = 1
        same = (
            report.ok_rows_total == report.logged_rows_under_load == report.logged_rows_after_stop
        )
        print(
            f"{name} prediction log: {report.logged_rows_under_load:,} rows right after the load, "
            f"{report.logged_rows_after_stop:,} after stop; 200-answered predictions: "
            f"{report.ok_rows_total:,} -> {'OK' if same else 'MISMATCH'}; "
            f"exit code after SIGTERM: {report.exit_code}"
        )
        if not same:
            status = 1
    print("targets:", "met" if targets_met else "MISSED")
    if args.json:
        payload = {
            "args": {k: str(v) for k, v in vars(args).items()},
            "results": [asdict(r) for r in results],
            "servers": {name: {**asdict(r), "runs": None} for name, r in reports.items()},
            "model_rows_per_s": speeds,
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    if status == 0 and args.strict and not targets_met:
        status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
