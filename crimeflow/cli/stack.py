"""The long-running pieces of crimeflow on one machine: Prefect server, serve, MLflow UI, API.

`crimeflow up` is `Stack.run_until_stopped()`; the demo (and tests) can start only the pieces
they need:

    with Stack(settings) as stack:
        stack.start_prefect()
        stack.start_serve()
        print(stack.urls)

Every piece is a process of its own (crimeflow.cli.processes.start: own process group, log under
$CRIMEFLOW_HOME/logs/<name>.log), and leaving the block stops them in reverse start order, so the
serve process and the API finish while the Prefect server is still there to hear about it.
Children get the stack's settings as CRIMEFLOW_* variables, so a Stack built from a Settings
object with overrides starts children that agree with it, and one PREFECT_API_URL.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

from pydantic import SecretStr

from crimeflow.cli.prefect_server import prefect_environment, start_prefect_server
from crimeflow.cli.processes import ServiceProcess, log_tail, start, stop, wait_http
from crimeflow.contract.settings import Settings, child_environment, local_url

STARTUP_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
POLL_INTERVAL_S = 0.5
# The serve process is ready once the server knows this deployment (it registers all five).
SERVE_READY_DEPLOYMENT = "retrain/retrain"


class StackError(RuntimeError):
    """A piece of the stack failed to start or died while running."""


@dataclass(frozen=True)
class Service:
    """One running piece: its process and the URL people open."""

    name: str
    process: ServiceProcess
    url: str | None


def settings_environment(settings: Settings) -> dict[str, str]:
    """`settings` as CRIMEFLOW_* variables that give an equal Settings in a child process."""
    env: dict[str, str] = {}
    for name, value in settings.flat().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list | dict):
            # pydantic-settings reads complex fields (CORS origins) as JSON.
            text = json.dumps(value)
        elif isinstance(value, Path):
            text = str(value.resolve())
        else:
            text = str(value)
        env[f"CRIMEFLOW_{name.upper()}"] = text
    return env


def mlflow_ui_command(settings: Settings, host: str = "127.0.0.1") -> list[str]:
    """`mlflow server` on the embedded store, artifacts where the training flow writes them."""
    mlflow = Path(sys.executable).with_name("mlflow")
    return [
        str(mlflow),
        "server",
        "--backend-store-uri",
        settings.mlflow.tracking_uri,
        "--default-artifact-root",
        settings.mlflow.artifact_root,
        "--host",
        host,
        "--port",
        str(settings.mlflow.port),
        # One worker is plenty for a person browsing runs, and starts faster than the default.
        "--workers",
        "1",
    ]


def api_command(settings: Settings) -> list[str]:
    """`crimeflow api` on CRIMEFLOW_API_HOST:CRIMEFLOW_API_PORT."""
    crimeflow = Path(sys.executable).with_name("crimeflow")
    return [
        str(crimeflow),
        "api",
        "--host",
        settings.api.host,
        "--port",
        str(settings.api.port),
        "--workers",
        str(settings.api.workers),
    ]


class Stack(AbstractContextManager["Stack"]):
    """Starts crimeflow's service processes and stops them all, in reverse order, on exit."""

    def __init__(self, settings: Settings, startup_timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        self.settings = settings
        self.startup_timeout_s = startup_timeout_s
        self.services: list[Service] = []
        self.urls: dict[str, str] = {}
        self.prefect_api_url = settings.prefect.api_url
        self.log_dir = (settings.home / "logs").resolve()

    # --- starting ------------------------------------------------------------------------------
    def start_prefect(self) -> str:
        """The local Prefect server (SQLite under CRIMEFLOW_HOME) on CRIMEFLOW_PREFECT_PORT."""
        process, api_url = start_prefect_server(
            self.settings, log_file=self.log_dir / "prefect-server.log"
        )
        self.prefect_api_url = api_url
        ui = api_url.removesuffix("/api")
        self._add(Service("prefect-server", process, ui), prefect_ui=ui, prefect_api=api_url)
        return api_url

    def start_serve(self) -> ServiceProcess:
        """`python -m deployments.serve`: the five deployments, their schedules and trigger."""
        process = self._start("serve", [sys.executable, "-m", "deployments.serve"])
        # Ready when the server has the deployments; fail fast (with the log) if serve exits.
        ready = f"{self.prefect_api_url}/deployments/name/{SERVE_READY_DEPLOYMENT}"
        self._wait(ready, process)
        self._add(Service("serve", process, None))
        return process

    def start_mlflow_ui(self) -> str:
        """The MLflow UI over the embedded tracking store, on CRIMEFLOW_MLFLOW_PORT."""
        process = self._start("mlflow-ui", mlflow_ui_command(self.settings))
        url = local_url("127.0.0.1", self.settings.mlflow.port)
        self._wait(f"{url}/health", process)
        self._add(Service("mlflow-ui", process, url), mlflow_ui=url)
        return url

    def start_api(self) -> str:
        """The prediction API (`crimeflow api`); its OpenAPI docs are at /schema."""
        process = self._start("api", api_command(self.settings))
        url = local_url(self.settings.api.host, self.settings.api.port)
        self._wait(f"{url}/health", process)
        self._add(Service("api", process, url), api=url, api_docs=f"{url}/schema")
        return url

    def steps(self) -> list[Callable[[], object]]:
        """Everything `crimeflow up` runs, in start order."""
        # MLflow before the API and the flows: the first process to open a new SQLite store
        # migrates it, and two migrating one file at once fail (alembic version mismatch).
        return [self.start_prefect, self.start_mlflow_ui, self.start_serve, self.start_api]

    def start_all(self) -> None:
        """Start every piece, in order."""
        for step in self.steps():
            step()

    def _child_env(self) -> dict[str, str]:
        """The environment of every child: the settings, then one Prefect API for all."""
        return child_environment(
            {
                **settings_environment(self.settings),
                "CRIMEFLOW_PREFECT_API_URL": self.prefect_api_url,
                **prefect_environment(self.settings, self.prefect_api_url),
            }
        )

    def _start(self, name: str, args: list[str]) -> ServiceProcess:
        """Start one child with the stack's environment and its own log file."""
        return start(name, args, self._child_env(), self.log_dir / f"{name}.log")

    def _wait(self, url: str, process: ServiceProcess) -> None:
        """Wait until `url` answers; on failure stop the half-started process and raise."""
        try:
            wait_http(url, timeout_s=self.startup_timeout_s, process=process)
        except BaseException as error:
            stop(process, STOP_TIMEOUT_S)
            if isinstance(error, Exception):
                raise StackError(f"{process.name} did not start: {error}") from error
            raise

    def _add(self, service: Service, **urls: str) -> None:
        """Record a started service (stopped on exit) and its URLs."""
        self.services.append(service)
        self.urls.update(urls)

    # --- running and stopping ------------------------------------------------------------------
    def dead(self) -> list[Service]:
        """Services whose process has exited."""
        return [service for service in self.services if service.process.poll() is not None]

    def wait(self, stop_requested: threading.Event) -> None:
        """Block until `stop_requested` is set; raise StackError if a service dies first."""
        while not stop_requested.wait(POLL_INTERVAL_S):
            if dead := self.dead():
                service = dead[0]
                raise StackError(
                    f"{service.name} exited with code {service.process.returncode}; log "
                    f"{service.process.log_file}:\n{log_tail(service.process.log_file)}"
                )

    def close(self) -> dict[str, int]:
        """Stop every service, newest first; their exit codes by name."""
        codes: dict[str, int] = {}
        while self.services:
            service = self.services.pop()
            codes[service.name] = stop(service.process, STOP_TIMEOUT_S)
        return codes

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class StopRequested(BaseException):
    """SIGINT/SIGTERM arrived while the stack was still starting."""


def run_until_stopped(settings: Settings, echo: Callable[[str], object] = print) -> int:
    """`crimeflow up`: start everything, print the URLs, stop on SIGINT/SIGTERM; exit code."""
    stop_requested = threading.Event()
    starting = True

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()
        # While starting, interrupt the wait for a service to answer (up to minutes); once up,
        # the main loop sees the event. Stopping is never interrupted.
        if starting:
            raise StopRequested

    # Handlers first: a signal during start-up must still stop whatever already runs.
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Stack(settings) as stack:
            try:
                for step in stack.steps():
                    step()
                    service = stack.services[-1]
                    echo(f"started {service.name} (log {service.process.log_file})")
                starting = False
                echo(_banner(stack))
                stack.wait(stop_requested)
            except StopRequested:
                starting = False
            except StackError as error:
                starting = False
                echo(f"error: {error}")
                return 1
            echo("stopping ...")
            codes = stack.close()
        echo("stopped: " + ", ".join(f"{name} {code}" for name, code in codes.items()))
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _banner(stack: Stack) -> str:
    """The URLs people open, once everything answers."""
    rows = [
        ("Prefect UI", stack.urls.get("prefect_ui")),
        ("Prefect API", stack.urls.get("prefect_api")),
        ("MLflow UI", stack.urls.get("mlflow_ui")),
        ("API", stack.urls.get("api")),
        ("API docs", stack.urls.get("api_docs")),
    ]
    lines = [f"  {label:<12} {url}" for label, url in rows if url]
    return "crimeflow is up (Ctrl-C to stop):\n" + "\n".join(lines)
