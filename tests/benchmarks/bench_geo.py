"""Geography benchmark: nearest station and point-in-polygon on 200k points.

    python tests/benchmarks/bench_geo.py [--rows 200000] [--repeat 3]

Times, on the same EPSG:3435 points (generated incidents, seeded):

- nearest station through the serving path's KD-tree (`StationIndex.nearest`);
- nearest station through geopandas `sjoin_nearest` (`geography.nearest_station`, the ETL's);
- point-in-polygon (`geography.locate`, `sjoin` within) in the police districts and in the
  community areas (the real layers when ../shared/data/real/geo exists, else the generated ones);
- and checks that both nearest-station paths give the same meters.

Prints the best wall time and its CPU time per step (CPU because the machine is shared).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Run as a script from anywhere: make the repo importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

from crimeflow.domain.enrich import StationIndex, state_plane_xy
from crimeflow.domain.geography import (
    LAYERS,
    boundaries_from_geojson,
    locate,
    nearest_station,
    stations_layer,
)
from crimeflow.standins.boundaries import boundaries_from_folder, generated_boundaries
from crimeflow.standins.generate import generate_incidents

REAL_GEO = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real" / "geo"


def best_of(repeat: int, work: Callable[[], Any]) -> tuple[float, float, Any]:
    """Best wall seconds over `repeat` runs, that run's CPU seconds, and the last result."""
    best = (float("inf"), 0.0)
    result = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = work()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best[0], best[1], result


def main() -> None:
    """Run the timings and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    months = max(1, args.rows // 20_000)
    frame = generate_incidents("2024-01", f"2024-{min(months, 12):02d}", rows_per_month=20_000)
    frame = frame.head(args.rows)
    x, y = state_plane_xy(frame)
    index = StationIndex.packaged()
    stations = stations_layer(index.x, index.y, index.districts)
    index.nearest(x[:10], y[:10])  # build the tree outside the timing, as serving does once
    real = REAL_GEO.is_dir()
    raw = boundaries_from_folder(REAL_GEO) if real else generated_boundaries()
    layers = {name: boundaries_from_geojson(data, LAYERS[name]) for name, data in raw.items()}

    print(f"{len(frame):,} points; boundaries: {'real' if real else 'generated'}")
    wall, cpu, (kd, _) = best_of(args.repeat, lambda: index.nearest(x, y))
    print(f"nearest station, StationIndex KD-tree : {wall:6.3f} s wall, {cpu:6.3f} s CPU")
    wall, cpu, (gp, _) = best_of(args.repeat, lambda: nearest_station(x, y, stations))
    print(f"nearest station, sjoin_nearest        : {wall:6.3f} s wall, {cpu:6.3f} s CPU")
    print(f"  max |difference|: {np.nanmax(np.abs(kd - gp)):.2e} m")
    for name, shapes in layers.items():
        layer = LAYERS[name]
        wall, cpu, _ = best_of(args.repeat, lambda s=shapes, ly=layer: locate(x, y, s, ly))
        print(f"point-in-polygon, {name:<19}: {wall:6.3f} s wall, {cpu:6.3f} s CPU")


if __name__ == "__main__":
    main()
