"""The deployment declarations against the flows they name, and what each deployment promises."""

from __future__ import annotations

import importlib
import inspect
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import pytest

from crimeflow.contract.events import DRIFT_DETECTED, PERFORMANCE_DEGRADED
from crimeflow.contract.schema import CHICAGO_TZ
from deployments.declarations import DEPLOYMENT_FILES, Deployment, declare

NAMES = ["monthly-etl", "monthly-analysis", "train", "drift-monitor", "retrain", "rollback"]


def load_flow(entrypoint: str) -> Any:
    """The flow object behind `path/to/module.py:function`."""
    path, function = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, function)


@pytest.fixture(scope="module")
def declared() -> dict[str, Deployment]:
    return {deployment.name: deployment for deployment in declare()}


def test_the_six_deployments(declared):
    assert list(declared) == NAMES
    for deployment in declared.values():
        assert deployment.description.strip()
        assert "crimeflow" in deployment.tags
        assert deployment.entrypoint.startswith("flows/")


@pytest.mark.parametrize("name", NAMES)
def test_entrypoint_imports_and_parameters_match_the_signature(declared, name):
    deployment = declared[name]
    flow = load_flow(deployment.entrypoint)
    assert flow.name == name
    signature = inspect.signature(flow.fn)
    parameters = deployment.parameter_values()
    assert len(parameters) == len(deployment.parameters), "a parameter declared twice"
    assert set(parameters) <= set(signature.parameters)
    # The files spell out the flow's own defaults, so a run by hand and a scheduled run agree.
    for key, value in parameters.items():
        assert value == signature.parameters[key].default, key


def test_schedules_are_the_chicago_crons(declared):
    def crons(name: str) -> list[tuple[str, str, bool]]:
        return [(s.cron, s.timezone, s.active) for s in declared[name].schedules]

    assert CHICAGO_TZ == "America/Chicago"
    assert crons("monthly-etl") == [("0 4 2 * *", "America/Chicago", True)]
    assert crons("drift-monitor") == [("0 6 * * *", "America/Chicago", True)]
    for name in ("train", "retrain", "rollback"):
        assert crons(name) == []


def test_retrain_trigger_and_concurrency(declared):
    retrain = declared["retrain"]
    assert retrain.concurrency is not None
    assert (retrain.concurrency.limit, retrain.concurrency.collision_strategy) == (1, "CANCEL_NEW")
    by_event = {t.event: t for t in retrain.triggers}
    trigger = by_event[DRIFT_DETECTED]
    assert trigger.enabled is True
    assert trigger.event == DRIFT_DETECTED == "crimeflow.drift.detected"
    assert trigger.resource_id == "crimeflow.model.chicago-arrest"
    assert {p.name: p.value for p in trigger.parameters} == {
        "reason": "drift",
        "drift_report_id": "{{ event.payload.report_id }}",
    }
    # The performance trigger: same resource, reason `performance`; it shares the deployment's
    # concurrency limit (above) and the flow's debounce with drift.
    performance = by_event[PERFORMANCE_DEGRADED]
    assert performance.event == "crimeflow.performance.degraded"
    assert performance.enabled is True
    assert performance.resource_id == trigger.resource_id
    assert {p.name: p.value for p in performance.parameters} == {
        "reason": "performance",
        "drift_report_id": "{{ event.payload.report_id }}",
    }
    # Only retrain and the analyst report react to events; only retrain is limited.
    others = [d for d in declared.values() if d.name not in ("retrain", "monthly-analysis")]
    assert all(not d.triggers and d.concurrency is None for d in others)


def test_analysis_runs_when_a_monthly_etl_run_completes(declared):
    analysis = declared["monthly-analysis"]
    (trigger,) = analysis.triggers
    assert trigger.event == "prefect.flow-run.Completed"
    assert trigger.resource_id == "prefect.flow-run.*"
    assert [dict(labels) for labels in trigger.match_related] == [
        {"prefect.resource.role": "flow", "prefect.resource.name": "monthly-etl"}
    ]
    assert {p.name: p.value for p in trigger.parameters} == {"month": None}
    assert not analysis.schedules and analysis.concurrency is None


