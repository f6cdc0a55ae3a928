"""Alert automations: every decision of the loop, and every failed crimeflow run, is announced.

`ensure_alerts(settings)` saves the notification block of each configured channel (the webhook
and email, `deployments.alert_channels`) and creates or updates one automation per alert on the
Prefect server in PREFECT_API_URL, found again by name, so running it twice changes nothing:

- `crimeflow-alert-drift-detected`: `crimeflow.drift.detected` (a retrain follows);
- `crimeflow-alert-model-promoted`: `crimeflow.model.promoted` (the gate passed);
- `crimeflow-alert-model-rejected`: `crimeflow.model.rejected` (the champion stays);
- `crimeflow-alert-model-rolled-back`: `crimeflow.model.rolled-back` (the rollback flow);
- `crimeflow-alert-flow-run-failed`: `prefect.flow-run.Failed`/`Crashed` of a run of a
  deployment tagged `crimeflow` (not of another project's flows on a shared Prefect server).

The model events match resource `crimeflow.model.<CRIMEFLOW_MODEL_NAME>`. Each text names the
model version and the reason and links, at the public URLs, the drift report, the version in
MLflow (and its run when the event carries it) and the Prefect flow run that acted: the server
fills `{{ flow_run.id }}` from the event's related flow run, which Prefect attaches to events
emitted inside a run. The serve script calls `ensure_alerts` at start-up; after
`prefect deploy`, run `python -m deployments.alerts` once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING
from uuid import UUID

from crimeflow.contract.events import (
    DRIFT_DETECTED,
    MODEL_PROMOTED,
    MODEL_REJECTED,
    MODEL_ROLLED_BACK,
    model_resource,
)
from crimeflow.contract.links import Links
from crimeflow.contract.settings import Settings, get_settings
from deployments.alert_channels import save_channels

if TYPE_CHECKING:
    from prefect.events.schemas.automations import AutomationCore

DRIFT_AUTOMATION = "crimeflow-alert-drift-detected"
PROMOTED_AUTOMATION = "crimeflow-alert-model-promoted"
REJECTED_AUTOMATION = "crimeflow-alert-model-rejected"
ROLLED_BACK_AUTOMATION = "crimeflow-alert-model-rolled-back"
FAILED_AUTOMATION = "crimeflow-alert-flow-run-failed"
FLOW_RUN_FAILED = "prefect.flow-run.Failed"
FLOW_RUN_CRASHED = "prefect.flow-run.Crashed"
PROJECT_TAG = "crimeflow"
TAGS = [PROJECT_TAG, "alerts"]
# Not yet: "performance degraded" needs the estimated/realized performance of issue #14 (late
# labels); its event and automation belong here once that monitor emits one.


@dataclass(frozen=True)
class AlertLinks:
    """The shared link builders (`crimeflow.contract.links`) for one model's alert texts.

    Ids may be Jinja placeholders, which the Prefect server fills in when it renders an alert.
    """

    links: Links
    model_name: str

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertLinks:
        """The links at the configured public URLs, for the configured model."""
        return cls(Links.from_settings(settings), settings.model_name)

    def report(self, report_id: str) -> str:
        """A drift report's page (the API serves it)."""
        return self.links.report(report_id)

    def model_version(self, version: str) -> str:
        """A registered model version's page in the MLflow UI."""
        return self.links.model_version(self.model_name, version)

    def model(self) -> str:
        """The registered model's page in the MLflow UI (all versions and aliases)."""
        return self.links.model(self.model_name)

    def flow_run(self, flow_run_id: str) -> str:
        """A flow run's page in the Prefect UI."""
        return self.links.flow_run(flow_run_id)


def _when(condition: str, line: str) -> str:
    """A Jinja line (newline included) rendered only when `condition` holds."""
    return f"{{% if {condition} %}}{line}\n{{% endif %}}"


def _flow_run_line(links: Links, label: str) -> str:
    """'<label>: <Prefect UI page of the run that emitted the event>' when there is one."""
    return _when("flow_run", f"{label}: {links.flow_run('{{ flow_run.id }}')}")


FOOTER = "Event {{ event.id }} at {{ event.occurred }}"


