"""Alertmanager of the compose stack: its config, how compose hands it the webhook URL, delivery.

The static checks need nothing installed. `amtool check-config` and the delivery test use the
Debian package `prometheus-alertmanager` (0.25) when it is there: the delivery test starts the
real alertmanager on the repository's config (only the URL file and the wait before the first
message changed), posts an alert to its API and receives the Slack-format message at a local
webhook, as a Slack-, Mattermost- or Rocket.Chat-style incoming webhook would.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from crimeflow.cli.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deployments" / "alertmanager" / "alertmanager.yml"
COMPOSE = ROOT / "compose.yaml"


def load_yaml(path: Path) -> Any:
    """One YAML document."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def url_files(config: Mapping[str, Any]) -> set[str]:
    """Every file a receiver reads its URL from."""
    return {
        spec[key]
        for receiver in config["receivers"]
        for kind, specs in receiver.items()
        if kind.endswith("_configs")
        for spec in specs
        for key in ("api_url_file", "url_file", "webhook_url_file")
        if key in spec
    }


def compose_wiring_errors(compose: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    """The alertmanager service writes, on a tmpfs, the URL file its config reads, from .env."""
    service = compose["services"]["alertmanager"]
    script = "\n".join(service.get("command") or [])
    errors = []
    files = url_files(config)
    if not files:
        errors.append("alertmanager.yml: no receiver reads its URL from a file")
    for path in sorted(files):
        if not re.search(rf'"\$\$ALERT_WEBHOOK_URL"\s*>\s*{re.escape(path)}\b', script):
            errors.append(f"alertmanager: the start script does not write {path}")
        if not any(
            path.startswith(mount.rstrip("/") + "/") for mount in service.get("tmpfs") or []
        ):
            errors.append(f"alertmanager: {path} is not on a tmpfs")
    if service["environment"].get("ALERT_WEBHOOK_URL") != "${CRIMEFLOW_ALERT_WEBHOOK_URL:-}":
        errors.append("alertmanager: ALERT_WEBHOOK_URL is not CRIMEFLOW_ALERT_WEBHOOK_URL")
    match = re.search(r"--config\.file=(\S+)", script)
    mounted = {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes") or []}
    if match is None or mounted.get(match[1]) != "./deployments/alertmanager/alertmanager.yml":
        errors.append("alertmanager: does not run the repository's alertmanager.yml")
    if "umask 077" not in script:
        errors.append("alertmanager: the URL file is readable by others")
    return errors


def test_config_routes_everything_to_one_receiver_reading_its_url_from_a_file() -> None:
    config = load_yaml(CONFIG)
    assert config["route"]["receiver"] == "crimeflow-webhook"
    assert "routes" not in config["route"]
    assert [r["name"] for r in config["receivers"]] == ["crimeflow-webhook"]
    spec = config["receivers"][0]["slack_configs"][0]
    assert spec["send_resolved"] is True
    assert "api_url" not in spec  # the secret URL is never in the file
    assert url_files(config) == {"/run/alertmanager/webhook-url"}


def test_compose_hands_the_webhook_url_to_alertmanager() -> None:
    assert compose_wiring_errors(load_yaml(COMPOSE), load_yaml(CONFIG)) == []


def test_wiring_checker_rejects_broken_copies() -> None:
    compose, config = load_yaml(COMPOSE), load_yaml(CONFIG)
    broken = copy.deepcopy(compose)
    service = broken["services"]["alertmanager"]
    service["command"] = [service["command"][0].replace("umask 077", "")]
    service["tmpfs"] = ["/tmp"]
    service["environment"]["ALERT_WEBHOOK_URL"] = "https://hooks.example.org/T0/B0/x"
    moved = copy.deepcopy(config)
    moved["receivers"][0]["slack_configs"][0]["api_url_file"] = "/alertmanager/url"
    errors = compose_wiring_errors(broken, moved)
    assert "alertmanager: the start script does not write /alertmanager/url" in errors
    assert "alertmanager: /alertmanager/url is not on a tmpfs" in errors
    assert "alertmanager: ALERT_WEBHOOK_URL is not CRIMEFLOW_ALERT_WEBHOOK_URL" in errors
    assert "alertmanager: the URL file is readable by others" in errors


def test_amtool_accepts_the_config() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool (Debian package prometheus-alertmanager) is not installed")
    result = subprocess.run(
        [amtool, "check-config", str(CONFIG)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


class SlackHook:
    """An incoming webhook on 127.0.0.1 that records JSON bodies and answers `ok` like Slack."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                hook.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/T0/B0/secret"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hook() -> Iterator[SlackHook]:
    hook = SlackHook()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


@pytest.mark.e2e
@pytest.mark.slow
def test_a_posted_alert_reaches_the_webhook_as_a_slack_message(
    hook: SlackHook, tmp_path: Path
) -> None:
    binary = shutil.which("alertmanager") or shutil.which("prometheus-alertmanager")
    if binary is None:
        pytest.skip("alertmanager (Debian package prometheus-alertmanager) is not installed")
    config = load_yaml(CONFIG)
    url_file = tmp_path / "webhook-url"
    url_file.write_text(hook.url + "\n", encoding="utf-8")
    config["receivers"][0]["slack_configs"][0]["api_url_file"] = str(url_file)
    config["route"]["group_wait"] = "1s"  # not 30 s: the rest is the repository's config
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [
        binary,
        f"--config.file={tmp_path / 'alertmanager.yml'}",
        f"--storage.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.external-url=http://localhost:9093",
        "--cluster.listen-address=",
    ]
    log = (tmp_path / "alertmanager.log").open("wb")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_ready(f"{base}/-/ready", process)
        alert = {
            "labels": {"alertname": "CrimeflowDriftDetected", "severity": "warning"},
            "annotations": {
                "summary": "Drift detected in the API's traffic",
                "description": "drift share 0.40 over 0.25",
            },
            "generatorURL": "http://localhost:9090/graph?g0.expr=crimeflow_drift_detected",
        }
        request = urllib.request.Request(
            f"{base}/api/v2/alerts",
            data=json.dumps([alert]).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        deadline = time.monotonic() + 30
        while not hook.bodies and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
    assert hook.bodies, (tmp_path / "alertmanager.log").read_text(encoding="utf-8")
    attachment = hook.bodies[0]["attachments"][0]
    assert attachment["title"] == "[FIRING] CrimeflowDriftDetected"
    assert attachment["title_link"].startswith("http://localhost:9093/#/alerts?receiver=")
    assert "*Drift detected in the API's traffic*" in attachment["text"]
    assert "drift share 0.40 over 0.25" in attachment["text"]
    assert "<http://localhost:9090/graph?g0.expr=crimeflow_drift_detected|" in attachment["text"]
    assert attachment["color"] == "danger"
    assert hook.bodies[0]["username"] == "crimeflow"


def wait_until_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """Poll `url` until it answers 200; fail early when the process exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"alertmanager exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} not ready within {timeout_s} s")
