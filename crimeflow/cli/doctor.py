"""`crimeflow doctor`: is every configured service there? One line per check, what to change.

Each check asks one service one cheap question with a short timeout (a health endpoint, a
`SELECT 1`, a PING, one SODA row) and never creates anything: a folder or database that does not
exist yet passes when the place it would be created is writable. The checks run side by side on
daemon threads under one deadline, so the command ends in seconds even when every service is
down (a hung connection cannot hold the exit).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import SecretStr

from crimeflow.cli.prefect_server import default_api_url
from crimeflow.contract.redact import MASK, redact
from crimeflow.contract.settings import Settings

TIMEOUT_S = 3.0
# Every check has its own timeouts; this bounds the slowest (DNS, a library's own retry).
DEADLINE_S = 8.0


@dataclass(frozen=True)
class Result:
    """One check's verdict: `status` is OK, FAIL or SKIP; `detail` what it found."""

    status: str
    detail: str


@dataclass(frozen=True)
class Check:
    """One service to check: what is checked (masked), the setting to change, the probe."""

    name: str
    target: str
    fix: str
    probe: Callable[[], Result]

    def line(self, result: Result) -> str:
        """The check's line of the report."""
        text = f"{result.status:<4}  {self.name:<14} {self.target}: {result.detail}"
        return f"{text} -> {self.fix}" if result.status == "FAIL" else text


def ok(detail: str) -> Result:
    """A passed check."""
    return Result("OK", detail)


def fail(detail: str) -> Result:
    """A failed check."""
    return Result("FAIL", detail)


def reason(error: BaseException) -> str:
    """An exception as a short, single-line reason (credentials masked by the callers' URLs)."""
    text = " ".join(str(error).split()) or type(error).__name__
    # SQLAlchemy appends a link to its error catalogue: noise on a one-line report.
    text = text.split(" (Background on this error at:")[0]
    return text if len(text) <= 160 else text[:157] + "..."


# --- probes ----------------------------------------------------------------------------------


def http_get(url: str, headers: dict[str, str] | None = None) -> int:
    """The status of GET `url` within TIMEOUT_S."""
    import httpx

    return httpx.get(url, headers=headers, timeout=TIMEOUT_S).status_code


def writable_place(path: Path) -> Result:
    """OK when `path` is a writable folder, or does not exist and could be created."""
    if path.exists():
        if path.is_dir() and os.access(path, os.W_OK | os.X_OK):
            return ok("writable folder")
        return fail("exists but is not a writable folder")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
        return ok(f"not created yet ({parent} is writable)")
    return fail(f"cannot be created ({parent} is not writable)")


