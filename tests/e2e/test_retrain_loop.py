"""The loop, for real: drift traffic over HTTP → drift event → triggered retrain → gate → the API.

A real local Prefect server (session fixture), the serve process with every deployment and the
drift trigger (`python -m deployments.serve`), the SODA stand-in with generated months that end
before last month (at the newest month with mature labels, as a lagging source), the API
under uvicorn. The test trains the first champion, sends drifted traffic through HTTP and runs
the drift monitor; from then on it only watches: the trigger must create the retrain run, the
gate must pass, the champion alias must move and the API must serve the new version. Then a
candidate trained on shuffled labels must be rejected, with the champion left where it was. Last,
a run of the monthly-etl deployment must start exactly one retrain (reason `schedule`, `until` the
ETL's month) that goes through the gate.
Assertions read Prefect's API (flow runs, events) and the registry, never log text.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker

from crimeflow.cli.demo import (
    TRAINING_WINDOW_MONTHS,
    DemoPlan,
    flow_runs,
    generated_plan,
    read_events,
    send,
    served_version,
    traffic,
    wait_for,
)
from crimeflow.cli.processes import ServiceProcess, free_port, log_tail
from crimeflow.cli.stack import Stack
from crimeflow.contract.events import DRIFT_DETECTED, MODEL_PROMOTED, MODEL_REJECTED, emit
from crimeflow.contract.months import previous_month
from crimeflow.contract.settings import EtlSettings, Settings, child_environment, get_settings
from crimeflow.standins.soda import StandinServer
from crimeflow.stores.lake import CLEAN_CRIMES, Lake
from crimeflow.stores.registry import CHAMPION, PREVIOUS_CHAMPION

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROWS_PER_MONTH = 3000
LOOP_TIMEOUT_S = 300.0
DEBOUNCE_S = 20

# The stand-in's data ends at the newest month with mature labels (the default rule), so
# before last month: the triggered retrain must stop at the newest month the source has.
MATURITY_DAYS: int = EtlSettings.model_fields["label_maturity_days"].default


@dataclass
class Loop:
    """The running stack of one test module."""

    settings: Settings
    api_url: str
    prefect_api: str
    lake: Lake
    months: list[str]
    serve: ServiceProcess
    plan: DemoPlan


@pytest.fixture(scope="module")
def loop(private_prefect_server, tmp_path_factory) -> Iterator[Loop]:
    """Lake of five months, champion v1, serve process and API running; drifted months pending."""
    home = tmp_path_factory.mktemp("loop") / "home"
    # The demo's data: older months, then newer ones with input and concept drift.
    plan = generated_plan(
        date.today(), old_months=5, rows_per_month=ROWS_PER_MONTH, maturity_days=MATURITY_DAYS
    )
    old = plan.old_months
    with StandinServer(plan.crimes) as soda:
        env = {
            "CRIMEFLOW_HOME": str(home),
            "CRIMEFLOW_SOCRATA_URL": soda.url,
            "CRIMEFLOW_SOCRATA_BACKOFF_S": "0.01",
            "CRIMEFLOW_API_PORT": str(free_port()),
            "CRIMEFLOW_PREFECT_API_URL": private_prefect_server.api_url,
            "CRIMEFLOW_MODEL_POLL_INTERVAL_S": "1",
            "CRIMEFLOW_DRIFT_WINDOW_DAYS": "1",
            "CRIMEFLOW_TRAINING_WINDOW_MONTHS": str(TRAINING_WINDOW_MONTHS),
            # Case two comes a minute after case one; the burst inside case one is what the
            # debounce and the concurrency limit must absorb.
            "CRIMEFLOW_RETRAIN_DEBOUNCE_S": str(DEBOUNCE_S),
            **private_prefect_server.env,
        }
        mp = pytest.MonkeyPatch()
        for name, value in env.items():
            mp.setenv(name, value)
        get_settings.cache_clear()
        settings = get_settings()
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: private_prefect_server.api_url}):
            from flows.etl import monthly_etl
            from flows.train import train

            for month in old:
                monthly_etl(month=month)
            train(until=old[-1], promote_if_none=True)

            # The serve process and the API, as `crimeflow up` starts them, on the test's server.
            with Stack(settings) as stack:
                stack.start_serve()
                api_url = stack.start_api()
                wait_for("the API to load the champion", lambda: served_version(api_url), 60)
                serve = stack.services[0].process
                try:
                    yield Loop(
                        settings,
                        api_url,
                        private_prefect_server.api_url,
                        Lake.from_settings(settings),
                        old + plan.new_months,
                        serve,
                        plan,
                    )
                finally:
                    print("serve log tail:\n" + log_tail(serve.log_file, 80))
                    # Send this process's queued events and logs while their server still
                    # runs: a worker left pointing at a stopped server makes a later drain
                    # (the flow tests' harness) hang.
                    EventsWorker.drain_all()
                    APILogWorker.drain_all()
        mp.undo()
        get_settings.cache_clear()


def champion_version(settings: Settings) -> str:
    """The registry's champion version now."""
    client = MlflowClient(settings.mlflow.tracking_uri)
    return str(client.get_model_version_by_alias(settings.model_name, CHAMPION).version)


