"""The settings object: env prefix, derived paths, masking, and .env.example kept in sync."""

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from crimeflow.cli.main import app
from crimeflow.contract.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_embedded_under_home(monkeypatch):
    monkeypatch.delenv("CRIMEFLOW_LAKE_URL", raising=False)
    monkeypatch.setenv("CRIMEFLOW_HOME", "/tmp/cf-home")
    settings = Settings(_env_file=None)
    assert settings.lake_url == "/tmp/cf-home/lake"
    assert settings.socrata_url == "https://data.cityofchicago.org"


def test_env_prefix_and_s3_lake(monkeypatch):
    monkeypatch.setenv("CRIMEFLOW_LAKE_URL", "s3://bucket/prefix")
    monkeypatch.setenv("CRIMEFLOW_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("CRIMEFLOW_S3_ACCESS_KEY_ID", "AKIA")
    monkeypatch.setenv("CRIMEFLOW_S3_SECRET_ACCESS_KEY", "s3cr3t")
    settings = Settings(_env_file=None)
    assert settings.lake_url == "s3://bucket/prefix"
    options = settings.s3_storage_options
    assert options["client_kwargs"]["endpoint_url"] == "http://127.0.0.1:9000"
    assert options["secret"] == "s3cr3t"


def test_masked_hides_secrets_only(monkeypatch):
    monkeypatch.setenv("CRIMEFLOW_SOCRATA_APP_TOKEN", "tok-123")
    masked = Settings(_env_file=None).masked()
    assert masked["socrata_app_token"] == "********"
    assert masked["s3_secret_access_key"] is None  # unset stays visible as unset
    assert "tok-123" not in json.dumps(masked)


def test_config_show_prints_masked_json(monkeypatch):
    monkeypatch.setenv("CRIMEFLOW_SOCRATA_APP_TOKEN", "tok-456")
    from crimeflow.contract import settings as settings_module

    settings_module.get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["config", "show"])
    finally:
        settings_module.get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["socrata_app_token"] == "********"
    assert "tok-456" not in result.output


def test_env_example_lists_every_setting():
    names = set(re.findall(r"^(CRIMEFLOW_[A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    expected = {f"CRIMEFLOW_{name.upper()}" for name in Settings.model_fields}
    assert names == expected


def test_readme_configuration_table_is_current():
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- settings-table:start -->") + len("<!-- settings-table:start -->")
    end = readme.index("<!-- settings-table:end -->")
    assert readme[start:end].strip() == Settings.markdown_table()