def probe_database(url: str) -> Result:
    """A SQLAlchemy database: a SQLite file that opens for writing, or a server that answers."""
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            return ok("in memory")
        path = Path(parsed.database)
        if not path.exists():
            return writable_place(path.parent)
        # Taking the write lock shows a read-only or locked file without writing anything.
        connection = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=TIMEOUT_S)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.rollback()
        finally:
            connection.close()
        return ok("SQLite file opens for writing")
    args = (
        {"connect_timeout": int(TIMEOUT_S)}
        if parsed.get_backend_name()
        in {
            "postgresql",
            "mysql",
        }
        else {}
    )
    engine = sa.create_engine(parsed, connect_args=args, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    finally:
        engine.dispose()
    return ok(f"{parsed.get_backend_name()} answers")


def probe_prefect(settings: Settings) -> Result:
    """The Prefect API's /health."""
    status = http_get(f"{settings.prefect.api_url.rstrip('/')}/health")
    return ok("answers /health") if status == 200 else fail(f"/health answered HTTP {status}")


def probe_mlflow(settings: Settings) -> Result:
    """The tracking server's /health and registry, or the tracking store it is given directly."""
    uri = settings.mlflow.tracking_uri
    if uri.startswith(("http://", "https://")):
        base = uri.rstrip("/")
        status = http_get(f"{base}/health")
        if status != 200:
            return fail(f"/health answered HTTP {status}")
        model = settings.model_name
        status = http_get(f"{base}/api/2.0/mlflow/registered-models/get?name={model}")
        if status == 200:
            return ok(f"server and registry answer (model {model!r} registered)")
        if status == 404:
            return ok(f"server and registry answer (no model {model!r} yet)")
        return fail(f"registry answered HTTP {status}")
    if uri.startswith("file:") or "://" not in uri:
        return writable_place(Path(uri.removeprefix("file://").removeprefix("file:")))
    store = probe_database(uri)
    if store.status != "OK" or store.detail.startswith("not created yet"):
        return store
    return ok(f"{store.detail}; {registered_in_store(uri, settings.model_name)}")


def registered_in_store(url: str, model: str) -> str:
    """Whether the registry tables of an MLflow database store hold `model` (read only)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table("registered_models"):
                return "no MLflow tables yet (the first training run creates them)"
            query = sa.text("SELECT COUNT(*) FROM registered_models WHERE name = :name")
            found = connection.execute(query, {"name": model}).scalar()
    finally:
        engine.dispose()
    return f"model {model!r} registered" if found else f"no model {model!r} yet"


def probe_lake(settings: Settings) -> Result:
    """The lake's folder (writable) or its S3 bucket (answers HEAD)."""
    if settings.s3.bucket_block:
        from crimeflow.stores.lake_blocks import lake_location

        url, options = lake_location(settings.s3.bucket_block)
        return probe_bucket(url, options, f"block {settings.s3.bucket_block!r}: ")
    url = settings.lake_url
    if url.startswith(("s3://", "s3a://")):
        return probe_bucket(url, settings.s3.storage_options, "")
    if "://" in url and not url.startswith("file://"):
        return Result("SKIP", "not a folder or s3:// URL; not checked")
    return writable_place(Path(url.removeprefix("file://")))


def probe_bucket(url: str, options: dict[str, object], prefix: str) -> Result:
    """HEAD the bucket of an s3:// URL with the lake's options, no retries."""
    import boto3
    from botocore.config import Config

    bucket = url.split("://", 1)[1].split("/", 1)[0]
    client_kwargs = dict(options.get("client_kwargs") or {})  # type: ignore[call-overload]
    client = boto3.client(
        "s3",
        endpoint_url=client_kwargs.get("endpoint_url"),
        region_name=client_kwargs.get("region_name"),
        aws_access_key_id=options.get("key"),  # type: ignore[arg-type]
        aws_secret_access_key=options.get("secret"),  # type: ignore[arg-type]
        config=Config(
            connect_timeout=TIMEOUT_S, read_timeout=TIMEOUT_S, retries={"max_attempts": 1}
        ),
    )
    client.head_bucket(Bucket=bucket)
    return ok(f"{prefix}bucket {bucket!r} answers")


def probe_redis(url: str) -> Result:
    """A Redis PING."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S)
    try:
        client.ping()
    finally:
        client.close()
    return ok("answers PING")


def probe_socrata(settings: Settings) -> Result:
    """One row of the crimes dataset from the SODA endpoint."""
    socrata = settings.socrata
    token = socrata.app_token.get_secret_value() if socrata.app_token else None
    url = f"{socrata.url.rstrip('/')}/resource/{socrata.crimes_dataset}.json?$limit=1"
    status = http_get(url, {"X-App-Token": token} if token else None)
    if status == 200:
        return ok(f"dataset {socrata.crimes_dataset} answers")
    return fail(f"dataset {socrata.crimes_dataset} answered HTTP {status}")


# --- the report ------------------------------------------------------------------------------


def checks(settings: Settings) -> list[Check]:
    """Every service the settings configure, in the order a run meets them."""
    prefect_fix = (
        "start it (`crimeflow up`) or set CRIMEFLOW_PREFECT_PORT"
        if default_api_url(settings)
        else "set CRIMEFLOW_PREFECT_API_URL"
    )
    lake_fix = (
        "set CRIMEFLOW_S3_BUCKET_BLOCK (and `crimeflow blocks apply`)"
        if settings.s3.bucket_block
        else "set CRIMEFLOW_LAKE_URL"
        + (" or CRIMEFLOW_S3_*" if settings.lake_url.startswith("s3") else "")
    )
    found = [
        Check(
            "Prefect API",
            redact(settings.prefect.api_url),
            prefect_fix,
            lambda: probe_prefect(settings),
        ),
        Check(
            "MLflow",
            redact(settings.mlflow.tracking_uri),
            "set CRIMEFLOW_MLFLOW_TRACKING_URI",
            lambda: probe_mlflow(settings),
        ),
        Check("lake", redact(settings.lake_url), lake_fix, lambda: probe_lake(settings)),
        Check(
            "prediction log",
            redact(settings.prediction_log.url),
            "set CRIMEFLOW_PREDICTION_LOG_URL",
            lambda: probe_database(settings.prediction_log.url),
        ),
    ]
    redis_url = settings.api.redis_url
    found.append(
        Check(
            "Redis",
            redact(redis_url.get_secret_value()) if redis_url else "CRIMEFLOW_REDIS_URL unset",
            "set CRIMEFLOW_REDIS_URL (or unset it: each API worker counts its own rate limit)",
            (lambda: probe_redis(redis_url.get_secret_value()))
            if redis_url
            else (lambda: Result("SKIP", "not configured; each API worker counts its own")),
        )
    )
    found.append(
        Check(
            "Socrata",
            redact(settings.socrata.url),
            "set CRIMEFLOW_SOCRATA_URL",
            lambda: probe_socrata(settings),
        )
    )
    return found


def run_checks(found: list[Check], deadline_s: float = DEADLINE_S) -> list[Result]:
    """Run every check side by side; one that has not finished by the deadline fails."""
    results: list[Result | None] = [None] * len(found)

    def run(index: int, check: Check) -> None:
        try:
            results[index] = check.probe()
        except Exception as error:  # any failure of a probe is its answer
            results[index] = fail(reason(error))

    threads = [
        threading.Thread(target=run, args=(i, check), daemon=True, name=f"doctor-{check.name}")
        for i, check in enumerate(found)
    ]
    for thread in threads:
        thread.start()
    end = time.monotonic() + deadline_s
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    return [r or fail(f"no answer within {deadline_s:g} s") for r in results]


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value and URL password of the settings (kept out of error texts)."""
    found = [
        value.get_secret_value()
        for value in settings.flat().values()
        if isinstance(value, SecretStr) and value.get_secret_value()
    ]
    for value in settings.flat().values():
        try:
            password = urlsplit(value).password if isinstance(value, str) else None
        except ValueError:
            continue
        if password:
            found.append(password)
    # Longest first, so a secret that contains another is masked whole.
    return sorted(set(found), key=len, reverse=True)


def diagnose(settings: Settings, say: Callable[[str], None]) -> bool:
    """Print one line per check; whether every check passed (or was skipped)."""
    found = checks(settings)
    results = run_checks(found)
    secrets = secrets_of(settings)
    for check, result in zip(found, results, strict=True):
        detail = result.detail
        for secret in secrets:
            # A driver's error text can quote what it was given; the targets are masked already.
            detail = detail.replace(secret, MASK)
        say(check.line(Result(result.status, detail)))
    return all(result.status != "FAIL" for result in results)
