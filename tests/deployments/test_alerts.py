"""The alert automations and webhook block, as built (no server needed)."""

from __future__ import annotations

from uuid import uuid4

from crimeflow.contract.settings import Settings
from deployments.alerts import (
    FAILED_AUTOMATION,
    REJECTED_AUTOMATION,
    alert_automations,
    ensure_alerts,
    webhook_block,
)

PUBLIC = {
    "api_public_url": "https://crimeflow.example.org",
    "mlflow_public_url": "https://mlflow.example.org",
    "prefect_public_url": "https://prefect.example.org/",
}


def render(template: str, context: dict) -> str:
    """Render an automation template the way the Prefect server does."""
    from prefect.server.utilities.user_templates import render_user_template_sync

    return render_user_template_sync(template, context)


def test_two_automations_notify_through_the_block():
    block_id = uuid4()
    settings = Settings(model_name="m1", _env_file=None)
    rejected, failed = alert_automations(settings, block_id)
    assert rejected.name == REJECTED_AUTOMATION
    assert rejected.trigger.expect == {"crimeflow.model.rejected"}
    assert rejected.trigger.match.model_dump() == {"prefect.resource.id": "crimeflow.model.m1"}
    assert failed.name == FAILED_AUTOMATION
    assert failed.trigger.expect == {"prefect.flow-run.Failed"}
    assert failed.trigger.match.model_dump() == {"prefect.resource.id": "prefect.flow-run.*"}
    for automation in (rejected, failed):
        (action,) = automation.actions
        assert action.type == "send-notification"
        assert action.block_document_id == block_id


def test_templates_are_valid_server_side_templates():
    from prefect.server.events.actions import SendNotification

    # The server validates Jinja syntax when it stores an automation; fail here first.
    for automation in alert_automations(Settings(_env_file=None), uuid4()):
        (action,) = automation.actions
        SendNotification.model_validate(action.model_dump())


def test_webhook_url_is_a_secret_of_the_block():
    block = webhook_block("https://hooks.example.org/T000/secret")
    assert block.url == "{{url}}"
    assert "hooks.example.org" not in block.model_dump_json()
    request = block._build_request_args(body="b", subject="s")
    assert request["url"] == "https://hooks.example.org/T000/secret"
    assert request["json"] == {"text": "s\n\nb", "subject": "s", "body": "b", "source": "crimeflow"}


def test_no_url_no_alerts():
    assert ensure_alerts(Settings(alert_webhook_url=None, _env_file=None)) == []


def test_the_failed_run_alert_links_the_run_at_the_public_prefect_url():
    settings = Settings(api_host="0.0.0.0", **PUBLIC, _env_file=None)
    _, failed = alert_automations(settings, uuid4())
    (action,) = failed.actions
    run = {"id": "6f1c", "name": "brave-fox", "state": {"name": "Failed", "message": "boom"}}
    body = render(action.body, {"flow_run": run, "flow": {"name": "etl"}, "event": {}})
    assert "Open it: https://prefect.example.org/runs/flow-run/6f1c\n" in body
    assert "0.0.0.0" not in action.body and "127.0.0.1" not in action.body


def test_the_failed_run_alert_defaults_to_the_local_prefect_ui():
    _, failed = alert_automations(Settings(prefect_port=4321, _env_file=None), uuid4())
    (action,) = failed.actions
    assert "Open it: http://127.0.0.1:4321/runs/flow-run/{{ flow_run.id }}" in action.body


def test_the_rejected_alert_links_the_candidate_report_and_run_from_the_payload():
    rejected, _ = alert_automations(Settings(**PUBLIC, _env_file=None), uuid4())
    (action,) = rejected.actions
    payload = {
        "version": "7",
        "previous_version": "6",
        "reasons": "pr_auc too low",
        "reason": "drift (report r-1)",
        "mlflow_url": "https://mlflow.example.org/#/models/chicago-arrest/versions/7",
        "report_url": "https://crimeflow.example.org/reports/r-1",
        "flow_run_url": "https://prefect.example.org/runs/flow-run/f-1",
    }
    event = {"resource": {"name": "chicago-arrest"}, "payload": payload, "id": "e", "occurred": 1}
    body = render(action.body, {"event": event})
    assert f"Candidate in MLflow: {payload['mlflow_url']}\n" in body
    assert f"Drift report: {payload['report_url']}\n" in body
    assert f"Retrain run: {payload['flow_run_url']}\n" in body
    # A manual retrain has no report: the line is left out, no empty "Drift report:".
    manual = {**event, "payload": {**payload, "report_url": None}}
    assert "Drift report" not in render(action.body, {"event": manual})
