"""The production form, end to end on this machine, wired the way compose wires it.

PostgreSQL holds Prefect's database, MLflow's store and the prediction log (three databases the
test creates and drops); moto's S3 server (its own process) holds the lake, behind the
prefect-aws blocks `crimeflow up` writes, and MLflow's artifacts, served through the MLflow
tracking server; Redis holds the API's rate-limit windows; `crimeflow up --worker`'s stack runs
`prefect deploy --all` onto the `crimeflow-process` pool and a Prefect worker, and the API runs
two workers. Then the demo's loop, which only starts deployments and watches: ETL and the first
champion (runs picked up by the worker), HTTP traffic with drift, the drift monitor, the drift
event, the retrain its trigger starts, the gate, the promotion, the API serving the new version.

The assertions read each store directly: flow runs in Prefect's PostgreSQL tables, versions and
aliases in MLflow's, objects in the buckets, rows in the prediction log, and the processes'
environments (the lake's keys are in Prefect, not in the worker or the API).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker

from crimeflow.cli.demo import (
    DRIFT_TRAFFIC_ROWS,
    NORMAL_TRAFFIC_ROWS,
    DemoPlan,
    DemoSummary,
    generated_plan,
    run_loop,
)
from crimeflow.cli.processes import log_tail
from crimeflow.contract.settings import EtlSettings
from crimeflow.standins.soda import StandinServer
from tests.e2e.test_api_workers import access_lines
from tests.production import (
    LAKE_BUCKET,
    MLFLOW_BUCKET,
    S3_KEYS,
    ProductionForm,
    environment_of,
    loop_overrides,
    production_form,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# A Redis database no other test uses (the rate-limit test has 13).
REDIS_URL = "redis://127.0.0.1:6379/12"
POOL = "crimeflow-process"

# The stand-in's data ends at the newest month with mature labels (the default rule), so
# before last month: the triggered retrain must stop at the newest month the source has.
MATURITY_DAYS: int = EtlSettings.model_fields["label_maturity_days"].default


@dataclass
class Ran:
    """The production form after one turn of the loop."""

    form: ProductionForm
    plan: DemoPlan
    summary: DemoSummary
    began: datetime

    def service(self, name: str) -> Any:
        """The running process of one stack service."""
        return next(s.process for s in self.form.stack.services if s.name == name)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ran]:
    """The loop, run once through the production form; the stack still up for the checks."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home = tmp_path_factory.mktemp("production") / "home"
    # The retrain loop test's data: enough new months that the retrained model wins the gate.
    plan = generated_plan(
        date.today(), old_months=5, rows_per_month=3000, maturity_days=MATURITY_DAYS
    )
    patch = pytest.MonkeyPatch()
    # Workers ask their pool for runs every 10 s by default; every 2 s keeps the test short.
    patch.setenv("PREFECT_WORKER_QUERY_SECONDS", "2")
    began = datetime.now(UTC)
    try:
        with (
            StandinServer(plan.crimes) as soda,
            production_form(
                home,
                REDIS_URL,
                **loop_overrides(soda.url, model_poll_interval_s=1.0),
            ) as form,
        ):
            summary = DemoSummary()
            try:
                with temporary_settings(updates={PREFECT_API_URL: form.stack.prefect_api_url}):
                    run_loop(form.stack, plan, summary, print)
                    yield Ran(form, plan, summary, began)
            finally:
                for service in form.stack.services:
                    print(f"--- {service.name} log tail:\n{log_tail(service.process.log_file, 40)}")
                EventsWorker.drain_all()
                APILogWorker.drain_all()
    finally:
        patch.undo()


