"""`crimeflow train` against an unreachable MLflow: one line naming the setting, in seconds."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crimeflow.cli.main import app
from tests.stores.test_model_integrity import closed_port


def test_train_fails_fast_when_mlflow_is_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crimeflow.contract import settings as settings_module

    monkeypatch.setenv("CRIMEFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CRIMEFLOW_MLFLOW_TRACKING_URI", f"http://u:pa55@127.0.0.1:{closed_port()}")
    settings_module.get_settings.cache_clear()
    started = time.monotonic()
    try:
        result = CliRunner().invoke(app, ["train"])
    finally:
        settings_module.get_settings.cache_clear()
    assert time.monotonic() - started < 10
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: the MLflow registry at http://u:********@127.0.0.1:")
    assert "CRIMEFLOW_MLFLOW_TRACKING_URI" in line and "pa55" not in line
