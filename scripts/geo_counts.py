"""Issue #16 on real data: community areas and districts filled from, or disagreeing with, the
coordinates of the 2018 file (Jan-Oct 2018, 222,472 rows), with the portal's boundary files.

Runs the ETL's own functions (crimeflow.domain.geography: `check_layers`, `area_counts`) on
every row of the file and prints, per layer: rows located in a polygon, rows whose id was
missing and is filled, rows whose reported id differs from the polygon their point lies in, and
how many of those lie within EDGE_TOLERANCE_M of the polygon they report (a point geocoded onto
the boundary street, a hair over the line: the ETL does not count those as disagreeing).

    PYTHONPATH=. .venv/bin/python scripts/geo_counts.py [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from pathlib import Path

import geopandas as gpd
import pandas as pd

from crimeflow.domain.geography import (
    EDGE_TOLERANCE_M,
    LAYERS,
    area_counts,
    boundaries_from_geojson,
    check_layers,
)
from crimeflow.stores.files import read_incidents_file

REAL_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
FILE_2018 = "crimes_2018-01_to_2018-10_chicagocrimedata-datastore.csv.gz"


def real_layers(data_dir: Path) -> dict[str, gpd.GeoDataFrame]:
    """The portal's boundary files under data_dir/geo as EPSG:3435 GeoDataFrames."""
    return {
        name: boundaries_from_geojson((data_dir / "geo" / f"{name}.geojson").read_bytes(), layer)
        for name, layer in LAYERS.items()
    }


def geo_counts(frame: pd.DataFrame, boundaries: Mapping[str, gpd.GeoDataFrame]) -> dict:
    """Per layer: rows located, filled, disagreeing (> EDGE_TOLERANCE_M away) and on the edge."""
    checks = check_layers(frame, boundaries)
    counts = area_counts(checks)
    report: dict = {"rows": len(frame)}
    for check in checks:
        column = check.layer.id_column
        report[column] = {
            "located": int(check.located.notna().sum()),
            "filled": counts[f"{column}_filled"],
            "disagrees": counts[f"{column}_disagrees"],
            "on_edge": counts[f"{column}_on_edge"],
        }
    return report


def main() -> None:
    """Print the counts for the real 2018 file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REAL_DATA)
    args = parser.parse_args()
    frame = read_incidents_file(args.data_dir / FILE_2018)
    boundaries = real_layers(args.data_dir)
    start = time.perf_counter()
    report = geo_counts(frame, boundaries)
    seconds = time.perf_counter() - start
    print(f"{FILE_2018}: {report['rows']:,} rows ({seconds:.1f} s for both layers)")
    for column in ("community_area", "district"):
        r = report[column]
        strict = r["disagrees"] + r["on_edge"]
        print(
            f"{column:>15}: located {r['located']:,}, filled {r['filled']:,}, disagree "
            f"{r['disagrees']:,} ({r['disagrees'] / report['rows']:.2%}) more than "
            f"{EDGE_TOLERANCE_M:g} m from the reported polygon, {r['on_edge']:,} within it "
            f"(in another polygon at all: {strict:,}, {strict / report['rows']:.1%})"
        )


if __name__ == "__main__":
    main()
