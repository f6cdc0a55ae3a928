"""The stack's pure parts: settings handed to children, commands, URLs; `config show`."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import SecretStr
from typer.testing import CliRunner

from crimeflow.cli.main import app
from crimeflow.cli.stack import (
    Stack,
    api_command,
    mlflow_ui_command,
    settings_environment,
)
from crimeflow.contract.settings import Settings, local_url


def test_settings_environment_round_trips(monkeypatch, tmp_path):
    settings = Settings(
        home=tmp_path / "h",
        api_port=9123,
        api_key=SecretStr("k3y"),
        cors_allow_origins=["https://a.example"],
        drift_prediction_triggers=False,
        _env_file=None,
    )
    env = settings_environment(settings)
    assert env["CRIMEFLOW_API_KEY"] == "k3y"
    assert env["CRIMEFLOW_HOME"] == str((tmp_path / "h").resolve())
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    again = Settings(_env_file=None)
    assert again.model_dump() == settings.model_dump()
    assert again.api.key.get_secret_value() == "k3y"


def test_mlflow_ui_uses_the_embedded_store_and_artifact_root(tmp_path):
    settings = Settings(home=tmp_path, mlflow_port=5123, _env_file=None)
    command = mlflow_ui_command(settings)
    assert command[1] == "server"
    assert command[command.index("--backend-store-uri") + 1] == settings.mlflow.tracking_uri
    assert command[command.index("--default-artifact-root") + 1] == settings.mlflow.artifact_root
    assert command[command.index("--port") + 1] == "5123"
    assert Path(command[0]).name == "mlflow"


def test_api_command_and_urls(tmp_path):
    settings = Settings(home=tmp_path, api_host="0.0.0.0", api_port=8123, _env_file=None)
    assert api_command(settings)[1:] == [
        "api",
        "--host",
        "0.0.0.0",
        "--port",
        "8123",
        "--workers",
        "1",
    ]
    assert local_url("0.0.0.0", 8123) == "http://127.0.0.1:8123"
    assert local_url("127.0.0.2", 1) == "http://127.0.0.2:1"


def test_children_share_one_prefect_api(tmp_path):
    stack = Stack(Settings(home=tmp_path, prefect_port=4321, _env_file=None))
    env = stack._child_env()
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4321/api"
    assert env["CRIMEFLOW_PREFECT_API_URL"] == env["PREFECT_API_URL"]
    assert env["PREFECT_HOME"] == str((tmp_path / "prefect").resolve())
    assert stack.close() == {}


def test_config_show_prints_the_prefect_api_url(monkeypatch, tmp_path):
    from crimeflow.contract.settings import get_settings

    monkeypatch.setenv("CRIMEFLOW_PREFECT_PORT", "4999")
    monkeypatch.delenv("CRIMEFLOW_PREFECT_API_URL", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["config", "show"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["prefect_api_url"] == "http://127.0.0.1:4999/api"
