"""Credentials out of text: one function masks URL passwords and secret parameters."""

from __future__ import annotations

import json

import pytest

from crimeflow.contract.redact import MASK, redact, without_credentials
from crimeflow.contract.settings import Settings
from tests.contract.test_settings import config_show


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://user:s3cr3t@mlflow:5000/api", f"http://user:{MASK}@mlflow:5000/api"),
        ("postgresql+psycopg://u:p@ss@db:5432/log", f"postgresql+psycopg://u:{MASK}@db:5432/log"),
        ("redis://:pw@127.0.0.1:6379/0", f"redis://:{MASK}@127.0.0.1:6379/0"),
        (
            "request to http://alice:hunter2@h/api?name=a failed",
            f"request to http://alice:{MASK}@h/api?name=a failed",
        ),
        (
            "https://b.s3.example/k?X-Amz-Credential=AK%2F1&X-Amz-Signature=abc&x=1",
            f"https://b.s3.example/k?X-Amz-Credential={MASK}&X-Amz-Signature={MASK}&x=1",
        ),
        ("https://h/p?access_token=zz#frag", f"https://h/p?access_token={MASK}#frag"),
        ("host=h password=pw dbname=d", f"host=h password={MASK} dbname=d"),
        ('{"detail":"token=abc"}', f'{{"detail":"token={MASK}"}}'),
    ],
)
def test_redact_masks_credentials(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "sqlite:////tmp/home/mlflow.db",
        "http://u@host/x",  # a user name alone is not a secret
        "write to ops@example.org about sslmode=require",
        "http://127.0.0.1:5000",
    ],
)
def test_redact_leaves_text_without_credentials_alone(text: str) -> None:
    assert redact(text) == text


def test_without_credentials_gives_an_openable_link() -> None:
    assert without_credentials("https://user:pw@MLflow.example:5000/x") == (
        "https://mlflow.example:5000/x"
    )
    assert without_credentials("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


CREDENTIAL_URLS = {
    "CRIMEFLOW_MLFLOW_TRACKING_URI": "http://ml:mlpass1@mlflow.internal:5000",
    "CRIMEFLOW_PREDICTION_LOG_URL": "postgresql+psycopg://app:dbpass2@db.internal:5432/log",
    "CRIMEFLOW_PREFECT_API_URL": "https://pf:pfpass3@prefect.internal/api",
    "CRIMEFLOW_S3_ENDPOINT_URL": "https://s3user:s3pass4@s3.internal",
    "CRIMEFLOW_SOCRATA_URL": "https://so:sopass5@soda.internal",
}
PASSWORDS = ("mlpass1", "dbpass2", "pfpass3", "s3pass4", "sopass5")


def test_config_show_masks_credentials_inside_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CREDENTIAL_URLS.items():
        monkeypatch.setenv(name, value)
    result = config_show()
    assert result.exit_code == 0, result.output
    assert not [p for p in PASSWORDS if p in result.output]
    shown = json.loads(result.output)
    # Still useful: everything but the password is shown.
    assert shown["mlflow_tracking_uri"] == f"http://ml:{MASK}@mlflow.internal:5000"
    assert shown["prediction_log_url"] == f"postgresql+psycopg://app:{MASK}@db.internal:5432/log"
    # Links people open are derived without credentials at all.
    assert shown["mlflow_public_url"] == "http://mlflow.internal:5000"
    assert shown["prefect_public_url"] == "https://prefect.internal"


def test_settings_keep_the_credentials_for_the_clients() -> None:
    settings = Settings(mlflow_tracking_uri=CREDENTIAL_URLS["CRIMEFLOW_MLFLOW_TRACKING_URI"])
    assert settings.mlflow.tracking_uri == CREDENTIAL_URLS["CRIMEFLOW_MLFLOW_TRACKING_URI"]
