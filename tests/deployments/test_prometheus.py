"""deployments/prometheus: promtool accepts the config and rules; the rules' unit tests pass.

promtool comes from the distribution's `prometheus` package (.ci/run installs it). Without it the
promtool tests skip, except in CI (CI=true), where a missing promtool is a failure. The
structural checks (every contract alert exists, is tested firing and quiet, has a runbook entry)
read the YAML and need no promtool.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deployments" / "prometheus"
CONFIG = PROMETHEUS / "prometheus.yml"
RULES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted(PROMETHEUS.glob("*_test.yml"))
OPERATIONS = ROOT / "docs" / "operations.md"

# The alert names of issue #15's metrics contract.
CONTRACT_ALERTS = {
    "CrimeflowApiLatencyP99High",
    "CrimeflowApi5xxRateHigh",
    "CrimeflowApiNotReady",
    "CrimeflowPredictionLogWriteErrors",
    "CrimeflowEtlStale",
    "CrimeflowDriftDetected",
    "CrimeflowModelRejected",
    "CrimeflowRetrainFailed",
    "CrimeflowChampionChanged",
}
CONTRACT_JOBS = {
    "crimeflow-api": "api:8000",
    "crimeflow-loop": "exporter:9108",
    "prefect-server": "prefect-server:4200",
    "mlflow": "mlflow:5000",
}


def promtool() -> str:
    """The promtool binary; skip without one, unless this is CI."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is not installed in CI (.ci/run installs `prometheus`)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return found


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """promtool with `args`, from the prometheus folder (rule paths are relative to it)."""
    command = [promtool(), *map(str, args)]
    return subprocess.run(
        command, cwd=PROMETHEUS, capture_output=True, text=True, timeout=120, check=False
    )


def load(path: Path) -> dict[str, Any]:
    """One YAML file."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules(kind: str) -> dict[str, dict[str, Any]]:
    """Every rule of the rule files by name; `kind` is "alert" or "record"."""
    found: dict[str, dict[str, Any]] = {}
    for path in RULES:
        for group in load(path)["groups"]:
            for rule in group["rules"]:
                if kind in rule:
                    found[rule[kind]] = rule
    return found


# --- promtool -------------------------------------------------------------------------------------


def test_promtool_checks_the_config_and_its_rule_files():
    result = run_promtool("check", "config", CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    # The config's rule_files are the rule files there are (checked with the config).
    assert f"{len(RULES)} rule files found" in result.stdout + result.stderr


def test_promtool_checks_the_rule_files():
    result = run_promtool("check", "rules", *RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rule_unit_tests_pass():
    assert [path.name for path in RULE_TESTS] == ["alerts_test.yml", "recording_test.yml"]
    result = run_promtool("test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS), result.stdout


def test_a_broken_rule_fails_its_unit_test(tmp_path: Path):
    # The unit tests are not vacuous: the p99 alert with a budget of 1 s no longer fires.
    copy = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS, copy)
    alerts = copy / "rules" / "alerts.yml"
    text = alerts.read_text(encoding="utf-8")
    assert 'crimeflow:request_seconds:p99_5m{route="/predict"} > 0.05' in text
    alerts.write_text(text.replace('{route="/predict"} > 0.05', '{route="/predict"} > 1'))
    result = subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yml"],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "CrimeflowApiLatencyP99High" in result.stdout + result.stderr


# --- structure ------------------------------------------------------------------------------------


def test_the_config_scrapes_the_contract_jobs_by_compose_service_name():
    config = load(CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(CONTRACT_JOBS)
    for name, target in CONTRACT_JOBS.items():
        assert jobs[name]["static_configs"] == [{"targets": [target]}], name
    assert jobs["prefect-server"]["metrics_path"] == "/api/metrics"
    assert sorted(config["rule_files"]) == sorted(f"rules/{path.name}" for path in RULES)


def test_every_contract_alert_is_defined_with_a_runbook_entry():
    alerts = rules("alert")
    assert set(alerts) == CONTRACT_ALERTS
    docs = OPERATIONS.read_text(encoding="utf-8")
    headings = set(re.findall(r"^#### (\w+)$", docs, re.M))
    for name, rule in alerts.items():
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], name
        assert f"Monitoring stack > {name}." in notes["description"], name
        assert notes["runbook_url"] == f"docs/operations.md#{name.lower()}", name
        assert name in headings, f"docs/operations.md has no '#### {name}' runbook entry"
        assert rule["labels"]["severity"] in {"page", "warning", "info"}, name


def test_every_alert_is_tested_firing_and_quiet():
    fired: set[str] = set()
    quiet: set[str] = set()
    for test in load(PROMETHEUS / "alerts_test.yml")["tests"]:
        for case in test.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert fired == CONTRACT_ALERTS
    assert quiet == CONTRACT_ALERTS


def test_every_recording_rule_is_tested():
    records = rules("record")
    assert records, "no recording rules"
    exprs = " ".join(
        case["expr"]
        for test in load(PROMETHEUS / "recording_test.yml")["tests"]
        for case in test.get("promql_expr_test", [])
    )
    untested = [name for name in records if name not in exprs]
    assert not untested, untested
    assert all(name.startswith("crimeflow:") for name in records)
