"""`prefect deploy --all` from the repository root against a real local Prefect server.

The CLI the way a user runs it (a subprocess, PREFECT_API_URL from the environment, no prompts),
then the server's view through the Prefect client: the six deployments on the process pool,
their schedules, the retrain deployment's concurrency limit and its drift trigger as an
automation. Finally a process worker started outside the checkout runs the rollback deployment,
which proves the pull step changes into the checkout (the static checks of the declarations
against the flows, and of prefect.yaml against the declarations, are in tests/deployments/).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crimeflow.cli.processes import start, stop
from crimeflow.contract.settings import child_environment
from tests.e2e.conftest import PrefectServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
POOL = "crimeflow-process"
NAMES = {
    "monthly-etl": "monthly-etl",
    "monthly-analysis": "monthly-analysis",
    "train": "train",
    "drift-monitor": "drift-monitor",
    "retrain": "retrain",
    "rollback": "rollback",
}
DEPLOY_TIMEOUT_S = 240.0
RUN_TIMEOUT_S = 120.0


def prefect(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the `prefect` CLI of this interpreter's environment; fail with its output."""
    command = [str(Path(sys.executable).with_name("prefect")), *args]
    result = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=DEPLOY_TIMEOUT_S
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def deploy_env(prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The environment of a user shell pointed at the test server (state in a temp home)."""
    home = tmp_path_factory.mktemp("deploy-home")
    return child_environment(
        {**prefect_server.env, "CRIMEFLOW_HOME": str(home), "PREFECT_CLI_WRAP_LINES": "false"}
    )


@pytest.fixture(scope="module")
def deployed(deploy_env: dict[str, str]) -> Iterator[str]:
    """`prefect work-pool create` + `prefect --no-prompt deploy --all`; the deploy output."""
    prefect(["work-pool", "create", POOL, "--type", "process", "--overwrite"], deploy_env, ROOT)
    result = prefect(["--no-prompt", "deploy", "--all"], deploy_env, ROOT)
    yield result.stdout


@pytest.fixture
def client(prefect_api: str) -> Iterator[Any]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        yield client


def read(client: Any, flow_name: str, name: str) -> Any:
    """The deployment `flow_name/name` as the server stores it."""
    return client.read_deployment_by_name(f"{flow_name}/{name}")


def test_deploy_creates_the_six_deployments_on_the_pool(deployed, client):
    for name, flow_name in NAMES.items():
        deployment = read(client, flow_name, name)
        assert deployment.work_pool_name == POOL
        assert deployment.entrypoint.startswith("flows/")
        assert "crimeflow" in deployment.tags
        # The checkout recorded at deploy time is where every run starts.
        assert deployment.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
        ]
    assert read(client, "monthly-etl", "monthly-etl").parameters == {"month": None}
    assert read(client, "retrain", "retrain").parameters["reason"] == "manual"


def test_schedules_are_the_chicago_crons(deployed, client):
    def crons(name: str) -> list[tuple[str, str, bool]]:
        deployment = read(client, NAMES[name], name)
        return [(s.schedule.cron, s.schedule.timezone, s.active) for s in deployment.schedules]

    assert crons("monthly-etl") == [("0 4 2 * *", "America/Chicago", True)]
    assert crons("drift-monitor") == [("0 6 * * *", "America/Chicago", True)]
    assert crons("train") == crons("retrain") == crons("rollback") == []


SCHEDULER_TIMEOUT_S = 30.0


def test_the_server_schedules_runs_of_the_cron_deployments(deployed, client):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    ids = [read(client, NAMES[name], name).id for name in ("monthly-etl", "drift-monitor")]
    # The scheduler picks up recently changed deployments every few seconds.
    deadline = time.monotonic() + SCHEDULER_TIMEOUT_S
    scheduled: set[Any] = set()
    while time.monotonic() < deadline and scheduled != set(ids):
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=ids))
        )
        scheduled = {run.deployment_id for run in runs if run.state and run.state.is_scheduled()}
        time.sleep(0.5)
    assert scheduled == set(ids)


def test_retrain_has_concurrency_one_cancel_new(deployed, client):
    retrain = read(client, "retrain", "retrain")
    assert retrain.global_concurrency_limit is not None
    assert retrain.global_concurrency_limit.limit == 1
    assert retrain.concurrency_options.collision_strategy.value == "CANCEL_NEW"


def test_drift_trigger_is_an_automation_of_the_retrain_deployment(deployed, client):
    retrain = read(client, "retrain", "retrain")
    # The server does not return owner_resource; it finds the automations a deployment owns.
    owned = client.read_resource_related_automations(f"prefect.deployment.{retrain.id}")
    by_name = {a.name: a for a in owned}
    assert sorted(by_name) == [
        "retrain-after-etl",
        "retrain-on-drift",
        "retrain-on-performance",
    ], owned
    performance = by_name["retrain-on-performance"]
    assert performance.trigger.expect == {"crimeflow.performance.degraded"}
    assert performance.actions[0].parameters["reason"] == "performance"
    after_etl = by_name["retrain-after-etl"]
    assert after_etl.trigger.expect == {"prefect.flow-run.Completed"}
    assert [r.model_dump() for r in after_etl.trigger.match_related] == [
        {"prefect.resource.role": "flow", "prefect.resource.name": "monthly-etl"},
        {"prefect.resource.role": "deployment", "prefect.resource.name": "monthly-etl"},
        {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.auto-scheduled"},
    ]
    assert after_etl.actions[0].deployment_id == retrain.id
    assert after_etl.actions[0].parameters["reason"] == "schedule"
    automation = by_name["retrain-on-drift"]
    assert automation.enabled
    assert automation.trigger.expect == {"crimeflow.drift.detected"}
    assert automation.trigger.match.model_dump() == {
        "prefect.resource.id": "crimeflow.model.chicago-arrest"
    }
    (action,) = automation.actions
    assert action.type == "run-deployment"
    assert action.deployment_id == retrain.id
    assert action.parameters == {
        "reason": "drift",
        "drift_report_id": "{{ event.payload.report_id }}",
    }


def test_etl_completion_trigger_is_an_automation_of_the_analysis_deployment(deployed, client):
    analysis = read(client, "monthly-analysis", "monthly-analysis")
    (automation,) = client.read_resource_related_automations(f"prefect.deployment.{analysis.id}")
    assert automation.name == "analysis-after-etl" and automation.enabled
    assert automation.trigger.expect == {"prefect.flow-run.Completed"}
    related = automation.trigger.match_related
    related = related[0] if isinstance(related, list) else related
    assert related.model_dump() == {
        "prefect.resource.role": "flow",
        "prefect.resource.name": "monthly-etl",
    }
    (action,) = automation.actions
    assert action.deployment_id == analysis.id and action.parameters == {"month": None}


def test_redeploy_keeps_each_trigger_once(deployed, deploy_env, client):
    # `prefect deploy` replaces the deployment's automations instead of adding more.
    prefect(["--no-prompt", "deploy", "--name", "retrain"], deploy_env, ROOT)
    retrain = read(client, "retrain", "retrain")
    owned = client.read_resource_related_automations(f"prefect.deployment.{retrain.id}")
    assert sorted(a.name for a in owned) == [
        "retrain-after-etl",
        "retrain-on-drift",
        "retrain-on-performance",
    ]


def run_on_a_worker(
    client: Any, run_id: Any, env: dict[str, str], folder: Path, log_file: Path
) -> tuple[Any, str]:
    """Start a process worker in `folder`, wait until flow run `run_id` ends; (state, log)."""
    worker = start(
        "prefect-worker",
        [str(Path(sys.executable).with_name("prefect")), "worker", "start", "--pool", POOL],
        env,
        log_file,
        cwd=folder,
    )
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        state = client.read_flow_run(run_id).state
        while not (state and state.is_final()) and time.monotonic() < deadline:
            time.sleep(0.5)
            state = client.read_flow_run(run_id).state
    finally:
        stop(worker)
    log = log_file.read_text()
    assert state is not None and state.is_final(), f"run still {state}; worker log:\n{log}"
    return state, log


def test_a_worker_outside_the_checkout_runs_a_deployment(deployed, deploy_env, client, tmp_path):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    rollback = read(client, "rollback", "rollback")
    run = client.create_flow_run_from_deployment(rollback.id, parameters={"reason": "e2e"})
    # Started in an empty folder: only the pull step can make flows/retrain.py importable.
    state, log = run_on_a_worker(client, run.id, deploy_env, tmp_path, tmp_path / "worker.log")
    # An empty registry has nothing to roll back to: the flow's own error, so its code ran.
    assert state.is_failed(), state
    assert "previous-champion" in log, log
    (found,) = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
    )
    assert found.deployment_id == rollback.id
