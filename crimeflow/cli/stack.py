"""The long-running pieces of crimeflow on one machine: Prefect server, MLflow, serve, API.

`crimeflow up` is `run_until_stopped()`; the demo (and tests) can start only the pieces
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

Two forms, chosen by settings (docs/operations.md, "The production form"):
- embedded (defaults): Prefect on SQLite, `deployments/serve.py` running the flows, the MLflow
  UI over the SQLite store the flows write directly, the lake in a folder;
- production (`crimeflow up --worker` with the server settings): Prefect on PostgreSQL
  (CRIMEFLOW_PREFECT_DATABASE_URL), `prefect deploy --all` onto the `crimeflow-process` pool and
  a Prefect worker, an MLflow tracking server on CRIMEFLOW_MLFLOW_BACKEND_STORE_URI that every
  client reaches over HTTP and that keeps artifacts at CRIMEFLOW_MLFLOW_ARTIFACTS_DESTINATION,
  and the lake on S3 through the prefect-aws blocks named by CRIMEFLOW_S3_BUCKET_BLOCK (written
  by the stack; its children get no S3 keys).
The stack starts what it owns (processes) and connects to what it is given (databases, buckets,
Redis): it never creates a database or a bucket.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

from pydantic import SecretStr

import deployments
from crimeflow.cli.prefect_server import prefect_environment, start_prefect_server
from crimeflow.cli.processes import ServiceProcess, free_port, log_tail, start, stop, wait_http
from crimeflow.cli.prometheus import (
    ScrapeJob,
    prometheus_binary,
    prometheus_command,
    prometheus_config,
    rule_files,
    write_prometheus_config,
)
from crimeflow.contract.settings import Settings, child_environment, local_url

STARTUP_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
POLL_INTERVAL_S = 0.5
DEPLOY_TIMEOUT_S = 300.0
# The serve process is ready once the server knows this deployment (it registers all five).
SERVE_READY_DEPLOYMENT = "retrain/retrain"
# Where prefect.yaml is: the checkout (or the image's /app) the package is installed from.
PROJECT_ROOT = Path(deployments.__file__).resolve().parent.parent
# S3 keys a child never gets when the lake's blocks hold them.
S3_KEY_VARIABLES = ("CRIMEFLOW_S3_ACCESS_KEY_ID", "CRIMEFLOW_S3_SECRET_ACCESS_KEY")


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
    """`mlflow server`: a tracking server on the server store, else a UI on the embedded one."""
    mlflow = Path(sys.executable).with_name("mlflow")
    common = [str(mlflow), "server", "--host", host, "--port", str(settings.mlflow.port)]
    if settings.mlflow.backend_store_uri:
        # The store URI (with its password) goes in MLFLOW_BACKEND_STORE_URI, not argv, which
        # every user of the machine can read. Clients get mlflow-artifacts:/ URIs and reach
        # the artifacts through this server, so none of them needs the bucket's keys.
        return [
            *common,
            "--serve-artifacts",
            "--artifacts-destination",
            settings.mlflow.artifacts_destination,
            "--workers",
            "2",
        ]
    return [
        *common,
        "--backend-store-uri",
        settings.mlflow.tracking_uri,
        "--default-artifact-root",
        settings.mlflow.artifact_root,
        # One worker is plenty for a person browsing runs, and starts faster than the default.
        "--workers",
        "1",
    ]


def mlflow_server_environment(settings: Settings) -> dict[str, str]:
    """What only the MLflow server process gets: its store URI and the artifact bucket's keys."""
    env: dict[str, str] = {}
    if settings.mlflow.backend_store_uri:
        env["MLFLOW_BACKEND_STORE_URI"] = settings.mlflow.backend_store_uri.get_secret_value()
    s3 = settings.s3
    if settings.mlflow.artifacts_destination.startswith("s3://"):
        env["AWS_DEFAULT_REGION"] = s3.region
        if s3.endpoint_url:
            env["MLFLOW_S3_ENDPOINT_URL"] = s3.endpoint_url
        if s3.access_key_id and s3.secret_access_key:
            env["AWS_ACCESS_KEY_ID"] = s3.access_key_id.get_secret_value()
            env["AWS_SECRET_ACCESS_KEY"] = s3.secret_access_key.get_secret_value()
    return env