def monitor_in_a_second_terminal(loop: Loop) -> dict:
    """`crimeflow monitor --json` as its own process; its result (the run went to the server)."""
    # Prefect's own variables off: the command must find the server from CRIMEFLOW_* alone.
    env = {
        k: v
        for k, v in child_environment({}).items()
        if k not in ("PREFECT_API_URL", "PREFECT_HOME")
    }
    crimeflow = str(Path(sys.executable).with_name("crimeflow"))
    began = time.monotonic()
    done = subprocess.run(
        [crimeflow, "monitor", "--window-days", "1", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=LOOP_TIMEOUT_S,
    )
    print(f"crimeflow monitor (second terminal): {time.monotonic() - began:.1f} s")
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"Prefect: {loop.prefect_api} (CRIMEFLOW_PREFECT_API_URL)" in done.stderr, done.stderr
    return json.loads(done.stdout)


def test_drift_traffic_triggers_a_retrain_that_is_promoted_and_served(loop: Loop) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    assert served_version(loop.api_url) == champion_version(loop.settings) == "1"
    began = datetime.now(UTC) - timedelta(seconds=1)
    drifted = traffic(loop.plan, drifted=True, rows=1200, seed=31)
    assert send(loop.api_url, drifted) == 1200  # every one answered 200 (and logged)

    # The drift check runs as `crimeflow monitor` in a second terminal would: its own process,
    # nothing but the CRIMEFLOW_* settings telling it where the stack's Prefect server is.
    verdict = monitor_in_a_second_terminal(loop)
    assert verdict["drift_detected"], verdict
    with temporary_settings(updates={PREFECT_API_URL: loop.prefect_api}):
        # The command's own drift event, alone, makes the running server's trigger act.
        first = wait_for(
            "the retrain triggered by `crimeflow monitor`", lambda: flow_runs("retrain", began), 60
        )
        assert first[0].parameters["drift_report_id"] == verdict["report_id"]
        # Two more detections right away: a burst must still cause one retrain.
        for _ in range(2):
            emit(DRIFT_DETECTED, loop.settings.model_name, "1", {"report_id": verdict["report_id"]})

        # From here on the test only watches.
        def finished_runs() -> list:
            runs = flow_runs("retrain", began)
            done = [r for r in runs if r.state and r.state.is_final()]
            return runs if runs and len(done) == len(runs) else []

        wait_for("the triggered retrain to finish", finished_runs, LOOP_TIMEOUT_S)
        # Runs of the burst's later events were created within ~3 s of theirs; all final now.
        time.sleep(3)
        runs = wait_for("the triggered retrains to finish", finished_runs, LOOP_TIMEOUT_S)
        worked = [r for r in runs if r.state.name == "Completed"]
        assert len(worked) == 1, [(r.name, r.state.name) for r in runs]
        assert worked[0].parameters["reason"] == "drift"
        assert worked[0].parameters["drift_report_id"] == verdict["report_id"]
        assert {r.state.name for r in runs} <= {"Completed", "Cancelled", "Skipped"}

        wait_for("a promoted event", lambda: read_events(MODEL_PROMOTED, began), 30)
        assert champion_version(loop.settings) == "2"
        client = MlflowClient(loop.settings.mlflow.tracking_uri)
        previous = client.get_model_version_by_alias(loop.settings.model_name, PREVIOUS_CHAMPION)
        assert str(previous.version) == "1"
        assert client.get_model_version(loop.settings.model_name, "2").tags["gate"] == "passed"
        wait_for("the API to serve v2", lambda: served_version(loop.api_url) == "2", 30)
        ingested = Lake.from_settings(loop.settings).months(CLEAN_CRIMES)
        assert ingested[-3:] == loop.months[-3:]  # the retrain ingested the new months
        # The source ends before last month: the retrain stopped at its newest month (no empty
        # months after it) and said so.
        newest = loop.plan.new_months[-1]
        assert ingested[-1] == newest < previous_month(date.today())
        assert f"# Retrain until {newest}" in retrain_until_artifact(worked[0].id)
        assert "the newest month the source has in full" in retrain_until_artifact(worked[0].id)


def retrain_until_artifact(flow_run_id: Any) -> str:
    """The `retrain-until` markdown a retrain run published."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["retrain-until"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            )
        )
    return str(artifact.data)


def test_a_candidate_trained_on_shuffled_labels_is_rejected(loop: Loop) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    before = champion_version(loop.settings)
    # Shuffle the labels of every month the next candidate learns from; the staging month stays.
    rng = np.random.default_rng(0)
    for month in loop.months[:-1]:
        frame = loop.lake.read_months(CLEAN_CRIMES, [month])
        frame["arrest"] = rng.permutation(frame["arrest"].to_numpy())
        loop.lake.write(CLEAN_CRIMES, frame, month)
    time.sleep(DEBOUNCE_S + 1)  # past the debounce period of the first case
    began = datetime.now(UTC) - timedelta(seconds=1)
    with temporary_settings(updates={PREFECT_API_URL: loop.prefect_api}):
        emit(DRIFT_DETECTED, loop.settings.model_name, before, {"report_id": "manual-drift"})
        run = wait_for(
            "the rejected retrain",
            lambda: [r for r in flow_runs("retrain", began) if r.state and r.state.is_final()],
            LOOP_TIMEOUT_S,
        )[0]
        assert run.state.name == "Completed", run.state
        rejected = wait_for("a rejected event", lambda: read_events(MODEL_REJECTED, began), 30)
    payload = rejected[0].payload
    assert "floor" in payload["reasons"] or "vs_champion" in payload["reasons"], payload
    assert champion_version(loop.settings) == before
    assert served_version(loop.api_url) == before
    tags = (
        MlflowClient(loop.settings.mlflow.tracking_uri)
        .get_model_version(loop.settings.model_name, payload["version"])
        .tags
    )
    assert tags["gate"] == "failed"
    print(json.dumps(payload, indent=2))


def test_a_completed_monthly_etl_starts_one_scheduled_retrain_through_the_gate(loop: Loop) -> None:
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    month = loop.months[-1]
    began = datetime.now(UTC) - timedelta(seconds=1)
    with temporary_settings(updates={PREFECT_API_URL: loop.prefect_api}):
        # The ETL as its schedule runs it: a run of the monthly-etl deployment, tagged
        # auto-scheduled as Prefect's scheduler tags the runs it creates, here for one month.
        # Nothing else is sent: its Completed state must start the retrain.
        etl = run_deployment(
            "monthly-etl/monthly-etl",
            parameters={"month": month},
            tags=["auto-scheduled"],
            timeout=LOOP_TIMEOUT_S,
        )
        assert etl.state.name == "Completed", etl.state

        def finished_runs() -> list:
            runs = flow_runs("retrain", began)
            return runs if runs and all(r.state and r.state.is_final() for r in runs) else []

        began_waiting = time.monotonic()
        runs = wait_for("the retrain after the ETL", finished_runs, LOOP_TIMEOUT_S)
        print(f"retrain after the ETL: {time.monotonic() - began_waiting:.1f} s")
        time.sleep(3)  # a second trigger firing (e.g. from an ETL subflow) would show by now
        runs = flow_runs("retrain", began)
        decided = wait_for(
            "the gate's event",
            lambda: read_events(MODEL_PROMOTED, began) + read_events(MODEL_REJECTED, began),
            30,
        )
    assert len(runs) == 1, [(r.name, r.parameters) for r in runs]
    (run,) = runs
    assert run.state.name == "Completed", run.state
    assert run.parameters["reason"] == "schedule"
    assert run.parameters["until"] == month  # the ETL run's month, templated by the trigger
    # The candidate went through the gate, which recorded why it ran.
    assert decided[0].payload["reason"] == "schedule"
    version = decided[0].payload["version"]
    tags = (
        MlflowClient(loop.settings.mlflow.tracking_uri)
        .get_model_version(loop.settings.model_name, version)
        .tags
    )
    assert tags["gate.trigger"] == "schedule"
    assert tags["gate"] in ("passed", "failed")
    assert tags["training_months"].endswith(month)
