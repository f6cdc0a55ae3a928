"""The production form on this machine, for the e2e test and `make bench-production`.

What compose gives a team, run natively: PostgreSQL (three fresh databases: Prefect, MLflow, the
prediction log), an S3-compatible server (moto's, as a process of its own, with the lake and
MLflow buckets), Redis, and `crimeflow up --worker`'s stack with two API workers. The stack
starts what it owns (Prefect server, the lake's blocks, MLflow server, `prefect deploy` + a
worker); the API is started by the loop, as in the demo.

    with production_form(home, plan) as form:
        run_loop(form.stack, plan, summary, echo)
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crimeflow.cli.processes import free_port, start, stop, wait_http
from crimeflow.cli.stack import Stack
from crimeflow.contract.settings import Settings

# Trust auth, user postgres, database `test` (how PostgreSQL runs on these machines and in CI).
POSTGRES_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"
LAKE_BUCKET = "crimeflow-lake"
MLFLOW_BUCKET = "crimeflow-mlflow"
LAKE_BLOCK = "crimeflow-lake"
# Keys of the S3 stand-in; in compose they come from .env.
S3_KEYS = {"aws_access_key_id": "crimeflow", "aws_secret_access_key": "crimeflow-secret"}


@dataclass(frozen=True)
class ProductionForm:
    """A running production-form stack and where each kind of state lives."""

    settings: Settings
    stack: Stack
    databases: dict[str, str]
    s3_endpoint: str

    def s3(self) -> Any:
        """A boto3 client of the S3 server (to look at the objects the stack wrote)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.s3_endpoint, region_name="us-east-1", **S3_KEYS)


@contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """SQLAlchemy (psycopg) URL of a new database on 127.0.0.1, dropped (FORCE) afterwards."""
    import psycopg
    from psycopg import sql

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextmanager
def s3_server(log_dir: Path) -> Iterator[str]:
    """moto's S3 server as its own process on a free port, with the two buckets; its URL."""
    import boto3

    port = free_port()
    moto = Path(sys.executable).with_name("moto_server")
    process = start(
        "moto-s3", [str(moto), "-H", "127.0.0.1", "-p", str(port)], None, log_dir / "moto-s3.log"
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/moto-api/", timeout_s=60, process=process)
        client = boto3.client("s3", endpoint_url=url, region_name="us-east-1", **S3_KEYS)
        for bucket in (LAKE_BUCKET, MLFLOW_BUCKET):
            client.create_bucket(Bucket=bucket)
        yield url
    finally:
        stop(process)


def flush_redis(url: str) -> None:
    """Empty the Redis database of `url` (one the project's other tests do not use)."""
    from redis import Redis

    with Redis.from_url(url, socket_timeout=5) as redis:
        redis.flushdb()


def production_settings(
    home: Path, databases: dict[str, str], s3_endpoint: str, redis_url: str, **overrides: Any
) -> Settings:
    """Settings of the production form: every store a server, the lake behind its block."""
    values: dict[str, Any] = {
        "home": home,
        "prefect_port": free_port(),
        "prefect_database_url": databases["prefect"].replace("+psycopg", "+asyncpg"),
        "mlflow_port": free_port(),
        "mlflow_backend_store_uri": databases["mlflow"],
        "mlflow_artifacts_destination": f"s3://{MLFLOW_BUCKET}/artifacts",
        "lake_url": f"s3://{LAKE_BUCKET}/lake",
        "s3_endpoint_url": s3_endpoint,
        "s3_access_key_id": S3_KEYS["aws_access_key_id"],
        "s3_secret_access_key": S3_KEYS["aws_secret_access_key"],
        "s3_bucket_block": LAKE_BLOCK,
        "prediction_log_url": databases["log"],
        "redis_url": redis_url,
        "api_workers": 2,
        "api_port": free_port(),
        **overrides,
    }
    return Settings(_env_file=None, **values)


def loop_overrides(soda_url: str, model_poll_interval_s: float) -> dict[str, Any]:
    """The demo loop's settings on top of the production form (stand-in, 1-day drift window)."""
    from crimeflow.cli.demo import TRAINING_WINDOW_MONTHS

    return {
        "socrata_url": soda_url,
        "socrata_backoff_s": 0.01,
        "drift_window_days": 1,
        "model_poll_interval_s": model_poll_interval_s,
        "training_window_months": TRAINING_WINDOW_MONTHS,
    }


@contextmanager
def production_form(home: Path, redis_url: str, **overrides: Any) -> Iterator[ProductionForm]:
    """Databases, S3 and the stack up to its worker (the API is the loop's to start)."""
    with ExitStack() as resources:
        databases = {
            role: resources.enter_context(postgres_database(f"crimeflow_{role}"))
            for role in ("prefect", "mlflow", "log")
        }
        endpoint = resources.enter_context(s3_server(home / "logs"))
        flush_redis(redis_url)
        settings = production_settings(home, databases, endpoint, redis_url, **overrides)
        stack = resources.enter_context(Stack(settings, worker=True))
        stack.start_prefect()
        stack.apply_lake_blocks()
        stack.start_mlflow_ui()
        stack.start_worker()
        yield ProductionForm(settings, stack, databases, endpoint)


def environment_of(pid: int) -> dict[str, str]:
    """A live process's environment, from /proc."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {key.decode(): value.decode(errors="replace") for key, value in pairs}