def drift_text(links: AlertLinks) -> tuple[str, str]:
    """Subject and body of the drift-detected alert."""
    version = "{{ event.payload.model_version }}"
    subject = f"crimeflow: drift detected on {{{{ event.resource.name }}}} v{version}"
    body = (
        f"The drift monitor found drift in the traffic served by {{{{ event.resource.name }}}} "
        f"v{version}; the retrain-on-drift trigger starts a retrain.\n"
        "Reason: {{ ((event.payload.drift_share or 0) * 100) | round(1) }}% of monitored columns "
        "drifted ({{ event.payload.drifted_columns_count }}: "
        "{{ event.payload.drifted_columns or '-' }}) in {{ event.payload.current_rows }} logged "
        "predictions, {{ event.payload.window_start }} to {{ event.payload.window_end }}.\n"
        "Drift report: {{ event.payload.report_url }}\n"
        f"Model in MLflow: {links.model_version(version)}\n"
        + _flow_run_line(links, "Drift check run")
        + FOOTER
    )
    return subject, body


def _gate_links(links: AlertLinks) -> str:
    """The links of a gate decision: both versions, the run, the drift report, the retrain."""
    return (
        f"Candidate in MLflow: {links.model_version('{{ event.payload.version }}')}\n"
        + _when(
            "event.payload.previous_version",
            "Champion in MLflow: " + links.model_version("{{ event.payload.previous_version }}"),
        )
        + _when("event.payload.mlflow_run_url", "MLflow run: {{ event.payload.mlflow_run_url }}")
        # The payload's link when it carries one, else the retrain run's drift_report_id.
        + "{% if event.payload.report_url %}Drift report: {{ event.payload.report_url }}\n"
        "{% elif flow_run and flow_run.parameters.drift_report_id %}Drift report: "
        + links.report("{{ flow_run.parameters.drift_report_id }}")
        + "\n{% endif %}"
        + _flow_run_line(links, "Retrain run")
    )


GATE_METRICS = (
    "PR-AUC on staging: candidate {{ event.payload.candidate_pr_auc }}, "
    "champion {{ event.payload.champion_pr_auc }}\n"
)


def promoted_text(links: AlertLinks) -> tuple[str, str]:
    """Subject and body of the model-promoted alert."""
    subject = "crimeflow: {{ event.resource.name }} v{{ event.payload.version }} promoted"
    body = (
        "The staging gate promoted {{ event.resource.name }} version {{ event.payload.version }} "
        "to champion, replacing {% if event.payload.previous_version %}"
        "v{{ event.payload.previous_version }}{% else %}no champion{% endif %}; the API "
        "serves it within its poll interval.\n"
        "Reason: {{ event.payload.reason }}; every gate check passed.\n"
        + GATE_METRICS
        + _gate_links(links)
        + FOOTER
    )
    return subject, body


def rejected_text(links: AlertLinks) -> tuple[str, str]:
    """Subject and body of the model-rejected alert."""
    subject = "crimeflow: {{ event.resource.name }} v{{ event.payload.version }} rejected"
    body = (
        "The staging gate rejected {{ event.resource.name }} version {{ event.payload.version }}; "
        "the champion stays {% if event.payload.previous_version %}"
        "v{{ event.payload.previous_version }}{% else %}unset{% endif %}.\n"
        "Reasons: {{ event.payload.reasons or '-' }}\n"
        "Trigger: {{ event.payload.reason }}\n" + GATE_METRICS + _gate_links(links) + FOOTER
    )
    return subject, body


def rolled_back_text(links: AlertLinks) -> tuple[str, str]:
    """Subject and body of the rolled-back alert."""
    withdrawn = "event.payload.rolled_back and event.payload.rolled_back != 'none'"
    subject = "crimeflow: {{ event.resource.name }} rolled back to v{{ event.payload.champion }}"
    body = (
        "The champion of {{ event.resource.name }} was rolled back to "
        "v{{ event.payload.champion }}"
        f"{{% if {withdrawn} %}}, withdrawing v{{{{ event.payload.rolled_back }}}}{{% endif %}}; "
        "the API serves it within its poll interval.\n"
        "Reason: {{ event.payload.reason }}\n"
        f"Champion in MLflow: {links.model_version('{{ event.payload.champion }}')}\n"
        + _when(
            withdrawn,
            "Withdrawn version in MLflow: "
            + links.model_version("{{ event.payload.rolled_back }}"),
        )
        + _flow_run_line(links, "Rollback run")
        + FOOTER
    )
    return subject, body