def test_retrain_follows_a_completed_monthly_etl_with_reason_schedule(declared):
    trigger = {t.name: t for t in declared["retrain"].triggers}["retrain-after-etl"]
    assert trigger.enabled is True
    assert trigger.event == "prefect.flow-run.Completed"
    assert {p.name: p.value for p in trigger.parameters} == {
        "reason": "schedule",
        "until": "{{ flow_run.parameters.month }}",
    }
    # The related resources name the ETL's flow and deployment, as declared.
    etl = declared["monthly-etl"]
    assert load_flow(etl.entrypoint).name == etl.name == "monthly-etl"
    assert [dict(r) for r in trigger.match_related] == [
        {"prefect.resource.role": "flow", "prefect.resource.name": "monthly-etl"},
        {"prefect.resource.role": "deployment", "prefect.resource.name": "monthly-etl"},
        {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.auto-scheduled"},
    ]


def test_settings_reach_the_trigger_and_the_drift_window():
    declared = {d.name: d for d in declare(model_name="other-model", drift_window_days=3)}
    triggers = declared["retrain"].triggers
    model_triggers = {t.resource_id for t in triggers if t.event != "prefect.flow-run.Completed"}
    assert model_triggers == {"crimeflow.model.other-model"}
    assert declared["drift-monitor"].parameter_values()["window_days"] == 3
    assert "other-model" in declared["train"].description


def test_the_files_differ_only_in_code_source_and_pool():
    process, image, s3 = DEPLOYMENT_FILES
    assert (process.path, image.path) == ("prefect.yaml", "deployments/prefect.image.yaml")
    assert (process.work_pool.name, image.work_pool.name) == (
        "crimeflow-process",
        "crimeflow-docker",
    )
    (build,) = process.build
    assert build.arguments["script"] == "pwd"
    (pull,) = process.pull
    # The checkout's path is what the build step printed at deploy time.
    assert pull.arguments == {"directory": "{{ " + build.arguments["id"] + ".stdout }}"}
    assert image.build == ()
    (pull,) = image.pull
    assert pull.arguments == {"directory": "/app"}
    # The S3 variant: the same pool; the code goes up with push_to_s3 and comes down with
    # pull_from_s3 from where the push put it, both with the lake's credentials block.
    assert s3.path == "deployments/prefect.s3.yaml"
    assert s3.work_pool == process.work_pool
    ((push,), (pull,)) = s3.push, s3.pull
    assert push.function == "prefect_aws.deployments.steps.push_to_s3"
    assert pull.function == "prefect_aws.deployments.steps.pull_from_s3"
    push_id = push.arguments["id"]
    assert pull.arguments["bucket"] == "{{ " + push_id + ".bucket }}"
    assert pull.arguments["folder"] == "{{ " + push_id + ".folder }}"
    assert push.arguments["credentials"] == pull.arguments["credentials"]
    assert "crimeflow-lake-credentials" in push.arguments["credentials"]


def test_prefectignore_keeps_state_secrets_and_the_environment_out_of_s3(tmp_path):
    from prefect.utilities.filesystem import filter_files

    root = Path(__file__).resolve().parents[2]
    patterns = (root / ".prefectignore").read_text().splitlines()
    for name in (
        "flows/etl.py",
        "tasks/etl_steps.py",
        "pyproject.toml",
        ".env",
        ".env.local",
        ".venv/bin/python",
        ".git/HEAD",
        "tests/test_x.py",
        ".crimeflow/lake/x.parquet",
        "api/__pycache__/app.cpython-311.pyc",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    # push_to_s3 uploads the files filter_files lists (a folder's own name may be listed too).
    included = {
        path for path in filter_files(str(tmp_path), patterns) if (tmp_path / path).is_file()
    }
    assert included == {"flows/etl.py", "tasks/etl_steps.py", "pyproject.toml"}


def flow_run_completed(
    flow: str, deployment: str | None, parent_task_run: bool, scheduled: bool = True
) -> Any:
    """A `prefect.flow-run.Completed` event as Prefect's server builds it for such a run
    (`scheduled`: created by the scheduler, which tags the run auto-scheduled)."""
    from prefect.server.events.schemas.events import ReceivedEvent
    from prefect.server.models.events import _as_resource_data, _resource_data_as_related_resources

    def thing(name: str) -> SimpleNamespace:
        return SimpleNamespace(id=uuid4(), name=name, tags=["crimeflow"])

    run = thing("proud-fox")
    if scheduled:
        run.tags = ["auto-scheduled", *run.tags]
    data = _as_resource_data(
        run,
        thing(flow),
        thing(deployment) if deployment else None,
        None,
        None,
        thing(f"{flow}-0") if parent_task_run else None,
    )
    return ReceivedEvent(
        occurred=datetime.now(UTC),
        event="prefect.flow-run.Completed",
        resource={"prefect.resource.id": f"prefect.flow-run.{run.id}"},
        related=_resource_data_as_related_resources(data, excluded_kinds=["flow-run"]),
        id=uuid4(),
    )


def test_only_runs_of_the_etl_deployment_start_a_retrain():
    from prefect.server.events.schemas.automations import EventTrigger as ServerTrigger

    from deployments.declarations import etl_completed_trigger
    from deployments.serve import trigger_of

    served = trigger_of(etl_completed_trigger())
    fields = ("expect", "match", "match_related", "posture", "threshold", "within")
    trigger = ServerTrigger.model_validate(served.model_dump(include=set(fields)))
    # The scheduled ETL (a run of its deployment the scheduler created) starts a retrain ...
    assert trigger.covers(flow_run_completed("monthly-etl", "monthly-etl", False))
    # ... a run of the deployment started by hand (a month-by-month backfill) does not ...
    assert not trigger.covers(flow_run_completed("monthly-etl", "monthly-etl", False, False))
    # ... nor the ETL subflows a retrain runs to refresh the lake (no deployment; a parent
    # task run), the ETL run in-process by `crimeflow etl`, nor a completed retrain itself.
    assert not trigger.covers(flow_run_completed("monthly-etl", None, True))
    assert not trigger.covers(flow_run_completed("monthly-etl", None, False))
    assert not trigger.covers(flow_run_completed("retrain", "retrain", False))
    assert not trigger.covers(flow_run_completed("train", "monthly-etl", False))


def test_prefect_accepts_the_etl_trigger_as_a_loop_free_automation():
    from prefect.server.events.schemas.automations import AutomationCore

    from deployments.declarations import etl_completed_trigger
    from deployments.serve import trigger_of

    served = trigger_of(etl_completed_trigger())
    served.set_deployment_id(uuid4())
    # The server refuses a flow-run trigger that could start its own deployment forever.
    automation = AutomationCore.model_validate(served.as_automation().model_dump(mode="json"))
    assert automation.actions[0].parameters == {
        "reason": "schedule",
        "until": "{{ flow_run.parameters.month }}",
    }