def rows(url: str, query: str) -> list[tuple[Any, ...]]:
    """The rows of one SQL query against a database of the stack."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(query))]
    finally:
        engine.dispose()


def test_the_loop_closes_and_the_new_champion_is_promoted(ran: Ran) -> None:
    summary = ran.summary
    assert summary.loop_completed, summary
    assert [(g["version"], g["decision"]) for g in summary.gate_decisions] == [("2", "promoted")]
    assert summary.drift_checks and summary.drift_checks[-1]["drift_detected"]


def test_flow_runs_are_in_postgres_and_ran_on_the_worker_pool(ran: Ran) -> None:
    runs = rows(
        ran.form.databases["prefect"],
        """
        SELECT d.name, fr.state_type::text, wp.name, fr.parameters ->> 'reason'
        FROM flow_run fr
        JOIN deployment d ON d.id = fr.deployment_id
        JOIN work_queue wq ON wq.id = fr.work_queue_id
        JOIN work_pool wp ON wp.id = wq.work_pool_id
        WHERE fr.state_type IN ('COMPLETED', 'FAILED', 'CRASHED', 'CANCELLED')
        """,
    )
    by_deployment: dict[str, list[tuple[Any, ...]]] = {}
    for run in runs:
        by_deployment.setdefault(run[0], []).append(run)
    # Each completed ETL flow run (the deployment's and the retrain's refresh subflows) triggers
    # a monthly-analysis run; how many have ended by now varies.
    analyses = by_deployment.pop("monthly-analysis", [])
    ((etl_runs,),) = rows(
        ran.form.databases["prefect"],
        """
        SELECT count(*) FROM flow_run fr JOIN flow f ON f.id = fr.flow_id
        WHERE f.name = 'monthly-etl' AND fr.state_type = 'COMPLETED'
        """,
    )
    assert 1 <= len(analyses) <= etl_runs, analyses
    assert {name: len(found) for name, found in by_deployment.items()} == {
        "monthly-etl": len(ran.plan.old_months),
        "train": 1,
        "drift-monitor": 1,
        "retrain": 1,
    }, runs
    assert {(state, pool) for _, state, pool, _ in runs} == {("COMPLETED", POOL)}
    # The retrain was started by the drift trigger, not by the test.
    (retrain,) = by_deployment["retrain"]
    assert retrain[3] == "drift"


def test_versions_and_aliases_are_in_mlflows_postgres_store(ran: Ran) -> None:
    url = ran.form.databases["mlflow"]
    name = ran.form.settings.model_name
    versions = rows(url, f"SELECT version FROM model_versions WHERE name = '{name}'")
    assert sorted(int(v) for (v,) in versions) == [1, 2]
    aliases = dict(
        rows(url, f"SELECT alias, version FROM registered_model_aliases WHERE name = '{name}'")
    )
    assert aliases["champion"] == 2 and aliases["previous-champion"] == 1
    # Experiments store artifacts through the server (mlflow-artifacts:/), not on a client's disk.
    locations = {loc for (loc,) in rows(url, "SELECT artifact_location FROM experiments")}
    assert any(loc.startswith("mlflow-artifacts:") for loc in locations), locations


def test_lake_partitions_and_model_artifacts_are_s3_objects(ran: Ran) -> None:
    s3 = ran.form.s3()

    def keys(bucket: str, prefix: str) -> list[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    months = ran.plan.old_months + ran.plan.new_months
    clean = set(keys(LAKE_BUCKET, "lake/clean/crimes/"))
    # The first ETL wrote the older months, the retrain ingested the newer ones.
    assert clean == {f"lake/clean/crimes/month={m}/data.parquet" for m in months}
    assert set(keys(LAKE_BUCKET, "lake/features/")) == {
        f"lake/features/month={m}/data.parquet" for m in months
    }
    assert not [k for k in keys(LAKE_BUCKET, "lake/") if "/_tmp/" in k]  # no half-written object
    models = [k for k in keys(MLFLOW_BUCKET, "artifacts/") if k.endswith("/MLmodel")]
    assert len(models) >= 2, models  # one per registered version
    # Nothing of the embedded form was created on local disk.
    home = ran.form.settings.home
    for embedded in ("lake", "mlflow.db", "predictions.db", "mlartifacts", "prefect/prefect.db"):
        assert not (home / embedded).exists(), embedded


def test_every_prediction_is_in_the_postgres_log(ran: Ran) -> None:
    ((count,),) = rows(ran.form.databases["log"], "SELECT count(*) FROM predictions")
    assert count == NORMAL_TRAFFIC_ROWS + DRIFT_TRAFFIC_ROWS
    versions = dict(
        rows(
            ran.form.databases["log"], "SELECT model_version, count(*) FROM predictions GROUP BY 1"
        )
    )
    assert set(versions) == {"1"}  # the traffic came before the promotion


def test_the_lake_keys_live_in_prefect_not_in_the_worker_or_the_api(ran: Ran) -> None:
    secret = S3_KEYS["aws_secret_access_key"]
    for name in ("prefect-worker", "api"):
        env = environment_of(ran.service(name).pid)
        assert env["CRIMEFLOW_S3_BUCKET_BLOCK"] == "crimeflow-lake"
        assert not [key for key, value in env.items() if secret in value], name
    # The MLflow server is the one process that holds the artifact bucket's keys.
    assert environment_of(ran.service("mlflow-ui").pid)["AWS_SECRET_ACCESS_KEY"] == secret


def test_both_api_workers_serve_the_new_champion(ran: Ran) -> None:
    api = ran.form.stack.urls["api"]
    log = ran.service("api").log_file
    seen = len(access_lines(log))

    async def burst() -> list[str]:
        # Fresh connections, so that the kernel hands them to both workers.
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=api, limits=limits, trust_env=False) as client:
            answers = await asyncio.gather(*(client.get("/model") for _ in range(64)))
        return [answer.json()["version"] for answer in answers]

    assert set(asyncio.run(burst())) == {"2"}
    pids = {line["pid"] for line in access_lines(log)[seen:] if line.get("route") == "/model"}
    assert len(pids) == 2, pids
