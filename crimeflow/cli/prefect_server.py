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
from collections.abc import Callable, Iterator
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


# --- where a flow started from the command line reports -------------------------------------

HEALTH_TIMEOUT_S = 2.0


def prefect_answers(api_url: str, timeout_s: float = HEALTH_TIMEOUT_S) -> bool:
    """Whether a Prefect API answers GET /health with 200 within `timeout_s`."""
    import httpx

    try:
        response = httpx.get(f"{api_url.rstrip('/')}/health", timeout=timeout_s)
    except (httpx.HTTPError, ValueError):  # ValueError: not a URL httpx can send to
        return False
    return response.status_code == 200


def default_api_url(settings: Settings) -> bool:
    """Whether the Prefect API URL is the derived one: the server `crimeflow up` starts."""
    return settings.prefect.api_url == f"http://127.0.0.1:{settings.prefect.port}/api"


@contextmanager
def flow_runs_reporting(settings: Settings, say: Callable[[str], None]) -> Iterator[str | None]:
    """Flow runs in this block report to the configured server when it answers; yields its URL.

    Without this, a flow called from a second terminal beside `crimeflow up` runs on Prefect's
    ephemeral in-process API: its events reach no trigger. Explicit beats derived: a set
    CRIMEFLOW_PREFECT_API_URL that answers, then Prefect's own PREFECT_API_URL (env, profile),
    then the server `crimeflow up` starts, when it answers; else Prefect's ephemeral API. `say`
    gets one line naming where the runs go; None is yielded when Prefect chooses by itself.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from crimeflow.contract.redact import redact

    url = settings.prefect.api_url
    derived = default_api_url(settings)
    own = PREFECT_API_URL.value()
    probed = not derived or not own
    if probed and prefect_answers(url):
        origin = "the server of `crimeflow up`" if derived else "CRIMEFLOW_PREFECT_API_URL"
        say(f"Prefect: {redact(url)} ({origin})")
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
        return
    if own:
        # Prefect's own setting (env or profile) names a server: Prefect's choice stands.
        silent = f"; no server answers at {redact(url)}" if probed else ""
        say(f"Prefect: {redact(own)} (PREFECT_API_URL{silent})")
    else:
        say(
            f"Prefect: ephemeral, inside this process (no server answers at {redact(url)}; "
            "its events trigger nothing: start `crimeflow up` or set CRIMEFLOW_PREFECT_API_URL)"
        )
    yield None
