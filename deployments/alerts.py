"""Alert automations: a webhook is told when the staging gate rejects a model or a flow run fails.

`ensure_alerts(settings)` saves one notification block (`Custom Webhook`, named
`crimeflow-alerts`) for `CRIMEFLOW_ALERT_WEBHOOK_URL` and creates or updates two automations on
the Prefect server in PREFECT_API_URL, found again by name, so running it twice changes nothing:

- `crimeflow-alert-model-rejected`: event `crimeflow.model.rejected` for resource
  `crimeflow.model.<CRIMEFLOW_MODEL_NAME>`;
- `crimeflow-alert-flow-run-failed`: event `prefect.flow-run.Failed` for any flow run.

The serve script calls it at start-up; after `prefect deploy`, run `python -m deployments.alerts`
once. The webhook receives a JSON POST: `{"text", "subject", "body", "source"}`; `text` is
subject and body together, which Slack-, Mattermost- and Teams-style incoming webhooks display.
Each body links the pages to open next, at the public URLs (`crimeflow.contract.links`): the
rejected candidate in MLflow, the drift report and the retrain's Prefect run (carried by the
event's payload), or the failed flow run's page in the Prefect UI.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING
from uuid import UUID

from crimeflow.contract.events import MODEL_REJECTED, model_resource
from crimeflow.contract.links import Links
from crimeflow.contract.settings import Settings, get_settings

if TYPE_CHECKING:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.events.schemas.automations import AutomationCore

BLOCK_NAME = "crimeflow-alerts"
REJECTED_AUTOMATION = "crimeflow-alert-model-rejected"
FAILED_AUTOMATION = "crimeflow-alert-flow-run-failed"
FLOW_RUN_FAILED = "prefect.flow-run.Failed"
TAGS = ["crimeflow", "alerts"]

# Jinja templates the Prefect server renders when an automation fires (`event`, and for flow-run
# events the `flow_run`, `flow` and `deployment` objects it looks up).
REJECTED_SUBJECT = "crimeflow: {{ event.resource.name }} v{{ event.payload.version }} rejected"
REJECTED_BODY = """\
The staging gate rejected {{ event.resource.name }} version {{ event.payload.version }}; \
the champion stays {% if event.payload.previous_version %}v{{ event.payload.previous_version }}\
{% else %}unset{% endif %}.
Reasons: {{ event.payload.reasons or '-' }}
Trigger: {{ event.payload.reason }}
PR-AUC: candidate {{ event.payload.candidate_pr_auc }}, champion {{ event.payload.champion_pr_auc }}
{% if event.payload.mlflow_url %}Candidate in MLflow: {{ event.payload.mlflow_url }}
{% endif %}{% if event.payload.report_url %}Drift report: {{ event.payload.report_url }}
{% endif %}{% if event.payload.flow_run_url %}Retrain run: {{ event.payload.flow_run_url }}
{% endif %}Event {{ event.id }} at {{ event.occurred }}"""
FAILED_SUBJECT = "crimeflow: flow run {{ flow_run.name }} ({{ flow.name }}) failed"
# `{url}` is the Prefect UI's page of the run, filled in when the automation is built.
FAILED_BODY = """\
Flow run {{ flow_run.name }} of flow {{ flow.name }} \
{% if deployment %}(deployment {{ deployment.name }}) {% endif %}failed.
State: {{ flow_run.state.name }}: {{ flow_run.state.message }}
Flow run id: {{ flow_run.id }}
Open it: {url}
Event {{ event.id }} at {{ event.occurred }}"""


def failed_body(links: Links) -> str:
    """The failed-run alert's body, linking the run's page at the Prefect UI's public URL."""
    # str.replace, not str.format: the Jinja braces must reach the Prefect server untouched.
    return FAILED_BODY.replace("{url}", links.flow_run("{{ flow_run.id }}"))


def webhook_block(url: str) -> CustomWebhookNotificationBlock:
    """The notification block that POSTs subject and body as JSON to `url`."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    # The URL is kept as a secret value (webhook URLs usually embed their token), so the UI and
    # the API show it masked; `{{url}}` is filled in from the secrets at send time.
    return CustomWebhookNotificationBlock(
        name="crimeflow",
        url="{{url}}",
        method="POST",
        json_data={
            "text": "{{subject}}\n\n{{body}}",
            "subject": "{{subject}}",
            "body": "{{body}}",
            "source": "{{name}}",
        },
        secrets={"url": url},
    )


def alert_automations(settings: Settings, block_document_id: UUID) -> list[AutomationCore]:
    """The two alert automations, each sending through the notification block given."""
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    def notify(subject: str, body: str) -> SendNotification:
        return SendNotification(block_document_id=block_document_id, subject=subject, body=body)

    resource_id = model_resource(settings.model_name)["prefect.resource.id"]
    return [
        AutomationCore(
            name=REJECTED_AUTOMATION,
            description=f"Notify the webhook when the staging gate rejects a {resource_id}.",
            enabled=True,
            tags=TAGS,
            trigger=EventTrigger(
                expect={MODEL_REJECTED},
                match={"prefect.resource.id": resource_id},
                posture=Posture.Reactive,
                threshold=1,
                within=timedelta(0),
            ),
            actions=[notify(REJECTED_SUBJECT, REJECTED_BODY)],
        ),
        AutomationCore(
            name=FAILED_AUTOMATION,
            description="Notify the webhook when a flow run on this server fails.",
            enabled=True,
            tags=TAGS,
            trigger=EventTrigger(
                expect={FLOW_RUN_FAILED},
                match={"prefect.resource.id": "prefect.flow-run.*"},
                posture=Posture.Reactive,
                threshold=1,
                within=timedelta(0),
            ),
            actions=[notify(FAILED_SUBJECT, failed_body(Links.from_settings(settings)))],
        ),
    ]


def ensure_alerts(settings: Settings) -> list[str]:
    """Save the webhook block and create or update the alert automations; their ids.

    Does nothing (and returns []) when `settings.prefect.alert_webhook_url` is empty; existing alert
    automations are then left as they are (disable them in the UI or with `prefect automation`).
    """
    if not settings.prefect.alert_webhook_url:
        return []
    from prefect.client.orchestration import get_client

    block_document_id = webhook_block(settings.prefect.alert_webhook_url.get_secret_value()).save(
        BLOCK_NAME, overwrite=True
    )
    ids: list[str] = []
    with get_client(sync_client=True) as client:
        for automation in alert_automations(settings, block_document_id):
            existing = client.read_automations_by_name(automation.name)
            if not existing:
                ids.append(str(client.create_automation(automation)))
                continue
            # Same name: update the first in place (the id stays), drop duplicates made by hand.
            first, *duplicates = existing
            client.update_automation(first.id, automation)
            for duplicate in duplicates:
                client.delete_automation(duplicate.id)
            ids.append(str(first.id))
    return ids


def main() -> None:
    """Create or update the alert automations once (for `prefect deploy` setups)."""
    settings = get_settings()
    if not settings.prefect.alert_webhook_url:
        raise SystemExit("CRIMEFLOW_ALERT_WEBHOOK_URL is not set: no alerts to create")
    for name, automation_id in zip(
        (REJECTED_AUTOMATION, FAILED_AUTOMATION), ensure_alerts(settings), strict=True
    ):
        print(f"{name}: {automation_id}")


if __name__ == "__main__":
    main()
