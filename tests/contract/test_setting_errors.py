"""A bad setting value as one line that names the CRIMEFLOW_* variable (no traceback)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from crimeflow.contract.setting_errors import describe, env_name
from crimeflow.contract.settings import Settings


def failure(monkeypatch: pytest.MonkeyPatch, **env: str) -> ValidationError | SettingsError:
    """The error Settings raises for the given CRIMEFLOW_* variables."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises((ValidationError, SettingsError)) as caught:
        Settings(_env_file=None)
    return caught.value


@pytest.mark.parametrize(
    ("loc", "name"),
    [
        (("gate", "tolerance"), "CRIMEFLOW_GATE_TOLERANCE"),
        (("api", "rate_limit_per_minute"), "CRIMEFLOW_RATE_LIMIT_PER_MINUTE"),  # unprefixed
        (("api", "cors_allow_origins", 0), "CRIMEFLOW_CORS_ALLOW_ORIGINS"),
        (("home",), "CRIMEFLOW_HOME"),
        (("gate",), "CRIMEFLOW_GATE_*"),
    ],
)
def test_env_name_of_an_error_location(loc, name):
    assert env_name(loc) == name


@pytest.mark.parametrize(
    ("env", "name", "words"),
    [
        ({"CRIMEFLOW_GATE_TOLERANCE": "abc"}, "CRIMEFLOW_GATE_TOLERANCE", "valid number"),
        ({"CRIMEFLOW_API_PORT": "-1"}, "CRIMEFLOW_API_PORT", "greater than or equal to 1"),
        ({"CRIMEFLOW_PREFECT_PORT": "70000"}, "CRIMEFLOW_PREFECT_PORT", "less than or equal"),
        ({"CRIMEFLOW_RATE_LIMIT_PER_MINUTE": "x"}, "CRIMEFLOW_RATE_LIMIT_PER_MINUTE", "integer"),
        ({"CRIMEFLOW_GATE_PRIMARY_METRIC": "f1"}, "CRIMEFLOW_GATE_PRIMARY_METRIC", "one of"),
        ({"CRIMEFLOW_CORS_ALLOW_ORIGINS": "[bad"}, "CRIMEFLOW_CORS_ALLOW_ORIGINS", "parse"),
        ({"CRIMEFLOW_GATE": "abc"}, "CRIMEFLOW_GATE", "parse"),
    ],
)
def test_describe_names_the_variable_on_one_line(monkeypatch, env, name, words):
    line = describe(failure(monkeypatch, **env))
    assert name in line
    assert words in line
    assert "\n" not in line


def test_describe_lists_every_bad_variable(monkeypatch):
    line = describe(failure(monkeypatch, CRIMEFLOW_API_PORT="0", CRIMEFLOW_GATE_TOLERANCE="abc"))
    assert "CRIMEFLOW_API_PORT='0'" in line
    assert "CRIMEFLOW_GATE_TOLERANCE='abc'" in line


def test_describe_shows_no_secret_value(monkeypatch):
    # A secret that fails validation (a JSON group carrying it) must not be echoed back.
    error = failure(monkeypatch, CRIMEFLOW_SOCRATA='{"app_token": 5, "page_size": "tok-s3cr3t"}')
    line = describe(error)
    assert "CRIMEFLOW_SOCRATA_PAGE_SIZE" in line
    assert "CRIMEFLOW_SOCRATA_APP_TOKEN" in line
    assert "5," not in line and "=5" not in line