def worker_command(pool: str) -> list[str]:
    """`prefect worker start` on a process pool, with its health endpoint on."""
    prefect = Path(sys.executable).with_name("prefect")
    pool_args = ["--pool", pool, "--type", "process"]
    return [str(prefect), "worker", "start", *pool_args, "--with-healthcheck"]


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

    def __init__(
        self,
        settings: Settings,
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
        worker: bool = False,
    ) -> None:
        self.settings = settings
        self.startup_timeout_s = startup_timeout_s
        # True: flows run by a Prefect worker from `prefect deploy`; False: by the serve process.
        self.worker = worker
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

    def apply_lake_blocks(self) -> str:
        """Write the lake's S3Bucket/AwsCredentials blocks to the stack's server; the lake URL."""
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from crimeflow.stores.lake_blocks import LakeBlockError, apply_lake_blocks

        settings = self.settings
        try:
            with temporary_settings(updates={PREFECT_API_URL: self.prefect_api_url}):
                written = apply_lake_blocks(
                    settings.s3.bucket_block, settings.lake_url, settings.s3
                )
        except LakeBlockError as error:
            raise StackError(str(error)) from error
        self.urls["lake"] = f"{written.url} (block {written.bucket_block})"
        return written.url

    def start_mlflow_ui(self) -> str:
        """The MLflow server (or UI over the embedded store) on CRIMEFLOW_MLFLOW_PORT."""
        process = self._start(
            "mlflow-ui", mlflow_ui_command(self.settings), mlflow_server_environment(self.settings)
        )
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

    def start_prometheus(self) -> str:
        """Prometheus on CRIMEFLOW_PROMETHEUS_PORT, scraping the API with the repo's rules."""
        binary = prometheus_binary()
        if binary is None:
            raise StackError("no `prometheus` on PATH (Debian: apt-get install prometheus)")
        folder = (self.settings.home / "prometheus").resolve()
        api = local_url(self.settings.api.host, self.settings.api.port).removeprefix("http://")
        config = prometheus_config([ScrapeJob("crimeflow-api", (api,))], rule_files())
        path = write_prometheus_config(folder, config)
        port = self.settings.prometheus.port
        command = prometheus_command(binary, path, folder / "data", "127.0.0.1", port)
        process = self._start("prometheus", command)
        url = local_url("127.0.0.1", port)
        self._wait(f"{url}/-/ready", process)
        self._add(Service("prometheus", process, url), prometheus=url)
        return url

    def start_worker(self) -> ServiceProcess:
        """`prefect deploy --all` onto the process pool, then a worker polling it."""
        from deployments.declarations import PROCESS_FILE

        pool = PROCESS_FILE.work_pool.name
        self._ensure_process_pool(pool)
        self._deploy()
        port = free_port()
        health = {
            "PREFECT_WORKER_WEBSERVER_HOST": "127.0.0.1",
            "PREFECT_WORKER_WEBSERVER_PORT": str(port),
        }
        # Started in the checkout, like the deploy: a relative path in a flow run means the same.
        process = self._start("prefect-worker", worker_command(pool), health, cwd=PROJECT_ROOT)
        # /health answers 200 once the worker polls its pool (503 when it stopped polling).
        self._wait(f"{local_url('127.0.0.1', port)}/health", process)
        self._add(Service("prefect-worker", process, None), work_pool=pool)
        return process

    def _ensure_process_pool(self, pool: str) -> None:
        """Create the process work pool unless the server has it (kept as the operator left it)."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import WorkPoolCreate
        from prefect.exceptions import ObjectAlreadyExists
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with (
            temporary_settings(updates={PREFECT_API_URL: self.prefect_api_url}),
            get_client(sync_client=True) as client,
            suppress(ObjectAlreadyExists),
        ):
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))

    def _deploy(self) -> None:
        """`prefect --no-prompt deploy --all` from the checkout, as a person runs it."""
        if not (PROJECT_ROOT / "prefect.yaml").is_file():
            raise StackError(f"--worker deploys prefect.yaml, which is not in {PROJECT_ROOT}")
        prefect = Path(sys.executable).with_name("prefect")
        log = self.log_dir / "prefect-deploy.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as sink:
            result = subprocess.run(
                [str(prefect), "--no-prompt", "deploy", "--all"],
                cwd=PROJECT_ROOT,
                env=self._child_env(),
                stdout=sink,
                stderr=subprocess.STDOUT,
                timeout=DEPLOY_TIMEOUT_S,
                check=False,
            )
        if result.returncode != 0:
            raise StackError(f"prefect deploy --all failed; log {log}:\n{log_tail(log)}")

    def steps(self) -> list[Callable[[], object]]:
        """Everything `crimeflow up` runs, in start order."""
        blocks = [self.apply_lake_blocks] if self.settings.s3.bucket_block else []
        runner = self.start_worker if self.worker else self.start_serve
        # MLflow before the API and the flows: the first process to open a new SQLite store
        # migrates it, and two migrating one file at once fail (alembic version mismatch).
        # Prometheus only where it is installed, after the API it scrapes; `make demo` never
        # needs it (the demo starts its own pieces, not these steps).
        monitoring = [self.start_prometheus] if prometheus_binary() else []
        return [
            self.start_prefect,
            *blocks,
            self.start_mlflow_ui,
            runner,
            self.start_api,
            *monitoring,
        ]

    def start_all(self) -> None:
        """Start every piece, in order."""
        for step in self.steps():
            step()

    def _child_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of every child: the settings, then one Prefect API for all."""
        env = child_environment(
            {
                **settings_environment(self.settings),
                "CRIMEFLOW_PREFECT_API_URL": self.prefect_api_url,
                **prefect_environment(self.settings, self.prefect_api_url),
                **(extra or {}),
            }
        )
        if self.settings.s3.bucket_block:
            # The lake's keys are in its Prefect blocks; no child holds a copy.
            for name in S3_KEY_VARIABLES:
                env.pop(name, None)
        return env

    def _start(
        self,
        name: str,
        args: list[str],
        extra_env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ServiceProcess:
        """Start one child with the stack's environment and its own log file."""
        env = self._child_env(extra_env)
        return start(name, args, env, self.log_dir / f"{name}.log", cwd=cwd)

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


def run_until_stopped(
    settings: Settings, echo: Callable[[str], object] = print, worker: bool = False
) -> int:
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
        with Stack(settings, worker=worker) as stack:
            try:
                for step in stack.steps():
                    running = len(stack.services)
                    step()
                    for service in stack.services[running:]:
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
        ("Work pool", stack.urls.get("work_pool")),
        ("Lake", stack.urls.get("lake")),
        ("API", stack.urls.get("api")),
        ("API docs", stack.urls.get("api_docs")),
        ("Prometheus", stack.urls.get("prometheus")),
    ]
    lines = [f"  {label:<12} {url}" for label, url in rows if url]
    return "crimeflow is up (Ctrl-C to stop):\n" + "\n".join(lines)
