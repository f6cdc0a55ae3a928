"""The embedded default: serve every crimeflow deployment from one process (`prefect serve`).

`python -m deployments.serve` registers the deployments (schedules, the drift trigger, the
retrain concurrency limit) with the Prefect server in PREFECT_API_URL and runs their flow runs
in subprocesses of this process. prefect.yaml declares the same deployments for
`prefect deploy --all` with a work pool; a test keeps the two in agreement.
"""

from __future__ import annotations

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger

from crimeflow.contract.events import DRIFT_DETECTED, model_resource
from crimeflow.contract.settings import Settings, get_settings
from deployments.alerts import ensure_alerts

CHICAGO = "America/Chicago"
# The 2nd of each month at 04:00 Chicago time: the previous month is complete by then.
ETL_CRON = "0 4 2 * *"
# Daily at 06:00, after the night's traffic.
DRIFT_CRON = "0 6 * * *"
TAGS = ["crimeflow"]


def retrain_trigger(settings: Settings) -> DeploymentEventTrigger:
    """Run `retrain` on every `crimeflow.drift.detected` for this model, with the report id."""
    return DeploymentEventTrigger(
        name="retrain-on-drift",
        description="A drift check found drift: retrain, gate, promote or reject.",
        expect={DRIFT_DETECTED},
        match={"prefect.resource.id": model_resource(settings.model_name)["prefect.resource.id"]},
        parameters={"reason": "drift", "drift_report_id": "{{ event.payload.report_id }}"},
        enabled=True,
    )


def retrain_concurrency() -> ConcurrencyLimitConfig:
    """One retrain at a time; a run that would wait for another is cancelled (a burst → one)."""
    return ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)


def build_deployments(settings: Settings) -> list[RunnerDeployment]:
    """The five deployments: monthly-etl, train, drift-monitor, retrain, rollback."""
    from flows.etl import monthly_etl
    from flows.monitor import drift_monitor
    from flows.retrain import retrain, rollback
    from flows.train import train

    return [
        monthly_etl.to_deployment(
            name="monthly-etl",
            schedules=[CronSchedule(cron=ETL_CRON, timezone=CHICAGO)],
            parameters={"month": None},
            description="Pull last month's crimes (and late arrest updates) into the lake.",
            tags=[*TAGS, "etl"],
        ),
        train.to_deployment(
            name="train",
            description="Train a challenger on the lake's window and register it in MLflow.",
            tags=[*TAGS, "training"],
        ),
        drift_monitor.to_deployment(
            name="drift-monitor",
            schedules=[CronSchedule(cron=DRIFT_CRON, timezone=CHICAGO)],
            parameters={"window_days": settings.drift.window_days},
            description="Compare served traffic with the champion's reference; emit drift events.",
            tags=[*TAGS, "monitoring"],
        ),
        retrain.to_deployment(
            name="retrain",
            triggers=[retrain_trigger(settings)],
            concurrency_limit=retrain_concurrency(),
            description="Refresh the lake, train a challenger, gate it, promote or reject it.",
            tags=[*TAGS, "training"],
        ),
        rollback.to_deployment(
            name="rollback",
            description="Move the champion back to the previous champion.",
            tags=[*TAGS, "training"],
        ),
    ]


def main() -> None:
    """Register the deployments and serve their runs until interrupted."""
    settings = get_settings()
    deployments = build_deployments(settings)
    # Alert automations (no-op unless CRIMEFLOW_ALERT_WEBHOOK_URL is set).
    ensure_alerts(settings)
    serve(*deployments, limit=4)


if __name__ == "__main__":
    main()
