"""Issue #16 on real data: areas filled from and disagreeing with coordinates, 2018 file.

Runs scripts/geo_counts.py's own function on all 222,472 rows with the portal's boundaries.
Skips without ../shared/data/real.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from crimeflow.stores.files import read_incidents_file

pytestmark = [pytest.mark.real_data, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "geo_counts.py"


def _script() -> ModuleType:
    """scripts/geo_counts.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("geo_counts", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_counts_on_the_2018_file(real_data_dir: Path, real_boundaries: dict) -> None:
    """2 community areas filled, none of the districts; 625 / 14 rows disagree beyond 10 m."""
    script = _script()
    frame = read_incidents_file(real_data_dir / script.FILE_2018)
    report = script.geo_counts(frame, real_boundaries)
    assert report["rows"] == 222_472
    # SOURCES.md: 2 rows lack a community area, none a district; 963 lack coordinates.
    assert report["community_area"] == {
        "located": 220_878,
        "filled": 2,
        "disagrees": 625,
        "on_edge": 4_566,
    }
    assert report["district"] == {
        "located": 220_902,
        "filled": 0,
        "disagrees": 14,
        "on_edge": 3_193,
    }
