"""A SIGKILLed `crimeflow api --workers 2` supervisor takes its workers with it.

uvicorn's workers do not watch their supervisor: killed with SIGKILL (the OOM killer, `kill -9`,
a container runtime), it used to leave both workers serving and holding the port, so the next
start failed with "address in use". Each worker now asks for SIGTERM when its parent dies
(`api.server.exit_with_parent`) and drains as on any SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from crimeflow.cli.processes import free_port, log_tail, start, stop, wait_http
from crimeflow.contract.settings import Settings, child_environment
from tests.e2e.test_api_workers import wait_for_workers

pytestmark = [pytest.mark.e2e]

GONE_WITHIN_S = 5.0


def children(pid: int) -> set[int]:
    """The live (not zombie) processes whose parent is `pid`."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def accepts(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_exit_when_their_supervisor_is_killed(
    registry_settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    env = child_environment(
        {
            "CRIMEFLOW_HOME": str(registry_settings.home),
            "CRIMEFLOW_MLFLOW_TRACKING_URI": registry_settings.mlflow.tracking_uri,
            "CRIMEFLOW_MLFLOW_ARTIFACT_ROOT": registry_settings.mlflow.artifact_root,
        }
    )
    command = [sys.executable, "-m", "crimeflow", "api", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "2"]
    log_file = tmp_path / "api.log"
    process = start("crimeflow-api", command, env, log_file)
    workers: set[int] = set()
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout_s=120, process=process)
        wait_for_workers(log_file, 2)
        workers = children(process.pid)
        assert len(workers) >= 2, workers
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
        deadline = time.monotonic() + GONE_WITHIN_S
        while time.monotonic() < deadline and (accepts(port) or any(map(alive, workers))):
            time.sleep(0.1)
        held, left = accepts(port), sorted(filter(alive, workers))
    finally:
        stop(process, timeout_s=5)
        for pid in workers:  # never leave a worker behind, whatever the outcome
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    report = f"port held: {held}, workers alive: {left}\n{log_tail(log_file, lines=10)}"
    assert not held and not left, report
