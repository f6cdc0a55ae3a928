"""A bad CRIMEFLOW_* value stops any `crimeflow` command with one line naming it, exit code 2.

Real processes of the installed command, as a user meets it: the settings are read before a
command does anything, `crimeflow api` included (before uvicorn starts).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from crimeflow.cli.processes import free_port
from crimeflow.contract.settings import child_environment

CRIMEFLOW = str(Path(sys.executable).with_name("crimeflow"))


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`crimeflow ARGS` in an empty folder (no .env) with the given variables."""
    clean = {k: v for k, v in child_environment({}).items() if not k.startswith("CRIMEFLOW_")}
    clean.update(CRIMEFLOW_HOME=str(tmp_path / "home"), **env)
    return subprocess.run(
        [CRIMEFLOW, *args], env=clean, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "name", "value"),
    [
        (["config", "show"], "CRIMEFLOW_GATE_TOLERANCE", "abc"),
        (["monitor"], "CRIMEFLOW_DRIFT_WINDOW_DAYS", "a week"),
        (["doctor"], "CRIMEFLOW_CORS_ALLOW_ORIGINS", "[https://x"),
    ],
)
def test_a_bad_value_is_one_line_and_exit_code_2(tmp_path, args, name, value):
    done = run(args, tmp_path, **{name: value})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert name in lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_the_api_fails_before_uvicorn_starts(tmp_path):
    began = time.monotonic()
    done = run(["api", "--port", str(free_port())], tmp_path, CRIMEFLOW_API_PORT="-1")
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "CRIMEFLOW_API_PORT='-1'" in line
    assert "greater than or equal to 1" in line
    assert "uvicorn" not in (done.stdout + done.stderr).lower()
    assert time.monotonic() - began < 30


def test_help_still_works_with_a_bad_value(tmp_path):
    done = run(["api", "--help"], tmp_path, CRIMEFLOW_API_PORT="-1")
    assert done.returncode == 0, done.stderr
    assert "Serve the prediction API" in done.stdout
