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


def test_train_prints_the_honest_column_and_the_model_card(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextlib

    from crimeflow.cli import main as cli_main
    from crimeflow.contract import settings as settings_module

    metrics = {n: 0.5 for n in ("roc_auc", "pr_auc", "mcc", "f1", "precision", "recall")}
    metrics |= {"brier": 0.1, "log_loss": 0.3, "mean_predicted": 0.2, "positive_rate": 0.2}
    result = {
        "version": "3",
        "classifier": "logistic_regression",
        "holdout": metrics,
        "baseline": metrics,
        "holdout_excluding_arrest_defined": {"roc_auc": 0.4321},
        "promoted": False,
        "run_url": "http://m/run",
        "version_url": "http://m/v3",
        "card_url": "http://m/run/artifacts/model_card.md",
    }
    monkeypatch.setenv("CRIMEFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("crimeflow.stores.registry.check_registry_reachable", lambda _: None)
    monkeypatch.setattr("flows.train.train", lambda **_: result)
    monkeypatch.setattr(cli_main, "_reporting", contextlib.nullcontext)
    settings_module.get_settings.cache_clear()
    try:
        output = CliRunner().invoke(app, ["train"]).output
    finally:
        settings_module.get_settings.cache_clear()
    assert "excl. arrest-defined" in output.splitlines()[1]
    assert [line.split() for line in output.splitlines() if line.startswith("roc_auc")] == [
        ["roc_auc", "0.5000", "0.4321", "0.5000"]
    ]
    assert "Model card: http://m/run/artifacts/model_card.md" in output
