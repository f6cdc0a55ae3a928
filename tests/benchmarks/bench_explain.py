"""Cost of `?explain=true`: single-prediction latency over HTTP with and without explanations.

    python tests/benchmarks/bench_explain.py [--requests 300] [--classifier hist_gradient_boosting]
        [--batch-rows 1000] [--home DIR]

What it does, on 127.0.0.1 with a temporary CRIMEFLOW_HOME:

1. Registers the production champion (HistGradientBoosting fitted on 3 months x 5,000
   generated incidents, as tests/benchmarks/bench_api.py does; skipped when `--home` already
   holds a registry, which is then kept) and starts `python -m crimeflow api`.
2. One client, one keep-alive connection, requests one after another (latency, not load):
   `--requests` single-row POST /predict, alternating explain=false and explain=true on the
   same incident, so both see the same machine load. Prints p50/p90/p99 of each and the p50
   overhead; also the load average before and after (2 cores shared with other jobs: read the
   numbers against it).
3. In-process: the explainer alone on one row (p50), and a batch of `--batch-rows` rows with
   and without explanations (the cap of an explained batch is 1,000 rows).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

# Run as a script from anywhere: make the repo importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

from crimeflow.cli.processes import free_port, start, stop, wait_http
from crimeflow.contract.settings import Settings
from tests.benchmarks.bench_api import (
    HOST,
    REPO,
    incident_payloads,
    register_champion,
    server_environment,
)


def _post(connection: http.client.HTTPConnection, path: str, body: bytes) -> float:
    """Seconds for one POST on a keep-alive connection (the answer must be 200)."""
    tick = time.perf_counter()
    connection.request("POST", path, body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    payload = response.read()
    elapsed = time.perf_counter() - tick
    if response.status != 200:
        raise RuntimeError(f"{path} answered {response.status}: {payload[:300]!r}")
    return elapsed


def _summary(name: str, seconds: Sequence[float]) -> float:
    """Print p50/p90/p99 in ms; the p50."""
    ms = 1000.0 * np.asarray(seconds)
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    print(f"  {name:<22} n={len(ms):<5} p50 {p50:7.2f} ms  p90 {p90:7.2f} ms  p99 {p99:7.2f} ms")
    return float(p50)


def http_latency(port: int, bodies: Sequence[bytes], requests: int) -> tuple[float, float]:
    """p50 of /predict and of /predict?explain=true, interleaved on one connection."""
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    for body in bodies[:20]:  # warm-up: both paths
        _post(connection, "/predict", body)
        _post(connection, "/predict?explain=true", body)
    plain, explained = [], []
    for i in range(requests):
        body = bodies[i % len(bodies)]
        plain.append(_post(connection, "/predict", body))
        explained.append(_post(connection, "/predict?explain=true", body))
    connection.close()
    print("HTTP, one client, sequential (each request the same incident both ways):")
    return _summary("/predict", plain), _summary("/predict?explain=true", explained)


def in_process(settings: Settings, incidents: list[dict], batch_rows: int) -> None:
    """The explainer's own cost: one row, and a batch with and without explanations."""
    import msgspec

    from api.schemas import Incident, canonicalize_many
    from crimeflow.stores.serving import explain_rows, load_serving_model, score_rows

    tick = time.perf_counter()
    model = load_serving_model(settings)
    print(f"in process (load incl. explainer build: {time.perf_counter() - tick:.2f} s):")
    rows = canonicalize_many(msgspec.json.decode(json.dumps(incidents), type=list[Incident]))
    scored, explained = [], []
    for i in range(60):
        row = [rows[i % len(rows)]]
        tick = time.perf_counter()
        score_rows(model, row)
        scored.append(time.perf_counter() - tick)
        tick = time.perf_counter()
        explain_rows(model, row, 5)
        explained.append(time.perf_counter() - tick)
    _summary("score 1 row", scored[10:])
    _summary("explain 1 row", explained[10:])
    batch = (rows * (batch_rows // len(rows) + 1))[:batch_rows]
    tick = time.perf_counter()
    score_rows(model, batch)
    batch_scored = time.perf_counter() - tick
    tick = time.perf_counter()
    explain_rows(model, batch, 5)
    batch_explained = time.perf_counter() - tick
    print(
        f"  batch of {batch_rows}: score {batch_scored * 1000:.0f} ms, explain "
        f"{batch_explained * 1000:.0f} ms ({batch_explained / batch_rows * 1000:.2f} ms a row)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (exit status 0; 1 if a request failed)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--classifier", default="hist_gradient_boosting")
    parser.add_argument("--batch-rows", type=int, default=1000)
    parser.add_argument("--home", type=Path, help="reuse (and keep) this CRIMEFLOW_HOME")
    args = parser.parse_args(argv)
    temporary = args.home is None
    home = Path(tempfile.mkdtemp(prefix="crimeflow-bench-explain-")) if temporary else args.home
    settings = Settings(home=home.resolve(), _env_file=None)
    process = None
    try:
        tick = time.perf_counter()
        if not (settings.home / "mlflow.db").exists():
            version = register_champion(settings, args.classifier)
            print(f"{args.classifier} champion v{version} in {time.perf_counter() - tick:.0f} s")
        incidents = incident_payloads(200)
        bodies = [json.dumps(i).encode() for i in incidents]
        port = free_port()
        command = [sys.executable, "-m", "crimeflow", "api", "--host", HOST, "--port", str(port)]
        env = server_environment(settings)
        process = start("api", command, env, home / "logs" / "api.log", cwd=REPO)
        wait_http(f"http://{HOST}:{port}/ready", timeout_s=180, process=process)
        before = os.getloadavg()[0]
        plain, explained = http_latency(port, bodies, args.requests)
        after = os.getloadavg()[0]
        print(f"  overhead of explain=true: p50 {explained - plain:+.2f} ms per prediction")
        print(f"  load average (1 min) before/after: {before:.1f} / {after:.1f} on 2 cores")
        stop(process, timeout_s=30)
        process = None
        in_process(settings, incidents, args.batch_rows)
        return 0
    except RuntimeError as error:
        print(f"FAILED: {error}")
        return 1
    finally:
        if process is not None:
            stop(process, timeout_s=30)
        if temporary:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
