"""The alert automations, their texts and channels, as built (no server needed)."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from crimeflow.contract.events import (
    DRIFT_DETECTED,
    MODEL_PROMOTED,
    MODEL_REJECTED,
    MODEL_ROLLED_BACK,
)
from crimeflow.contract.settings import Settings
from deployments.alert_channels import email_block, email_enabled, sender, webhook_block
from deployments.alerts import (
    DRIFT_AUTOMATION,
    FAILED_AUTOMATION,
    PROMOTED_AUTOMATION,
    REJECTED_AUTOMATION,
    ROLLED_BACK_AUTOMATION,
    alert_automations,
    ensure_alerts,
)

PUBLIC = {
    "api_public_url": "https://crimeflow.example.org",
    "mlflow_public_url": "https://mlflow.example.org/",
    "prefect_public_url": "https://prefect.example.org",
}
MLFLOW_VERSION = "https://mlflow.example.org/#/models/chicago%20arrest/versions/"
RUN = {
    "id": "6f1c",
    "name": "brave-fox",
    "parameters": {"drift_report_id": "r-9"},
    "state": {"name": "Failed", "message": "boom"},
}


def render(template: str, context: dict[str, Any]) -> str:
    """Render an automation template the way the Prefect server does."""
    from prefect.server.utilities.user_templates import render_user_template_sync

    return render_user_template_sync(template, context)


def by_name(settings: Settings | None = None, blocks: int = 1) -> dict[str, Any]:
    """The automations for `settings` (public URLs and a model name with a space) by name."""
    settings = settings or Settings(model_name="chicago arrest", **PUBLIC, _env_file=None)
    ids = [uuid4() for _ in range(blocks)]
    return {a.name: a for a in alert_automations(settings, ids)}


def rendered(name: str, payload: dict[str, Any], flow_run: dict | None = RUN) -> tuple[str, str]:
    """Subject and body of automation `name` for an event with `payload`, as sent."""
    (action, *_) = by_name()[name].actions
    event = {
        "id": "e-1",
        "occurred": "2026-05-01T00:00:00Z",
        "resource": {"name": "chicago arrest"},
        "payload": payload,
    }
    context = {"event": event, "flow_run": flow_run, "flow": {"name": "f"}, "deployment": None}
    return render(action.subject, context), render(action.body, context)


def test_one_automation_per_loop_decision_on_the_model_resource():
    automations = by_name(Settings(model_name="m1", _env_file=None))
    expected = {
        DRIFT_AUTOMATION: DRIFT_DETECTED,
        PROMOTED_AUTOMATION: MODEL_PROMOTED,
        REJECTED_AUTOMATION: MODEL_REJECTED,
        ROLLED_BACK_AUTOMATION: MODEL_ROLLED_BACK,
    }
    assert set(automations) == {*expected, FAILED_AUTOMATION}
    for name, event in expected.items():
        trigger = automations[name].trigger
        assert trigger.expect == {event}
        assert trigger.match.model_dump() == {"prefect.resource.id": "crimeflow.model.m1"}
        assert trigger.posture == "Reactive" and trigger.threshold == 1


def test_failed_runs_alert_only_for_crimeflow_deployments():
    from prefect.events.schemas.events import RelatedResource

    trigger = by_name()[FAILED_AUTOMATION].trigger
    assert trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
    assert trigger.match.model_dump() == {"prefect.resource.id": "prefect.flow-run.*"}

    def related(*tags: str, deployment: bool = True) -> list[RelatedResource]:
        # What the server attaches to a flow run's state event (models/events.py).
        resources = [{"prefect.resource.id": "prefect.flow.1", "prefect.resource.role": "flow"}]
        if deployment:
            deployment_2 = "prefect.deployment.2"
            resources.append(
                {"prefect.resource.id": deployment_2, "prefect.resource.role": "deployment"}
            )
        resources += [
            {"prefect.resource.id": f"prefect.tag.{tag}", "prefect.resource.role": "tag"}
            for tag in tags
        ]
        return [RelatedResource.model_validate(r) for r in resources]

    def fires(resources: list[RelatedResource]) -> bool:
        return all(spec.includes(resources) for spec in trigger.match_related)

    assert fires(related("crimeflow", "training"))
    assert not fires(related("other-project"))
    assert not fires(related("crimeflow", deployment=False))  # a local run, not a deployment
    assert not fires(related("crimeflow-fork"))


def test_every_channel_gets_every_alert():
    for automation in by_name(blocks=2).values():
        assert len(automation.actions) == 2
        assert {action.type for action in automation.actions} == {"send-notification"}


def test_templates_are_valid_server_side_templates():
    from prefect.server.events.actions import SendNotification
    from prefect.server.events.schemas.automations import AutomationCore

    # The server validates the trigger and the Jinja syntax when it stores an automation.
    for automation in by_name().values():
        AutomationCore.model_validate(automation.model_dump(mode="json"))
        for action in automation.actions:
            SendNotification.model_validate(action.model_dump())


def test_drift_alert_names_version_reason_and_links():
    payload = {
        "model_version": "6",
        "drift_share": 0.41666,
        "drifted_columns": "beat,ward",
        "drifted_columns_count": 2,
        "current_rows": 500,
        "window_start": "2026-04-01",
        "window_end": "2026-05-01",
        "report_url": "https://crimeflow.example.org/reports/r-1",
    }
    subject, body = rendered(DRIFT_AUTOMATION, payload)
    assert subject == "crimeflow: drift detected on chicago arrest v6"
    assert "Reason: 41.7% of monitored columns drifted (2: beat,ward) in 500" in body
    assert "Drift report: https://crimeflow.example.org/reports/r-1\n" in body
    assert f"Model in MLflow: {MLFLOW_VERSION}6\n" in body
    assert "Drift check run: https://prefect.example.org/runs/flow-run/6f1c\n" in body
    # Emitted outside a flow run: no run line, no dangling link.
    _, alone = rendered(DRIFT_AUTOMATION, payload, flow_run=None)
    assert "flow-run" not in alone


GATE = {
    "version": "7",
    "previous_version": "6",
    "reason": "drift (report r-9)",
    "reasons": "pr_auc 0.61 < champion 0.66 - 0.01",
    "candidate_pr_auc": 0.61,
    "champion_pr_auc": 0.66,
}


def test_rejected_alert_names_version_reasons_and_links():
    subject, body = rendered(REJECTED_AUTOMATION, GATE)
    assert subject == "crimeflow: chicago arrest v7 rejected"
    assert "the champion stays v6." in body
    assert "Reasons: pr_auc 0.61 < champion 0.66 - 0.01\nTrigger: drift (report r-9)\n" in body
    assert f"Candidate in MLflow: {MLFLOW_VERSION}7\n" in body
    assert f"Champion in MLflow: {MLFLOW_VERSION}6\n" in body
    # No report link in the payload: the retrain run's drift_report_id parameter gives it.
    assert "Drift report: https://crimeflow.example.org/reports/r-9\n" in body
    assert "Retrain run: https://prefect.example.org/runs/flow-run/6f1c\n" in body
    assert "MLflow run:" not in body


def test_gate_alerts_prefer_the_links_the_payload_carries():
    payload = {
        **GATE,
        "report_url": "https://elsewhere.example/reports/r-1",
        "mlflow_run_url": "https://mlflow.example.org/#/experiments/1/runs/abc",
    }
    for name in (PROMOTED_AUTOMATION, REJECTED_AUTOMATION):
        _, body = rendered(name, payload)
        assert "Drift report: https://elsewhere.example/reports/r-1\n" in body
        assert "MLflow run: https://mlflow.example.org/#/experiments/1/runs/abc\n" in body
        assert "reports/r-9" not in body


@pytest.mark.parametrize("name", [PROMOTED_AUTOMATION, REJECTED_AUTOMATION])
def test_a_manual_retrain_with_no_champion_leaves_out_what_does_not_exist(name):
    run = {**RUN, "parameters": {"drift_report_id": None}}
    _, body = rendered(name, {**GATE, "previous_version": None, "reason": "manual"}, run)
    assert "Drift report" not in body
    assert "Champion in MLflow" not in body
    assert "Retrain run: https://prefect.example.org/runs/flow-run/6f1c" in body


def test_promoted_alert_names_version_reason_and_links():
    subject, body = rendered(PROMOTED_AUTOMATION, {**GATE, "reasons": ""})
    assert subject == "crimeflow: chicago arrest v7 promoted"
    assert "promoted chicago arrest version 7 to champion, replacing v6;" in body
    assert "Reason: drift (report r-9); every gate check passed.\n" in body
    assert f"Candidate in MLflow: {MLFLOW_VERSION}7\n" in body


def test_rolled_back_alert_names_both_versions_reason_and_links():
    payload = {"champion": "5", "rolled_back": "6", "reason": "bad calibration"}
    subject, body = rendered(ROLLED_BACK_AUTOMATION, payload)
    assert subject == "crimeflow: chicago arrest rolled back to v5"
    assert "rolled back to v5, withdrawing v6;" in body
    assert "Reason: bad calibration\n" in body
    assert f"Champion in MLflow: {MLFLOW_VERSION}5\n" in body
    assert f"Withdrawn version in MLflow: {MLFLOW_VERSION}6\n" in body
    assert "Rollback run: https://prefect.example.org/runs/flow-run/6f1c\n" in body
    _, nothing_withdrawn = rendered(ROLLED_BACK_AUTOMATION, {**payload, "rolled_back": "none"})
    assert "withdrawing" not in nothing_withdrawn and "Withdrawn" not in nothing_withdrawn


def test_failed_run_alert_links_the_run_at_the_public_prefect_url():
    subject, body = rendered(FAILED_AUTOMATION, {}, RUN)
    assert subject == "crimeflow: flow run brave-fox (f) failed"
    assert "State: Failed: boom\n" in body
    assert "Prefect run: https://prefect.example.org/runs/flow-run/6f1c\n" in body
    assert "https://mlflow.example.org/#/models/chicago%20arrest\n" in body


def test_links_default_to_the_local_services():
    (action,) = by_name(Settings(prefect_port=4321, _env_file=None))[FAILED_AUTOMATION].actions
    assert "Prefect run: http://127.0.0.1:4321/runs/flow-run/{{ flow_run.id }}" in action.body


def test_webhook_url_is_a_secret_of_the_block():
    block = webhook_block("https://hooks.example.org/T000/secret")
    assert block.url == "{{url}}"
    assert "hooks.example.org" not in block.model_dump_json()
    request = block._build_request_args(body="b", subject="s")
    assert request["url"] == "https://hooks.example.org/T000/secret"
    assert request["json"] == {"text": "s\n\nb", "subject": "s", "body": "b", "source": "crimeflow"}


def email_settings(**changes: Any) -> Settings:
    """Settings with email alerts through smtp.example.org."""
    values = {
        "alert_email_host": "smtp.example.org",
        "alert_email_to": "ops@example.org, oncall@example.org",
        "alert_email_username": "robot",
        "alert_email_password": "s3cr3t",
        **changes,
    }
    return Settings(**values, _env_file=None)


def test_email_is_off_unless_a_server_and_a_recipient_are_set():
    assert not email_enabled(Settings(_env_file=None).prefect)
    assert not email_enabled(email_settings(alert_email_to=" , ").prefect)
    assert not email_enabled(email_settings(alert_email_host="").prefect)
    assert email_enabled(email_settings().prefect)


def test_email_block_keeps_the_smtp_settings_secret():
    import apprise

    block = email_block(email_settings(alert_email_port=2525, alert_email_tls="ssl").prefect)
    assert "s3cr3t" not in block.model_dump_json()
    # What Apprise (inside the Prefect server) makes of the block's URL.
    notify = apprise.Apprise.instantiate(block.url.get_secret_value())
    assert (notify.smtp_host, notify.port, notify.secure_mode) == ("smtp.example.org", 2525, "ssl")
    assert (notify.user, notify.password) == ("robot", "s3cr3t")
    assert notify.from_addr[1] == "crimeflow@smtp.example.org"
    assert [address for _, address in notify.targets] == ["ops@example.org", "oncall@example.org"]
    plain = email_block(email_settings(alert_email_tls="none", alert_email_username="").prefect)
    notify = apprise.Apprise.instantiate(plain.url.get_secret_value())
    assert (notify.secure_mode, notify.port, notify.user) == ("insecure", 587, None)


def test_email_sender_falls_back_to_an_address_login():
    assert sender(email_settings(alert_email_from="cf@example.org").prefect) == "cf@example.org"
    assert sender(email_settings(alert_email_username="me@example.org").prefect) == (
        "me@example.org"
    )


def test_no_channel_no_alerts():
    assert ensure_alerts(Settings(alert_webhook_url=None, _env_file=None)) == []
