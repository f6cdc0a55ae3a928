"""The local Prometheus of `crimeflow up`: the config it writes, its argv, promtool's verdict."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from crimeflow.cli.prometheus import (
    RULES_DIR,
    ScrapeJob,
    prometheus_command,
    prometheus_config,
    rule_files,
    write_prometheus_config,
)


def test_rule_files_are_the_repos():
    assert [path.name for path in rule_files()] == ["alerts.yml", "recording.yml"]
    assert RULES_DIR.parts[-3:] == ("deployments", "prometheus", "rules")
    assert rule_files(Path("/nonexistent")) == []


def test_config_scrapes_the_jobs_with_the_rules_by_absolute_path(tmp_path):
    config = prometheus_config(
        [ScrapeJob("crimeflow-api", ("127.0.0.1:8123",))], rule_files(), interval_s=1
    )
    assert config["global"] == {"scrape_interval": "1s", "evaluation_interval": "1s"}
    assert all(Path(path).is_absolute() and Path(path).is_file() for path in config["rule_files"])
    assert config["scrape_configs"] == [
        {
            "job_name": "crimeflow-api",
            "metrics_path": "/metrics",
            "static_configs": [{"targets": ["127.0.0.1:8123"]}],
        }
    ]
    assert prometheus_config([], [], interval_s=0.5)["global"]["scrape_interval"] == "500ms"
    path = write_prometheus_config(tmp_path / "prom", config)
    assert yaml.safe_load(path.read_text()) == config


def test_promtool_accepts_the_written_config(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    config = prometheus_config([ScrapeJob("crimeflow-api", ("127.0.0.1:8000",))], rule_files())
    path = write_prometheus_config(tmp_path, config)
    result = subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout + result.stderr


def test_command_keeps_data_and_listens_where_told(tmp_path):
    command = prometheus_command(
        "/usr/bin/prometheus", tmp_path / "p.yml", tmp_path / "d", "127.0.0.1", 9191
    )
    assert command == [
        "/usr/bin/prometheus",
        f"--config.file={tmp_path / 'p.yml'}",
        f"--storage.tsdb.path={tmp_path / 'd'}",
        "--web.listen-address=127.0.0.1:9191",
    ]
