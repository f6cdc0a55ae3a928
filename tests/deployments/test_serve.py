"""The serve script's deployments: built from the declarations, equal to prefect.yaml's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from crimeflow.contract.settings import Settings
from deployments.declarations import declare
from deployments.serve import build_deployments, load_flow

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["monthly-etl", "monthly-analysis", "train", "drift-monitor", "retrain", "rollback"]


@pytest.fixture(scope="module")
def served() -> dict[str, Any]:
    return {d.name: d for d in build_deployments(Settings(_env_file=None))}


@pytest.fixture(scope="module")
def deployments() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return {deployment["name"]: deployment for deployment in config["deployments"]}


def test_served_deployments_are_the_declared_ones(served):
    assert list(served) == NAMES
    for declaration in declare():
        runner = served[declaration.name]
        # Prefect derives the entrypoint from the flow's file: the declared string names it.
        assert runner.entrypoint == declaration.entrypoint
        assert runner.description == declaration.description
        assert runner.tags == list(declaration.tags)
        assert runner.parameters == declaration.parameter_values()
        assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in runner.schedules] == [
            (s.cron, s.timezone, s.active) for s in declaration.schedules
        ]


def test_served_deployments_equal_the_yaml(served, deployments):
    for name, runner in served.items():
        deployment = deployments[name]
        assert runner.entrypoint == deployment["entrypoint"]
        assert runner.tags == deployment["tags"]
        assert runner.parameters == deployment["parameters"]
        assert [(s.schedule.cron, s.schedule.timezone) for s in runner.schedules or []] == [
            (s["cron"], s["timezone"]) for s in deployment.get("schedules") or []
        ]
        limit = deployment.get("concurrency_limit")
        assert runner.concurrency_limit == (limit and limit["limit"])
        if limit:
            strategy = runner.concurrency_options.collision_strategy.value
            assert strategy == limit["collision_strategy"] == "CANCEL_NEW"


def test_trigger_equals_the_yamls(served, deployments):
    from prefect.events import DeploymentEventTrigger

    # Validated the way `prefect deploy` validates it, then compared field by field.
    in_yaml = deployments["retrain"]["triggers"]
    served_triggers = served["retrain"].triggers
    assert len(in_yaml) == len(served_triggers) == 3
    for raw, from_serve in zip(in_yaml, served_triggers, strict=True):
        from_yaml = DeploymentEventTrigger.model_validate(raw)
        fields = ("name", "description", "expect", "match", "match_related", "parameters")
        for field in (*fields, "posture", "within", "threshold", "enabled"):
            assert getattr(from_yaml, field) == getattr(from_serve, field), field
    by_event = {e: t for t in served_triggers for e in t.expect}
    assert set(by_event) == {
        "crimeflow.drift.detected",
        "crimeflow.performance.degraded",
        "prefect.flow-run.Completed",
    }
    for event in ("crimeflow.drift.detected", "crimeflow.performance.degraded"):
        assert by_event[event].match.model_dump() == {
            "prefect.resource.id": "crimeflow.model.chicago-arrest"
        }


def test_settings_reach_the_served_trigger_and_drift_window():
    settings = Settings(_env_file=None, model_name="other-model", drift_window_days=3)
    served = {d.name: d for d in build_deployments(settings)}
    trigger = {t.name: t for t in served["retrain"].triggers}["retrain-on-drift"]
    assert trigger.match.model_dump() == {"prefect.resource.id": "crimeflow.model.other-model"}
    assert served["drift-monitor"].parameters["window_days"] == 3


def test_load_flow_refuses_what_is_not_a_flow():
    assert load_flow("flows/retrain.py:rollback").name == "rollback"
    with pytest.raises(TypeError, match="not a Prefect flow"):
        load_flow("deployments/declarations.py:declare")


def test_analysis_trigger_equals_the_yamls(served, deployments):
    from prefect.events import DeploymentEventTrigger

    yaml_trigger = deployments["monthly-analysis"]["triggers"][0]
    from_yaml = DeploymentEventTrigger.model_validate(yaml_trigger)
    (from_serve,) = served["monthly-analysis"].triggers
    fields = ("name", "description", "expect", "match", "match_related", "parameters")
    for field in (*fields, "posture", "within", "threshold", "enabled"):
        assert getattr(from_yaml, field) == getattr(from_serve, field), field
    assert from_serve.expect == {"prefect.flow-run.Completed"}
    related = from_serve.match_related
    related = related[0] if isinstance(related, list) else related
    assert related.model_dump() == {
        "prefect.resource.role": "flow",
        "prefect.resource.name": "monthly-etl",
    }
