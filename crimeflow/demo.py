"""The offline demo: generated Chicago-shaped data behind the SODA stand-in, then the ETL backfill.

Everything runs as it would against the real portal: the ETL runs in its own process, talks to
the stand-in over HTTP through sodapy, and writes the lake under CRIMEFLOW_HOME.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from crimeflow.months import previous_month, shift_month
from crimeflow.settings import Settings, child_environment

DEMO_MONTHS = 4
DEMO_ROWS_PER_MONTH = 6000
DEMO_SEED = 7


def demo_data(settings: Settings, today: date) -> Path:
    """Generate (once; reruns reuse it) the demo's months of incidents and return the file."""
    from crimeflow.generate import generate_incidents, write_incidents

    last = previous_month(today)
    first = shift_month(last, -(DEMO_MONTHS - 1))
    out = settings.home / "demo-data"
    existing = out / f"crimes_{first}_{last}.csv.gz"
    if existing.exists():
        return existing
    frame = generate_incidents(first, last, rows_per_month=DEMO_ROWS_PER_MONTH, seed=DEMO_SEED)
    return write_incidents(frame, out, fmt="csv.gz")


def run_demo(settings: Settings) -> None:
    """Serve generated data through the SODA stand-in and run the ETL backfill against it."""
    from crimeflow.soda_standin import StandinServer

    started = time.perf_counter()
    crimes = demo_data(settings, date.today())
    print(f"demo data: {crimes}")
    with StandinServer(crimes) as server:
        url = server.url
        print(f"SODA stand-in: {url}/resource/ijzp-q8t2.json")
        env = child_environment(
            {
                "CRIMEFLOW_HOME": str(settings.home),
                "CRIMEFLOW_SOCRATA_URL": url,
                "CRIMEFLOW_BACKFILL_MONTHS": str(DEMO_MONTHS),
                # Prefect's own state stays with the rest of the embedded state.
                "PREFECT_HOME": str((settings.home / "prefect").resolve()),
                # The heartbeat races the first migrations of a fresh SQLite database.
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            }
        )
        subprocess.run([sys.executable, "-m", "crimeflow", "etl"], env=env, check=True)
    print(f"lake: {settings.lake_url}  ({time.perf_counter() - started:.1f} s)")
