"""A local Prefect server for the stack, the demo and e2e tests.

Its database is SQLite under CRIMEFLOW_HOME, or CRIMEFLOW_PREFECT_DATABASE_URL (PostgreSQL via
asyncpg) in the production form; the server creates its tables on start either way.

Events and automations (the drift trigger) need a real server: the ephemeral API that Prefect
starts inside a process does not evaluate triggers. Everything crimeflow starts talks to the
server through `prefect_environment`, so the flows, the serve process and the CLI agree on one
`PREFECT_API_URL` and one `PREFECT_HOME`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from crimeflow.cli.processes import ServiceProcess, start, stop, wait_http
from crimeflow.contract.settings import Settings, child_environment

STARTUP_TIMEOUT_S = 120.0


def prefect_home(settings: Settings) -> Path:
    """Prefect's own state (database, profiles) beside the rest of the embedded state."""
    return (settings.home / "prefect").resolve()


def prefect_environment(settings: Settings, api_url: str | None = None) -> dict[str, str]:
    """The PREFECT_* variables that point a child process at crimeflow's Prefect server."""
    return {
        "PREFECT_HOME": str(prefect_home(settings)),
        "PREFECT_API_URL": api_url or settings.prefect.api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # Flow-run logs go to the server (the UI shows them); nothing is sent anywhere else.
        "PREFECT_LOGGING_TO_API_ENABLED": "true",
    }


def database_environment(settings: Settings) -> dict[str, str]:
    """The server's database setting when one is configured (else Prefect's SQLite default)."""
    url = settings.prefect.database_url
    return {} if url is None else {"PREFECT_API_DATABASE_CONNECTION_URL": url.get_secret_value()}


def server_command(host: str, port: int) -> list[str]:
    """`prefect server start` from this interpreter's environment."""
    prefect = Path(sys.executable).with_name("prefect")
    return [str(prefect), "server", "start", "--host", host, "--port", str(port)]


def start_prefect_server(
    settings: Settings, port: int | None = None, log_file: Path | None = None
) -> tuple[ServiceProcess, str]:
    """Start `prefect server start` on 127.0.0.1 and wait for /api/health; (process, api url)."""
    port = settings.prefect.port if port is None else port
    api_url = f"http://127.0.0.1:{port}/api"
    env = child_environment(
        {
            **prefect_environment(settings, api_url),
            # The server itself must not try to talk to another API.
            "PREFECT_API_URL": "",
            "PREFECT_UI_API_URL": api_url,
            **database_environment(settings),
        }
    )
    # Prefect creates its database file but not the folders above it.
    prefect_home(settings).mkdir(parents=True, exist_ok=True)
    log = log_file or settings.home / "logs" / "prefect-server.log"
    process = start("prefect-server", server_command("127.0.0.1", port), env, log)
    try:
        wait_http(f"{api_url}/health", timeout_s=STARTUP_TIMEOUT_S, process=process)
    except BaseException:
        stop(process)
        raise
    return process, api_url


@contextmanager
def running_prefect_server(
    settings: Settings, port: int | None = None, log_file: Path | None = None
) -> Iterator[str]:
    """A Prefect server for the duration of the block; yields its API URL."""
    process, api_url = start_prefect_server(settings, port, log_file)
    try:
        yield api_url
    finally:
        stop(process)
