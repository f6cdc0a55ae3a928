"""The stack's pure parts: settings handed to children, commands, URLs; `config show`."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import SecretStr
from typer.testing import CliRunner

from crimeflow.cli import stack as stack_module
from crimeflow.cli.main import app
from crimeflow.cli.stack import (
    Stack,
    api_command,
    mlflow_server_environment,
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


PRODUCTION = {
    "mlflow_port": 5123,
    "mlflow_backend_store_uri": "postgresql+psycopg://mlflow:pw@db:5432/mlflow",
    "mlflow_artifacts_destination": "s3://crimeflow-mlflow/artifacts",
    "lake_url": "s3://crimeflow-lake/lake",
    "s3_bucket_block": "crimeflow-lake",
    "s3_endpoint_url": "http://s3:8333",
    "s3_access_key_id": "AKID",
    "s3_secret_access_key": "s3cr3t",
    "prefect_database_url": "postgresql+asyncpg://prefect:pw@db:5432/prefect",
}


def test_the_mlflow_server_keeps_its_store_password_off_the_command_line(tmp_path):
    settings = Settings(home=tmp_path, **PRODUCTION, _env_file=None)
    command = mlflow_ui_command(settings)
    assert "--backend-store-uri" not in command
    assert not any("pw@" in arg for arg in command)
    assert "--serve-artifacts" in command
    assert command[command.index("--artifacts-destination") + 1] == (
        "s3://crimeflow-mlflow/artifacts"
    )
    env = mlflow_server_environment(settings)
    assert env == {
        "MLFLOW_BACKEND_STORE_URI": "postgresql+psycopg://mlflow:pw@db:5432/mlflow",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MLFLOW_S3_ENDPOINT_URL": "http://s3:8333",
        "AWS_ACCESS_KEY_ID": "AKID",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t",
    }
    # Clients talk to that server.
    assert settings.mlflow.tracking_uri == "http://127.0.0.1:5123"
    assert mlflow_server_environment(Settings(home=tmp_path, _env_file=None)) == {}


def test_with_lake_blocks_no_child_gets_the_s3_keys(tmp_path, monkeypatch):
    # Even keys the user exported for `crimeflow up` (to write the blocks) stay with it.
    monkeypatch.setenv("CRIMEFLOW_S3_SECRET_ACCESS_KEY", "s3cr3t")
    stack = Stack(Settings(home=tmp_path, **PRODUCTION, _env_file=None), worker=True)
    env = stack._child_env()
    assert "CRIMEFLOW_S3_ACCESS_KEY_ID" not in env
    assert "CRIMEFLOW_S3_SECRET_ACCESS_KEY" not in env
    assert env["CRIMEFLOW_S3_BUCKET_BLOCK"] == "crimeflow-lake"
    assert env["CRIMEFLOW_MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5123"
    embedded = Stack(Settings(home=tmp_path, s3_access_key_id="AKID", _env_file=None))
    assert embedded._child_env()["CRIMEFLOW_S3_ACCESS_KEY_ID"] == "AKID"


def test_up_steps_of_each_form(tmp_path, monkeypatch):
    monkeypatch.setattr(stack_module, "prometheus_binary", lambda: None)
    embedded = Stack(Settings(home=tmp_path, _env_file=None))
    assert [step.__name__ for step in embedded.steps()] == [
        "start_prefect",
        "start_mlflow_ui",
        "start_serve",
        "start_api",
    ]
    production = Stack(Settings(home=tmp_path, **PRODUCTION, _env_file=None), worker=True)
    assert [step.__name__ for step in production.steps()] == [
        "start_prefect",
        "apply_lake_blocks",
        "start_mlflow_ui",
        "start_worker",
        "start_api",
    ]


def test_up_starts_prometheus_last_when_it_is_installed(tmp_path, monkeypatch):
    monkeypatch.setattr(stack_module, "prometheus_binary", lambda: "/usr/bin/prometheus")
    steps = Stack(Settings(home=tmp_path, _env_file=None)).steps()
    assert [step.__name__ for step in steps][-2:] == ["start_api", "start_prometheus"]


def test_the_banner_shows_prometheus_only_when_it_runs(tmp_path):
    stack = Stack(Settings(home=tmp_path, _env_file=None))
    stack.urls = {"api": "http://127.0.0.1:8000"}
    assert "Prometheus" not in stack_module._banner(stack)
    stack.urls["prometheus"] = "http://127.0.0.1:9090"
    assert "  Prometheus   http://127.0.0.1:9090" in stack_module._banner(stack).splitlines()


def test_the_prefect_server_gets_its_database_only_when_one_is_set(tmp_path):
    from crimeflow.cli.prefect_server import database_environment

    assert database_environment(Settings(home=tmp_path, _env_file=None)) == {}
    production = Settings(home=tmp_path, **PRODUCTION, _env_file=None)
    assert database_environment(production) == {
        "PREFECT_API_DATABASE_CONNECTION_URL": "postgresql+asyncpg://prefect:pw@db:5432/prefect"
    }


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
