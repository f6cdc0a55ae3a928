"""Alert automations end to end: a real Prefect server sends every alert to a local webhook
receiver and, by email, to a local SMTP sink.

`ensure_alerts` against the session's server with both channels on, then everything that should
tell someone: the four model events, emitted from inside a flow run (as the monitor, retrain and
rollback flows do, so the server can link that run), and a run of a deployment tagged
`crimeflow` that fails, next to a failing run of another project's deployment that must stay
silent. The server's automations render each text and send it through the Custom Webhook block
(a tiny http.server) and the email block (a tiny SMTP server), both on 127.0.0.1.
"""

from __future__ import annotations

import json
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from crimeflow.contract.events import (
    DRIFT_DETECTED,
    MODEL_PROMOTED,
    MODEL_REJECTED,
    MODEL_ROLLED_BACK,
    emit,
)
from crimeflow.contract.settings import Settings
from deployments.alert_channels import EMAIL_BLOCK, WEBHOOK_BLOCK
from deployments.alerts import FAILED_AUTOMATION, REJECTED_AUTOMATION, alerts, ensure_alerts

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NOTIFY_TIMEOUT_S = 60.0
API, MLFLOW, PREFECT = "https://api.example.org", "https://mlflow.example.org", "https://pf.example"


def wait_for(items: Callable[[], list[Any]], accept: Callable[[Any], bool]) -> Any:
    """The first of `items()` that `accept` says yes to, within NOTIFY_TIMEOUT_S."""
    deadline = time.monotonic() + NOTIFY_TIMEOUT_S
    while time.monotonic() < deadline:
        for item in items():
            if accept(item):
                return item
        time.sleep(0.2)
    raise AssertionError(f"no matching notification within {NOTIFY_TIMEOUT_S} s: {items()}")


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

    def received(self) -> list[dict[str, Any]]:
        """The bodies received so far."""
        with self._lock:
            return list(self.bodies)