def failed_text(links: AlertLinks) -> tuple[str, str]:
    """Subject and body of the failed-flow-run alert."""
    state = "{{ flow_run.state.name | lower }}"
    subject = f"crimeflow: flow run {{{{ flow_run.name }}}} ({{{{ flow.name }}}}) {state}"
    body = (
        "Flow run {{ flow_run.name }} of flow {{ flow.name }} "
        f"{{% if deployment %}}(deployment {{{{ deployment.name }}}}) {{% endif %}}{state}.\n"
        "State: {{ flow_run.state.name }}: {{ flow_run.state.message }}\n"
        f"Model: {links.model_name}; its versions and aliases in MLflow: {links.model()}\n"
        f"Prefect run: {links.flow_run('{{ flow_run.id }}')}\n"
        "Flow run id: {{ flow_run.id }}\n" + FOOTER
    )
    return subject, body


@dataclass(frozen=True)
class Alert:
    """One alert: its automation's name, the events it reacts to, which resources, its text."""

    name: str
    description: str
    expect: frozenset[str]
    match: dict[str, str]
    text: tuple[str, str]
    match_related: list[dict[str, str]] = field(default_factory=list)


# A failed run alerts only when it belongs to a deployment and carries the project's tag
# (deployment tags reach the run's event as `prefect.tag.<tag>` resources): both must match.
CRIMEFLOW_DEPLOYMENT_RUN = [
    {"prefect.resource.role": "deployment"},
    {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{PROJECT_TAG}"},
]


def alerts(settings: Settings) -> list[Alert]:
    """Every alert, with texts linking the public URLs of these settings."""
    links = AlertLinks.from_settings(settings)
    model = model_resource(settings.model_name)["prefect.resource.id"]
    on_model = {"prefect.resource.id": model}
    return [
        Alert(DRIFT_AUTOMATION, f"Drift detected for {model}.", frozenset({DRIFT_DETECTED}),
              on_model, drift_text(links)),
        Alert(PROMOTED_AUTOMATION, f"The staging gate promoted a {model} version.",
              frozenset({MODEL_PROMOTED}), on_model, promoted_text(links)),
        Alert(REJECTED_AUTOMATION, f"The staging gate rejected a {model} version.",
              frozenset({MODEL_REJECTED}), on_model, rejected_text(links)),
        Alert(ROLLED_BACK_AUTOMATION, f"The champion of {model} was rolled back.",
              frozenset({MODEL_ROLLED_BACK}), on_model, rolled_back_text(links)),
        Alert(FAILED_AUTOMATION, "A run of a crimeflow deployment failed or crashed.",
              frozenset({FLOW_RUN_FAILED, FLOW_RUN_CRASHED}),
              {"prefect.resource.id": "prefect.flow-run.*"}, failed_text(links),
              CRIMEFLOW_DEPLOYMENT_RUN),
    ]  # fmt: skip


def alert_automations(settings: Settings, block_document_ids: list[UUID]) -> list[AutomationCore]:
    """One automation per alert, each sending its text through every block given."""
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    automations = []
    for alert in alerts(settings):
        subject, body = alert.text
        trigger = EventTrigger(
            expect=set(alert.expect),
            match=alert.match,
            match_related=alert.match_related,
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        )
        actions = [
            SendNotification(block_document_id=block, subject=subject, body=body)
            for block in block_document_ids
        ]
        automations.append(
            AutomationCore(
                name=alert.name,
                description=alert.description,
                enabled=True,
                tags=TAGS,
                trigger=trigger,
                actions=actions,
            )
        )
    return automations


def ensure_alerts(settings: Settings) -> list[str]:
    """Save the channels' blocks and create or update the alert automations; their ids.

    Does nothing (and returns []) when no channel is configured; existing alert automations are
    then left as they are (disable them in the UI or with `prefect automation`).
    """
    block_ids = save_channels(settings.prefect)
    if not block_ids:
        return []
    from prefect.client.orchestration import get_client

    ids: list[str] = []
    with get_client(sync_client=True) as client:
        for automation in alert_automations(settings, block_ids):
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
    ids = ensure_alerts(settings)
    if not ids:
        raise SystemExit(
            "neither CRIMEFLOW_ALERT_WEBHOOK_URL nor CRIMEFLOW_ALERT_EMAIL_HOST and "
            "CRIMEFLOW_ALERT_EMAIL_TO are set: no alerts to create"
        )
    for alert, automation_id in zip(alerts(settings), ids, strict=True):
        print(f"{alert.name}: {automation_id}")


if __name__ == "__main__":
    main()
