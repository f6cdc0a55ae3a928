"""Where the flow runs of a CLI command go: the configured server when it answers, else ephemeral.

A small local HTTP server answers `/api/health` as a Prefect server does; the choice only reads
that endpoint (the e2e loop test runs `crimeflow monitor` against a real server).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from crimeflow.cli.prefect_server import flow_runs_reporting
from crimeflow.cli.processes import free_port
from crimeflow.contract.redact import MASK
from crimeflow.contract.settings import Settings


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/api/health" else 404)
        self.end_headers()
        self.wfile.write(b"true")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def healthy_port() -> Iterator[int]:
    """A port whose /api/health answers 200."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def choose(settings: Settings, own: str | None) -> tuple[str | None, str | None, list[str]]:
    """(yielded URL, PREFECT_API_URL inside the block, lines said) with Prefect's own setting."""
    lines: list[str] = []
    updates = {PREFECT_API_URL: own} if own else {}
    restore = set() if own else {PREFECT_API_URL}
    with (
        temporary_settings(updates=updates, restore_defaults=restore),
        flow_runs_reporting(settings, lines.append) as url,
    ):
        inside = PREFECT_API_URL.value()
    return url, inside, lines


def test_the_server_of_up_when_it_answers(healthy_port, tmp_path):
    settings = Settings(home=tmp_path, prefect_port=healthy_port, _env_file=None)
    api = f"http://127.0.0.1:{healthy_port}/api"
    assert choose(settings, None) == (api, api, [f"Prefect: {api} (the server of `crimeflow up`)"])


def test_an_explicit_url_beats_prefects_own_setting(healthy_port, tmp_path):
    api = f"http://127.0.0.1:{healthy_port}/api"
    settings = Settings(home=tmp_path, prefect_api_url=api, _env_file=None)
    url, inside, lines = choose(settings, "http://127.0.0.1:1/api")
    assert (url, inside) == (api, api)
    assert lines == [f"Prefect: {api} (CRIMEFLOW_PREFECT_API_URL)"]


def test_prefects_own_setting_beats_the_derived_url(healthy_port, tmp_path):
    settings = Settings(home=tmp_path, prefect_port=healthy_port, _env_file=None)
    own = "http://127.0.0.1:9/api"
    assert choose(settings, own) == (None, own, [f"Prefect: {own} (PREFECT_API_URL)"])


def test_ephemeral_when_nothing_answers_and_the_line_says_so(tmp_path):
    settings = Settings(home=tmp_path, prefect_port=free_port(), _env_file=None)
    url, inside, [line] = choose(settings, None)
    assert url is None and not inside
    assert line.startswith("Prefect: ephemeral")
    assert f"no server answers at {settings.prefect.api_url}" in line


def test_the_printed_url_is_masked(healthy_port, tmp_path):
    api = f"http://user:s3cr3t@127.0.0.1:{healthy_port}/api"
    settings = Settings(home=tmp_path, prefect_api_url=api, _env_file=None)
    url, _, [line] = choose(settings, None)
    assert url == api
    assert "s3cr3t" not in line and f"user:{MASK}@" in line
