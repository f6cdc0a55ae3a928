"""`crimeflow demo` as a person runs it: a fresh CRIMEFLOW_HOME, free ports, exit 0, a summary."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from crimeflow.cli.processes import free_port
from crimeflow.contract.settings import child_environment

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DEMO_LIMIT_S = 600  # the bound on this 2-core machine


def test_the_demo_runs_the_loop_by_itself_and_exits_0(tmp_path):
    home = tmp_path / "home"
    env = child_environment(
        {
            "CRIMEFLOW_HOME": str(home),
            "CRIMEFLOW_PREFECT_PORT": str(free_port()),
            "CRIMEFLOW_API_PORT": str(free_port()),
            "CRIMEFLOW_MLFLOW_PORT": str(free_port()),
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "crimeflow", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEMO_LIMIT_S,
    )
    print(done.stdout[-4000:], done.stderr[-4000:])
    assert done.returncode == 0

    summary = json.loads((home / "demo-summary.json").read_text())
    assert summary["loop_completed"]
    assert summary["drift_checks"][0]["status"] == "drift"
    assert [g["decision"] for g in summary["gate_decisions"]] == ["promoted"]
    champion = [v for v in summary["versions"] if "champion" in v["aliases"]]
    assert [v["version"] for v in champion] == ["2"]
    assert "API now serves v2 (was v1)" in done.stdout
