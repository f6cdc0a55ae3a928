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
