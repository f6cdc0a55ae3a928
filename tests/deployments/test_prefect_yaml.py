"""prefect.yaml (and its image variant) against the flows and the serve script's deployments."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml

from crimeflow.contract.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = ROOT / "prefect.yaml"
IMAGE_YAML = ROOT / "deployments" / "prefect.image.yaml"
NAMES = ["monthly-etl", "train", "drift-monitor", "retrain", "rollback"]
# What may differ between the checkout and the image variant: where code and runs live.
INFRA_KEYS = {"work_pool", "pull", "build", "push"}


def deployments_of(path: Path) -> dict[str, dict[str, Any]]:
    """The deployments of a prefect.yaml, by name."""
    config = yaml.safe_load(path.read_text())
    return {deployment["name"]: deployment for deployment in config["deployments"]}


def load_flow(entrypoint: str) -> Any:
    """The flow object behind `path/to/module.py:function`."""
    path, function = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, function)


@pytest.fixture(scope="module")
def deployments() -> dict[str, dict[str, Any]]:
    return deployments_of(PREFECT_YAML)


@pytest.fixture(scope="module")
def served() -> dict[str, Any]:
    from deployments.serve import build_deployments

    return {d.name: d for d in build_deployments(Settings(_env_file=None))}


def test_the_five_deployments_on_the_process_pool(deployments):
    assert list(deployments) == NAMES
    for deployment in deployments.values():
        assert deployment["work_pool"]["name"] == "crimeflow-process"
        assert deployment["description"].strip()
        assert "crimeflow" in deployment["tags"]


def test_checkout_pull_step_changes_into_the_recorded_checkout():
    config = yaml.safe_load(PREFECT_YAML.read_text())
    (build,) = config["build"]
    step = build["prefect.deployments.steps.run_shell_script"]
    assert step["script"] == "pwd"
    (pull,) = config["pull"]
    directory = pull["prefect.deployments.steps.set_working_directory"]["directory"]
    assert directory == "{{ " + step["id"] + ".stdout }}"


@pytest.mark.parametrize("name", NAMES)
def test_entrypoint_imports_and_parameters_match_the_signature(deployments, name):
    deployment = deployments[name]
    flow = load_flow(deployment["entrypoint"])
    assert flow.name == name
    signature = inspect.signature(flow.fn)
    assert set(deployment["parameters"]) <= set(signature.parameters)
    # The YAML spells out the flow's own defaults, so a run by hand and a scheduled run agree.
    for key, value in deployment["parameters"].items():
        assert value == signature.parameters[key].default, key


def test_schedules(deployments):
    assert deployments["monthly-etl"]["schedules"] == [
        {"cron": "0 4 2 * *", "timezone": "America/Chicago", "active": True}
    ]
    assert deployments["drift-monitor"]["schedules"] == [
        {"cron": "0 6 * * *", "timezone": "America/Chicago", "active": True}
    ]
    for name in ("train", "retrain", "rollback"):
        assert not deployments[name].get("schedules")


def test_retrain_trigger_and_concurrency(deployments):
    retrain = deployments["retrain"]
    assert retrain["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    (trigger,) = retrain["triggers"]
    assert trigger["enabled"] is True
    assert trigger["expect"] == ["crimeflow.drift.detected"]
    assert trigger["match"] == {"prefect.resource.id": "crimeflow.model.chicago-arrest"}
    assert trigger["parameters"] == {
        "reason": "drift",
        "drift_report_id": "{{ event.payload.report_id }}",
    }


def test_trigger_equals_the_serve_scripts(deployments, served):
    from prefect.events import DeploymentEventTrigger

    # Validated the way `prefect deploy` validates it, then compared field by field.
    from_yaml = DeploymentEventTrigger.model_validate(deployments["retrain"]["triggers"][0])
    (from_serve,) = served["retrain"].triggers
    for field in ("name", "expect", "match", "match_related", "parameters", "posture", "within"):
        assert getattr(from_yaml, field) == getattr(from_serve, field), field
    assert from_yaml.threshold == from_serve.threshold
    assert from_yaml.enabled and from_serve.enabled


def test_deployments_equal_the_serve_scripts(deployments, served):
    assert list(served) == NAMES
    for name, runner in served.items():
        deployment = deployments[name]
        assert runner.entrypoint == deployment["entrypoint"]
        assert runner.tags == deployment["tags"]
        assert [(s.schedule.cron, s.schedule.timezone) for s in runner.schedules or []] == [
            (s["cron"], s["timezone"]) for s in deployment.get("schedules") or []
        ]
        # The serve script passes only non-default parameters; the YAML lists the defaults too.
        assert runner.parameters.items() <= deployment["parameters"].items(), name
        limit = deployment.get("concurrency_limit")
        assert runner.concurrency_limit == (limit and limit["limit"])
        if limit:
            assert (
                runner.concurrency_options.collision_strategy.value == (limit["collision_strategy"])
            )


def test_image_variant_declares_the_same_deployments(deployments):
    image = deployments_of(IMAGE_YAML)
    assert list(image) == NAMES
    for name in NAMES:
        strip = lambda d: {k: v for k, v in d.items() if k not in INFRA_KEYS}  # noqa: E731
        assert strip(image[name]) == strip(deployments[name]), name
    config = yaml.safe_load(IMAGE_YAML.read_text())
    (pull,) = config["pull"]
    assert pull["prefect.deployments.steps.set_working_directory"]["directory"] == "/app"