class SmtpSink:
    """An SMTP server on 127.0.0.1 that accepts every mail (no TLS, no auth) and keeps it.

    Just enough of RFC 5321 for Python's smtplib (which Apprise uses): no smtpd (deprecated)
    and no aiosmtpd (not a dependency).
    """

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.recipients: list[list[str]] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self) -> None:
                self.reply("220 sink ESMTP")
                rcpts: list[str] = []
                while line := self.rfile.readline():
                    verb, _, arg = line.decode().strip().partition(" ")
                    verb = verb.upper()
                    if verb == "DATA":
                        self.reply("354 end with <CRLF>.<CRLF>")
                        sink.keep(rcpts, self.read_data())
                        rcpts = []
                    elif verb == "RCPT":
                        rcpts.append(arg.partition(":")[2].strip("<> "))
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    if verb != "DATA":
                        self.reply("250 ok" if verb != "EHLO" else "250 sink")

            def read_data(self) -> bytes:
                data = b""
                while (line := self.rfile.readline()) not in (b".\r\n", b""):
                    data += line[1:] if line.startswith(b"..") else line  # dot-unstuffing
                self.reply("250 queued")
                return data

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    def keep(self, rcpts: list[str], data: bytes) -> None:
        """Keep one received mail and its envelope recipients."""
        message = message_from_bytes(data, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.messages.append(message)
            self.recipients.append(rcpts)

    def received(self) -> list[EmailMessage]:
        """The mails received so far."""
        with self._lock:
            return list(self.messages)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    threading.Thread(target=receiver.server.serve_forever, daemon=True).start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    threading.Thread(target=sink.server.serve_forever, daemon=True).start()
    yield sink
    sink.server.shutdown()
    sink.server.server_close()


@pytest.fixture
def settings(receiver: Receiver, smtp_sink: SmtpSink, tmp_path) -> Settings:
    # A model name of its own: no other test's events can match this test's automations.
    return Settings(
        home=tmp_path,
        model_name=f"alerts-e2e-{uuid.uuid4().hex[:8]}",
        alert_webhook_url=receiver.url,
        alert_email_host="127.0.0.1",
        alert_email_port=smtp_sink.port,
        alert_email_tls="none",
        alert_email_from="crimeflow@example.org",
        alert_email_to="ops@example.org,oncall@example.org",
        api_public_url=API,
        mlflow_public_url=MLFLOW,
        prefect_public_url=PREFECT,
        _env_file=None,
    )


def test_ensure_alerts_is_idempotent_and_off_without_a_channel(prefect_api, settings):
    from prefect.client.orchestration import get_client

    first = ensure_alerts(settings)
    second = ensure_alerts(settings)
    assert len(first) == len(alerts(settings)) == 5
    assert second == first
    with get_client(sync_client=True) as client:
        for alert in alerts(settings):
            assert len(client.read_automations_by_name(alert.name)) == 1
        rejected = client.read_automation(first[2])
        assert rejected.name == REJECTED_AUTOMATION
        assert rejected.trigger.expect == {MODEL_REJECTED}
        assert rejected.trigger.match.model_dump() == {
            "prefect.resource.id": f"crimeflow.model.{settings.model_name}"
        }
        # One action per channel: the webhook and the email block.
        assert [action.type for action in rejected.actions] == ["send-notification"] * 2
        failed = client.read_automation(first[4])
        assert failed.name == FAILED_AUTOMATION
        assert len(failed.trigger.match_related) == 2
    no_channel = settings.replace(alert_webhook_url=None, alert_email_host="")
    assert ensure_alerts(no_channel) == []


def emit_decisions(model: str) -> str:
    """Emit the four model events from inside one flow run, as the loop's flows do; its id."""
    from prefect import flow, runtime
    from prefect.events.worker import EventsWorker

    gate = {"version": "7", "previous_version": "6", "candidate_pr_auc": 0.61}
    events = [
        (DRIFT_DETECTED, "6", {
            "model_version": "6", "drift_share": 0.5, "drifted_columns": "beat,ward",
            "drifted_columns_count": 2, "current_rows": 400, "window_start": "2026-04-01",
            "window_end": "2026-05-01", "report_url": f"{API}/reports/r-1"}),
        (MODEL_PROMOTED, "7", {**gate, "reason": "drift (report r-1)", "reasons": "",
                               "report_url": f"{API}/reports/r-1"}),
        (MODEL_REJECTED, "7", {**gate, "reason": "manual", "reasons": "pr_auc too low"}),
        (MODEL_ROLLED_BACK, "6", {"champion": "6", "rolled_back": "7", "reason": "bad calls"}),
    ]  # fmt: skip

    @flow(name="alerts-e2e-decisions")
    def decisions() -> str:
        for event, version, payload in events:
            assert emit(event, model, version, payload) is not None
        return str(runtime.flow_run.id)

    # The events worker is a process-wide singleton that keeps the API URL it started with:
    # stop any earlier one so these events go to the test server, then send them now.
    EventsWorker.drain_all()
    run_id = decisions()
    EventsWorker.drain_all()
    return run_id


def fail_deployment_runs(marker: str) -> str:
    """Fail a run of another project's deployment, then of a crimeflow one; the latter's id."""
    from prefect.client.orchestration import get_client
    from prefect.states import Failed

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("alerts-e2e-failing")
        run_id = ""
        for name, tags in (("other", ["other-project"]), ("ours", ["crimeflow", "training"])):
            deployment = client.create_deployment(flow_id, f"{name}-{marker}", tags=tags)
            run = client.create_flow_run_from_deployment(deployment, name=f"{name}-{marker}")
            # The server emits prefect.flow-run.Failed with the deployment and its tags related.
            client.set_flow_run_state(run.id, Failed(message=f"boom {marker}"), force=True)
            run_id = str(run.id)
    return run_id


def test_every_alert_reaches_the_webhook_and_the_mailbox(
    prefect_api, settings, receiver, smtp_sink
):
    from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook

    ensure_alerts(settings)
    # Both blocks keep their URL (token, SMTP login) as a secret, not in plain fields.
    assert CustomWebhookNotificationBlock.load(WEBHOOK_BLOCK).secrets.get_secret_value() == {
        "url": receiver.url
    }
    assert SlackWebhook.load(EMAIL_BLOCK).url.get_secret_value().startswith("mailto://127.0.0.1")

    model, marker = settings.model_name, uuid.uuid4().hex[:10]
    run_id = emit_decisions(model)
    failed_run_id = fail_deployment_runs(marker)
    run_link = f"{PREFECT}/runs/flow-run/{run_id}"
    version = f"{MLFLOW}/#/models/{model}/versions/"
    expected = {
        f"crimeflow: drift detected on {model} v6": [
            "Reason: 50.0% of monitored columns drifted (2: beat,ward) in 400 logged",
            f"Drift report: {API}/reports/r-1\n",
            f"Model in MLflow: {version}6\n",
            f"Drift check run: {run_link}\n",
        ],
        f"crimeflow: {model} v7 promoted": [
            "Reason: drift (report r-1); every gate check passed.",
            f"Candidate in MLflow: {version}7\n",
            f"Champion in MLflow: {version}6\n",
            f"Drift report: {API}/reports/r-1\n",
            f"Retrain run: {run_link}\n",
        ],
        f"crimeflow: {model} v7 rejected": [
            "Reasons: pr_auc too low\nTrigger: manual\n",
            f"Candidate in MLflow: {version}7\n",
            f"Retrain run: {run_link}\n",
        ],
        f"crimeflow: {model} rolled back to v6": [
            "rolled back to v6, withdrawing v7;",
            "Reason: bad calls\n",
            f"Withdrawn version in MLflow: {version}7\n",
            f"Rollback run: {run_link}\n",
        ],
        f"crimeflow: flow run ours-{marker} (alerts-e2e-failing) failed": [
            f"(deployment ours-{marker}) failed.",
            f"State: Failed: boom {marker}\n",
            f"Prefect run: {PREFECT}/runs/flow-run/{failed_run_id}\n",
        ],
    }
    for subject, lines in expected.items():
        posted = wait_for(receiver.received, lambda body, s=subject: body["subject"] == s)
        assert all(line in posted["body"] for line in lines), (lines, posted["body"])
        assert posted["text"] == f"{subject}\n\n{posted['body']}"
        # Apprise mails each recipient separately.
        for to in ("ops@example.org", "oncall@example.org"):
            mail = wait_for(
                smtp_sink.received, lambda m, s=subject, t=to: (m["Subject"], m["To"]) == (s, t)
            )
            text = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")
            assert all(line in text for line in lines), (lines, text)
            assert mail["From"] == "crimeflow@example.org"
        assert "Drift report: \n" not in posted["body"]
    # The other project's failed run had the time to alert, and did not.
    time.sleep(2)
    assert not any(f"other-{marker}" in body["subject"] for body in receiver.received())
    assert not any(f"other-{marker}" in mail["Subject"] for mail in smtp_sink.received())
    assert set(receiver.paths) == {"/hooks/crimeflow?token=t0k3n"}
