"""Loop latency: drift event → retrain run started → gate decided → API serving the new version.

The demo's whole loop on ~12 months of generated data (10 older months, 2 drifted), with its own
CRIMEFLOW_HOME and free ports, then the latencies measured from the drift event's timestamp on
the Prefect server. Targets on the 2-core machine: event → run start ≤ 15 s, event → API serving
the new version ≤ 180 s.

    python tests/benchmarks/bench_loop.py [--old-months 10] [--new-months 2] [--rows-per-month 4000]
"""

from __future__ import annotations

import argparse
import signal
import tempfile
from datetime import date
from pathlib import Path

from crimeflow.cli.demo import generated_plan, run_demo
from crimeflow.cli.processes import free_port
from crimeflow.contract.settings import Settings

TARGETS_S = {"event_to_run_start": 15.0, "event_to_api_serving": 180.0}


def main() -> None:
    """Run the loop once and print its latencies against the targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-months", type=int, default=10)
    parser.add_argument("--new-months", type=int, default=2)
    parser.add_argument("--rows-per-month", type=int, default=4000)
    args = parser.parse_args()

    def interrupt(signum: int, frame: object) -> None:
        # SIGTERM as Ctrl-C, so leaving run_demo's blocks stops every process it started.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)

    with tempfile.TemporaryDirectory(prefix="crimeflow-bench-loop-") as folder:
        settings = Settings(
            home=Path(folder),
            prefect_port=free_port(),
            api_port=free_port(),
            mlflow_port=free_port(),
            _env_file=None,
        )
        plan = generated_plan(
            date.today(),
            args.old_months,
            args.new_months,
            args.rows_per_month,
            maturity_days=settings.etl.label_maturity_days,
        )
        summary = run_demo(settings, plan=plan, echo=lambda line: None)

    months = len(plan.old_months) + len(plan.new_months)
    print(f"\nloop on {months} generated months ({len(plan.crimes):,} incidents)")
    print(f"{'step (from the drift event)':<32}{'seconds':>9}{'target':>9}")
    for name, seconds in summary.loop_latency_s.items():
        target = TARGETS_S.get(name)
        print(f"{name:<32}{seconds:>9.1f}{'' if target is None else f'≤ {target:g}':>9}")
    decisions = ", ".join(f"v{g['version']} {g['decision']}" for g in summary.gate_decisions)
    print(f"gate: {decisions or 'no decision'}; loop completed: {summary.loop_completed}")
    for name, seconds in summary.timings_s.items():
        print(f"  {name:<44}{seconds:>7.1f} s")


if __name__ == "__main__":
    main()
