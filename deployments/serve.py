"""The embedded default: serve every crimeflow deployment from one process (`prefect serve`).

`python -m deployments.serve` registers the deployments of deployments/declarations.py
(schedules, the drift trigger, the retrain concurrency limit) with the Prefect server in
PREFECT_API_URL and runs their flow runs in subprocesses of this process. prefect.yaml, rendered
from the same declarations, registers them for `prefect deploy --all` with a work pool.
"""

from __future__ import annotations

import importlib
from datetime import timedelta
from typing import Any

from prefect import Flow, serve
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.events.schemas.automations import Posture

from crimeflow.contract.settings import Settings, get_settings
from deployments.alerts import ensure_alerts
from deployments.declarations import (
    ConcurrencyLimit,
    Deployment,
    EventTrigger,
    Schedule,
    declare,
)


def load_flow(entrypoint: str) -> Flow[Any, Any]:
    """The flow behind `flows/etl.py:monthly_etl`, imported as the module `flows.etl`."""
    path, function = entrypoint.split(":")
    # By module name, not by file path: the flow is the same object the rest of the code imports.
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    flow = getattr(module, function)
    if not isinstance(flow, Flow):
        raise TypeError(f"{entrypoint} is not a Prefect flow")
    return flow


def schedule_of(schedule: Schedule) -> DeploymentScheduleCreate:
    """A declared cron as the schedule Prefect creates."""
    cron = CronSchedule(cron=schedule.cron, timezone=schedule.timezone)
    return DeploymentScheduleCreate(schedule=cron, active=schedule.active)


def trigger_of(trigger: EventTrigger) -> DeploymentEventTrigger:
    """A declared event trigger as the deployment trigger Prefect turns into an automation."""
    return DeploymentEventTrigger(
        name=trigger.name,
        description=trigger.description,
        expect={trigger.event},
        match={"prefect.resource.id": trigger.resource_id},
        match_related=[dict(labels) for labels in trigger.match_related] or {},
        parameters={parameter.name: parameter.value for parameter in trigger.parameters},
        enabled=trigger.enabled,
        posture=Posture(trigger.posture),
        threshold=trigger.threshold,
        within=timedelta(seconds=trigger.within_seconds),
    )


def concurrency_of(limit: ConcurrencyLimit) -> ConcurrencyLimitConfig:
    """A declared concurrency limit as Prefect's config (CANCEL_NEW: a burst becomes one run)."""
    return ConcurrencyLimitConfig(
        limit=limit.limit, collision_strategy=ConcurrencyLimitStrategy(limit.collision_strategy)
    )


def runner_deployment(declaration: Deployment) -> RunnerDeployment:
    """One declared deployment as a deployment this process serves."""
    return load_flow(declaration.entrypoint).to_deployment(
        name=declaration.name,
        description=declaration.description,
        tags=list(declaration.tags),
        parameters=declaration.parameter_values(),
        schedules=[schedule_of(schedule) for schedule in declaration.schedules] or None,
        triggers=[trigger_of(trigger) for trigger in declaration.triggers] or None,
        concurrency_limit=concurrency_of(declaration.concurrency)
        if declaration.concurrency
        else None,
    )


def build_deployments(settings: Settings) -> list[RunnerDeployment]:
    """The six deployments, for this model name and drift window."""
    declarations = declare(settings.model_name, settings.drift.window_days)
    return [runner_deployment(declaration) for declaration in declarations]


def main() -> None:
    """Register the deployments and serve their runs until interrupted."""
    settings = get_settings()
    deployments = build_deployments(settings)
    # Alert automations (no-op unless CRIMEFLOW_ALERT_WEBHOOK_URL is set).
    ensure_alerts(settings)
    serve(*deployments, limit=4)


if __name__ == "__main__":
    main()
