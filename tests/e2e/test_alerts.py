"""Alert automations end to end: a real Prefect server POSTs to a local webhook receiver.

`ensure_alerts` against the session's server, then the two things that should page someone: a
`crimeflow.model.rejected` event (emitted with prefect.events.emit_event) and a flow run that
fails. The server's automations evaluate the events and send both notifications through the
Custom Webhook block to a tiny http.server on 127.0.0.1 that records what it receives.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from crimeflow.contract.events import MODEL_REJECTED
from crimeflow.contract.settings import Settings
from deployments.alerts import (
    BLOCK_NAME,
    FAILED_AUTOMATION,
    REJECTED_AUTOMATION,
    ensure_alerts,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NOTIFY_TIMEOUT_S = 60.0


class Receiver:
    """A webhook on 127.0.0.1 that records every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with receiver._lock:
                    receiver.bodies.append(body)
                    receiver.paths.append(self.path)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/crimeflow?token=t0k3n"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait_for(self, accept: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first received body `accept` says yes to, within NOTIFY_TIMEOUT_S."""
        deadline = time.monotonic() + NOTIFY_TIMEOUT_S
        while time.monotonic() < deadline:
            with self._lock:
                for body in self.bodies:
                    if accept(body):
                        return body
            time.sleep(0.2)
        raise AssertionError(f"no matching notification within {NOTIFY_TIMEOUT_S} s: {self.bodies}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def settings(receiver: Receiver, tmp_path) -> Settings:
    # A model name of its own: no other test's events can match this test's automation.
    return Settings(
        home=tmp_path,
        alert_webhook_url=receiver.url,
        model_name=f"alerts-e2e-{uuid.uuid4().hex[:8]}",
        _env_file=None,
    )


def emit_now(event: str, resource: dict[str, str], payload: dict[str, Any]) -> None:
    """emit_event through an events worker bound to the current API URL, then flush it."""
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    # The worker is a process-wide singleton that keeps the API URL it started with: stop any
    # earlier one so that this event goes to the test server, and drain to send it now.
    EventsWorker.drain_all()
    assert emit_event(event=event, resource=resource, payload=payload) is not None
    EventsWorker.drain_all()


def test_ensure_alerts_is_idempotent_and_off_without_a_url(prefect_api, settings):
    from prefect.client.orchestration import get_client

    first = ensure_alerts(settings)
    second = ensure_alerts(settings)
    assert len(first) == 2
    assert second == first
    with get_client(sync_client=True) as client:
        for name in (REJECTED_AUTOMATION, FAILED_AUTOMATION):
            assert len(client.read_automations_by_name(name)) == 1
        rejected = client.read_automation(first[0])
        assert rejected.trigger.expect == {MODEL_REJECTED}
        assert rejected.trigger.match.model_dump() == {
            "prefect.resource.id": f"crimeflow.model.{settings.model_name}"
        }
        (action,) = rejected.actions
        assert action.type == "send-notification"
    assert ensure_alerts(settings.replace(alert_webhook_url=None)) == []


def test_rejected_model_and_failed_flow_run_reach_the_webhook(prefect_api, settings, receiver):
    from prefect import flow
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    ensure_alerts(settings)
    # The webhook URL is stored as a secret of the block, not in its plain fields.
    block = CustomWebhookNotificationBlock.load(BLOCK_NAME)
    assert block.url == "{{url}}"
    assert block.secrets.get_secret_value() == {"url": receiver.url}

    model = settings.model_name
    emit_now(
        MODEL_REJECTED,
        {"prefect.resource.id": f"crimeflow.model.{model}", "prefect.resource.name": model},
        {
            "version": "7",
            "previous_version": "6",
            "reason": "drift (report r-123)",
            "reasons": "pr_auc 0.61 < champion 0.66 - 0.01",
            "candidate_pr_auc": 0.61,
            "champion_pr_auc": 0.66,
        },
    )

    marker = uuid.uuid4().hex

    @flow(name="alerts-e2e-failing")
    def failing() -> None:
        raise RuntimeError(f"boom {marker}")

    state = failing(return_state=True)
    assert state.is_failed()
    # Send the run's logs now, while the server is up (not at interpreter exit).
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all()

    rejected = receiver.wait_for(lambda body: model in body.get("subject", ""))
    assert rejected["subject"] == f"crimeflow: {model} v7 rejected"
    assert "the champion stays v6" in rejected["body"]
    assert "Reasons: pr_auc 0.61 < champion 0.66 - 0.01" in rejected["body"]
    assert "Trigger: drift (report r-123)" in rejected["body"]
    assert rejected["text"] == f"{rejected['subject']}\n\n{rejected['body']}"
    assert rejected["source"] == "crimeflow"

    failed = receiver.wait_for(lambda body: marker in body.get("body", ""))
    assert "(alerts-e2e-failing) failed" in failed["subject"]
    assert "State: Failed:" in failed["body"]
    assert f"boom {marker}" in failed["body"]
    # The path and query of the secret URL were used as given.
    assert set(receiver.paths) == {"/hooks/crimeflow?token=t0k3n"}
