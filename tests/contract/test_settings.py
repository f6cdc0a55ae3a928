"""The settings object: env prefix, derived paths, masking, and .env.example kept in sync."""

import json
import os
import re
from operator import attrgetter
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner, Result

from crimeflow.cli.main import app
from crimeflow.contract.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_embedded_under_home(monkeypatch):
    monkeypatch.delenv("CRIMEFLOW_LAKE_URL", raising=False)
    monkeypatch.setenv("CRIMEFLOW_HOME", "/tmp/cf-home")
    settings = Settings(_env_file=None)
    assert settings.lake_url == "/tmp/cf-home/lake"
    assert settings.socrata.url == "https://data.cityofchicago.org"


def test_env_prefix_and_s3_lake(monkeypatch):
    monkeypatch.setenv("CRIMEFLOW_LAKE_URL", "s3://bucket/prefix")
    monkeypatch.setenv("CRIMEFLOW_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("CRIMEFLOW_S3_ACCESS_KEY_ID", "AKIA")
    monkeypatch.setenv("CRIMEFLOW_S3_SECRET_ACCESS_KEY", "s3cr3t")
    settings = Settings(_env_file=None)
    assert settings.lake_url == "s3://bucket/prefix"
    options = settings.s3.storage_options
    assert options["client_kwargs"]["endpoint_url"] == "http://127.0.0.1:9000"
    assert options["secret"] == "s3cr3t"


def test_masked_hides_secrets_only(monkeypatch):
    monkeypatch.setenv("CRIMEFLOW_SOCRATA_APP_TOKEN", "tok-123")
    masked = Settings(_env_file=None).masked()
    assert masked["socrata_app_token"] == "********"
    assert masked["s3_secret_access_key"] is None  # unset stays visible as unset
    assert "tok-123" not in json.dumps(masked)


def config_show() -> Result:
    """`crimeflow config show` run on the settings of the current environment."""
    get_settings.cache_clear()  # read the environment the test just set
    try:
        return CliRunner().invoke(app, ["config", "show"])
    finally:
        get_settings.cache_clear()


def test_config_show_prints_masked_json(monkeypatch):
    monkeypatch.setenv("CRIMEFLOW_SOCRATA_APP_TOKEN", "tok-456")
    result = config_show()
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["socrata_app_token"] == "********"
    assert "tok-456" not in result.output


def test_env_example_lists_every_setting():
    names = set(re.findall(r"^(CRIMEFLOW_[A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert names == set(Settings.env_names())


def test_the_documented_settings_table_is_current():
    page = (ROOT / "docs" / "operations.md").read_text()
    start = page.index("<!-- settings-table:start -->") + len("<!-- settings-table:start -->")
    end = page.index("<!-- settings-table:end -->")
    assert page[start:end].strip() == Settings.markdown_table()


# --- the frozen env names ------------------------------------------------------------------------
# Every CRIMEFLOW_* name users may have in a .env file, a k8s ConfigMap or a shell profile, with
# a value to set and where that value must show up. Written down before the settings were
# grouped; a rename here breaks users, so this table only ever grows.
FROZEN_ENV = {
    "CRIMEFLOW_HOME": ("home", "/tmp/cf-frozen", Path("/tmp/cf-frozen")),
    "CRIMEFLOW_LAKE_URL": ("lake_url", "s3://b/p", "s3://b/p"),
    "CRIMEFLOW_SOCRATA_URL": ("socrata.url", "http://127.0.0.1:9", "http://127.0.0.1:9"),
    "CRIMEFLOW_SOCRATA_APP_TOKEN": ("socrata.app_token", "t0k3n", "t0k3n"),
    "CRIMEFLOW_SOCRATA_CRIMES_DATASET": ("socrata.crimes_dataset", "aaaa-1111", "aaaa-1111"),
    "CRIMEFLOW_SOCRATA_STATIONS_DATASET": ("socrata.stations_dataset", "bbbb-2222", "bbbb-2222"),
    "CRIMEFLOW_SOCRATA_DISTRICTS_DATASET": ("socrata.districts_dataset", "cccc-3333", "cccc-3333"),
    "CRIMEFLOW_SOCRATA_COMMUNITY_AREAS_DATASET": (
        "socrata.community_areas_dataset",
        "dddd-4444",
        "dddd-4444",
    ),
    "CRIMEFLOW_SOCRATA_PAGE_SIZE": ("socrata.page_size", "7", 7),
    "CRIMEFLOW_SOCRATA_TIMEOUT_S": ("socrata.timeout_s", "2.5", 2.5),
    "CRIMEFLOW_SOCRATA_MAX_RETRIES": ("socrata.max_retries", "9", 9),
    "CRIMEFLOW_SOCRATA_BACKOFF_S": ("socrata.backoff_s", "0.25", 0.25),
    "CRIMEFLOW_S3_ENDPOINT_URL": ("s3.endpoint_url", "http://s3:9000", "http://s3:9000"),
    "CRIMEFLOW_S3_REGION": ("s3.region", "eu-west-3", "eu-west-3"),
    "CRIMEFLOW_S3_ACCESS_KEY_ID": ("s3.access_key_id", "AKIA", "AKIA"),
    "CRIMEFLOW_S3_SECRET_ACCESS_KEY": ("s3.secret_access_key", "s3cr3t", "s3cr3t"),
    "CRIMEFLOW_S3_BUCKET_BLOCK": ("s3.bucket_block", "lake-block", "lake-block"),
    "CRIMEFLOW_BACKFILL_MONTHS": ("etl.backfill_months", "3", 3),
    "CRIMEFLOW_TRAINING_WINDOW_MONTHS": ("etl.training_window_months", "4", 4),
    "CRIMEFLOW_MAX_BAD_ROW_SHARE": ("etl.max_bad_row_share", "0.5", 0.5),
    "CRIMEFLOW_LABEL_MATURITY_DAYS": ("etl.label_maturity_days", "45", 45),
    "CRIMEFLOW_ETL_MIN_MONTH_SHARE": ("etl.min_month_share", "0.5", 0.5),
    "CRIMEFLOW_MLFLOW_TRACKING_URI": ("mlflow.tracking_uri", "http://ml:5000", "http://ml:5000"),
    "CRIMEFLOW_MLFLOW_ARTIFACT_ROOT": ("mlflow.artifact_root", "s3://b/art", "s3://b/art"),
    "CRIMEFLOW_MLFLOW_PORT": ("mlflow.port", "5111", 5111),
    "CRIMEFLOW_MLFLOW_EXPERIMENT": ("mlflow.experiment", "exp", "exp"),
    "CRIMEFLOW_MLFLOW_REQUEST_TIMEOUT_S": ("mlflow.request_timeout_s", "7", 7),
    "CRIMEFLOW_MLFLOW_REQUEST_MAX_RETRIES": ("mlflow.request_max_retries", "2", 2),
    "CRIMEFLOW_MLFLOW_REQUEST_BACKOFF_FACTOR": ("mlflow.request_backoff_factor", "3", 3),
    "CRIMEFLOW_MLFLOW_BACKEND_STORE_URI": (
        "mlflow.backend_store_uri",
        "postgresql+psycopg://m:pw@db/mlflow",
        "postgresql+psycopg://m:pw@db/mlflow",
    ),
    "CRIMEFLOW_MLFLOW_ARTIFACTS_DESTINATION": (
        "mlflow.artifacts_destination",
        "s3://ml/artifacts",
        "s3://ml/artifacts",
    ),
    "CRIMEFLOW_MLFLOW_PUBLIC_URL": (
        "mlflow.public_url",
        "https://ml.example",
        "https://ml.example",
    ),
    "CRIMEFLOW_MODEL_NAME": ("model_name", "m1", "m1"),
    "CRIMEFLOW_REFERENCE_SAMPLE_ROWS": ("mlflow.reference_sample_rows", "123", 123),
    "CRIMEFLOW_API_HOST": ("api.host", "0.0.0.0", "0.0.0.0"),
    "CRIMEFLOW_API_PORT": ("api.port", "8111", 8111),
    "CRIMEFLOW_API_PUBLIC_URL": ("api.public_url", "https://api.example/", "https://api.example"),
    "CRIMEFLOW_API_WORKERS": ("api.workers", "3", 3),
    "CRIMEFLOW_API_KEY": ("api.key", "k3y", "k3y"),
    "CRIMEFLOW_MODEL_POLL_INTERVAL_S": ("api.model_poll_interval_s", "4.5", 4.5),
    "CRIMEFLOW_API_MODEL_LOAD_WAIT_S": ("api.model_load_wait_s", "2.5", 2.5),
    "CRIMEFLOW_API_DRAIN_TIMEOUT_S": ("api.drain_timeout_s", "12", 12),
    "CRIMEFLOW_PREDICT_BATCH_MAX_ROWS": ("api.predict_batch_max_rows", "11", 11),
    "CRIMEFLOW_MICROBATCH_MAX_ROWS": ("api.microbatch_max_rows", "12", 12),
    "CRIMEFLOW_MICROBATCH_WAIT_MS": ("api.microbatch_wait_ms", "3.5", 3.5),
    "CRIMEFLOW_RATE_LIMIT_PER_MINUTE": ("api.rate_limit_per_minute", "13", 13),
    "CRIMEFLOW_CORS_ALLOW_ORIGINS": (
        "api.cors_allow_origins",
        '["https://a.example","https://b.example"]',
        ["https://a.example", "https://b.example"],
    ),
    "CRIMEFLOW_REDIS_URL": ("api.redis_url", "redis://h:6379/2", "redis://h:6379/2"),
    "CRIMEFLOW_API_TRUSTED_PROXIES": (
        "api.trusted_proxies",
        '["10.0.0.0/8","127.0.0.1"]',
        ["10.0.0.0/8", "127.0.0.1"],
    ),
    "CRIMEFLOW_AUTH_JWT_SECRET": ("auth.jwt_secret", "j" * 32, "j" * 32),
    "CRIMEFLOW_AUTH_JWKS_URL": (
        "auth.jwks_url",
        "https://idp.example/jwks.json",
        "https://idp.example/jwks.json",
    ),
    "CRIMEFLOW_AUTH_ISSUER": ("auth.issuer", "https://idp.example/", "https://idp.example/"),
    "CRIMEFLOW_AUTH_AUDIENCE": ("auth.audience", "crimeflow-api", "crimeflow-api"),
    "CRIMEFLOW_AUTH_TTL_S": ("auth.ttl_s", "600", 600),
    "CRIMEFLOW_PREDICTION_LOG_URL": ("prediction_log.url", "postgresql://h/d", "postgresql://h/d"),
    "CRIMEFLOW_PREDICTION_LOG_BATCH_ROWS": ("prediction_log.batch_rows", "14", 14),
    "CRIMEFLOW_PREDICTION_LOG_BATCH_WAIT_MS": ("prediction_log.batch_wait_ms", "5.5", 5.5),
    "CRIMEFLOW_DRIFT_WINDOW_DAYS": ("drift.window_days", "15", 15),
    "CRIMEFLOW_DRIFT_MIN_CURRENT_ROWS": ("drift.min_current_rows", "16", 16),
    "CRIMEFLOW_DRIFT_MAX_ROWS": ("drift.max_rows", "17", 17),
    "CRIMEFLOW_DRIFT_SHARE": ("drift.share", "0.75", 0.75),
    "CRIMEFLOW_DRIFT_MAX_UNSEEN_SHARE": ("drift.max_unseen_share", "0.125", 0.125),
    "CRIMEFLOW_DRIFT_MIN_LABELLED_ROWS": ("drift.min_labelled_rows", "18", 18),
    "CRIMEFLOW_DRIFT_SEED": ("drift.seed", "19", 19),
    "CRIMEFLOW_DRIFT_PREDICTION_TRIGGERS": ("drift.prediction_triggers", "false", False),
    "CRIMEFLOW_PERFORMANCE_MAX_DROP": ("performance.max_drop", "0.1", 0.1),
    "CRIMEFLOW_PERFORMANCE_LOOKBACK_DAYS": ("performance.lookback_days", "30", 30),
    "CRIMEFLOW_PERFORMANCE_MIN_ROWS": ("performance.min_rows", "50", 50),
    "CRIMEFLOW_EVIDENTLY_WORKSPACE": ("evidently.workspace", "/tmp/ev", Path("/tmp/ev")),
    "CRIMEFLOW_EVIDENTLY_UI_PORT": ("evidently.ui_port", "8222", 8222),
    "CRIMEFLOW_PROMETHEUS_PORT": ("prometheus.port", "9191", 9191),
    "CRIMEFLOW_EXPORTER_HOST": ("exporter.host", "0.0.0.0", "0.0.0.0"),
    "CRIMEFLOW_EXPORTER_PORT": ("exporter.port", "9333", 9333),
    "CRIMEFLOW_PREFECT_PORT": ("prefect.port", "4333", 4333),
    "CRIMEFLOW_PREFECT_API_URL": ("prefect.api_url", "http://pf:4200/api", "http://pf:4200/api"),
    "CRIMEFLOW_ALERT_WEBHOOK_URL": ("prefect.alert_webhook_url", "http://hook", "http://hook"),
    "CRIMEFLOW_ALERT_EMAIL_HOST": ("prefect.alert_email_host", "smtp.example", "smtp.example"),
    "CRIMEFLOW_ALERT_EMAIL_PORT": ("prefect.alert_email_port", "2525", 2525),
    "CRIMEFLOW_ALERT_EMAIL_FROM": ("prefect.alert_email_from", "cf@x.example", "cf@x.example"),
    "CRIMEFLOW_ALERT_EMAIL_TO": (
        "prefect.alert_email_to",
        "a@x.example,b@x.example",
        "a@x.example,b@x.example",
    ),
    "CRIMEFLOW_ALERT_EMAIL_USERNAME": ("prefect.alert_email_username", "smtpuser", "smtpuser"),
    "CRIMEFLOW_ALERT_EMAIL_PASSWORD": ("prefect.alert_email_password", "smtp-pw", "smtp-pw"),
    "CRIMEFLOW_ALERT_EMAIL_TLS": ("prefect.alert_email_tls", "ssl", "ssl"),
    "CRIMEFLOW_PREFECT_DATABASE_URL": (
        "prefect.database_url",
        "postgresql+asyncpg://p:pw@db/prefect",
        "postgresql+asyncpg://p:pw@db/prefect",
    ),
    "CRIMEFLOW_PREFECT_PUBLIC_URL": (
        "prefect.public_url",
        "https://pf.example",
        "https://pf.example",
    ),
    "CRIMEFLOW_RETRAIN_DEBOUNCE_S": ("retrain.debounce_s", "20.5", 20.5),
    "CRIMEFLOW_RETRAIN_UNTIL": ("retrain.until", "2018-09", "2018-09"),
    "CRIMEFLOW_RETRAIN_HOLDOUT_MONTHS": ("retrain.holdout_months", "2", 2),
    "CRIMEFLOW_GATE_PRIMARY_METRIC": ("gate.primary_metric", "roc_auc", "roc_auc"),
    "CRIMEFLOW_GATE_MIN_IMPROVEMENT": ("gate.min_improvement", "0.02", 0.02),
    "CRIMEFLOW_GATE_TOLERANCE": ("gate.tolerance", "0.03", 0.03),
    "CRIMEFLOW_GATE_MIN_ROC_AUC": ("gate.min_roc_auc", "0.6", 0.6),
    "CRIMEFLOW_GATE_MIN_PR_AUC_LIFT": ("gate.min_pr_auc_lift", "1.25", 1.25),
    "CRIMEFLOW_GATE_MAX_CALIBRATION_GAP": ("gate.max_calibration_gap", "0.04", 0.04),
    "CRIMEFLOW_GATE_MAX_P99_MS": ("gate.max_p99_ms", "21.5", 21.5),
    "CRIMEFLOW_GATE_SHADOW_ROWS": ("gate.shadow_rows", "22", 22),
    "CRIMEFLOW_GATE_DISTRICT_MIN_ROWS": ("gate.district_min_rows", "300", 300),
    "CRIMEFLOW_GATE_MAX_DISTRICT_DROP": ("gate.max_district_drop", "0.08", 0.08),
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No CRIMEFLOW_* variable from the calling shell leaks into the test."""
    for name in list(os.environ):
        if name.startswith("CRIMEFLOW_"):
            monkeypatch.delenv(name)
    return monkeypatch


def _read(settings: Settings, place: str) -> object:
    """The value at a dotted place of the settings, secrets revealed."""
    value = attrgetter(place)(settings)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def test_env_names_are_frozen():
    names = Settings.env_names()
    assert len(names) == len(set(names))
    assert set(names) == set(FROZEN_ENV)


def test_every_env_name_is_read_from_the_environment(clean_env):
    for name, (_, raw, _) in FROZEN_ENV.items():
        clean_env.setenv(name, raw)
    settings = Settings(_env_file=None)
    read = {name: _read(settings, place) for name, (place, _, _) in FROZEN_ENV.items()}
    assert read == {name: expected for name, (_, _, expected) in FROZEN_ENV.items()}


def test_every_env_name_is_read_from_a_dotenv_file(clean_env, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{name}={raw}\n" for name, (_, raw, _) in FROZEN_ENV.items()))
    settings = Settings(_env_file=env_file)
    read = {name: _read(settings, place) for name, (place, _, _) in FROZEN_ENV.items()}
    assert read == {name: expected for name, (_, _, expected) in FROZEN_ENV.items()}


def test_the_environment_beats_the_dotenv_file(clean_env, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("CRIMEFLOW_GATE_TOLERANCE=0.5\nCRIMEFLOW_RATE_LIMIT_PER_MINUTE=5\n")
    clean_env.setenv("CRIMEFLOW_GATE_TOLERANCE", "0.25")
    clean_env.setenv("CRIMEFLOW_RATE_LIMIT_PER_MINUTE", "7")
    settings = Settings(_env_file=env_file)
    assert _read(settings, FROZEN_ENV["CRIMEFLOW_GATE_TOLERANCE"][0]) == 0.25
    assert _read(settings, FROZEN_ENV["CRIMEFLOW_RATE_LIMIT_PER_MINUTE"][0]) == 7


def test_masked_masks_every_secret_in_every_group(clean_env):
    for name, (_, raw, _) in FROZEN_ENV.items():
        clean_env.setenv(name, raw)
    settings = Settings(_env_file=None)
    secrets = {
        k: v.get_secret_value() for k, v in settings.flat().items() if isinstance(v, SecretStr)
    }
    assert set(secrets) == {
        "socrata_app_token",
        "s3_access_key_id",
        "s3_secret_access_key",
        "api_key",
        "redis_url",
        "auth_jwt_secret",
        "alert_webhook_url",
        "alert_email_password",
        "prefect_database_url",
        "mlflow_backend_store_uri",
    }
    masked = settings.masked()
    assert {name: masked[name] for name in secrets} == dict.fromkeys(secrets, "********")
    shown = json.dumps(masked)
    assert not any(secret in shown for secret in secrets.values())


def test_markdown_table_shows_real_defaults_and_home_relative_paths():
    table = Settings.markdown_table()
    assert "PydanticUndefined" not in table
    assert "| `CRIMEFLOW_CORS_ALLOW_ORIGINS` | `[]` |" in table
    assert "$HOME" not in table.replace("$CRIMEFLOW_HOME", "")
    assert [row.split(" | ")[0] for row in table.splitlines()[2:]] == [
        f"| `{name}`" for name in Settings.env_names()
    ]


def test_flat_keyword_names_fold_into_their_groups(clean_env):
    clean_env.setenv("CRIMEFLOW_GATE_MIN_ROC_AUC", "0.6")
    clean_env.setenv("CRIMEFLOW_API_PORT", "8111")
    settings = Settings(
        _env_file=None,
        gate_tolerance=0.5,
        api={"port": 9000, "host": "0.0.0.0"},
        api_port=9001,
        rate_limit_per_minute=3,
    )
    assert settings.gate.tolerance == 0.5
    assert settings.gate.min_roc_auc == 0.6  # the environment fills what the keywords leave
    assert settings.api.port == 9001  # a flat keyword beats its group's dict
    assert settings.api.host == "0.0.0.0"
    assert settings.api.rate_limit_per_minute == 3


def test_flat_round_trips_and_replace_changes_one_setting(clean_env, tmp_path):
    settings = Settings(_env_file=None, home=tmp_path, api_key="k", drift_share=0.5)
    again = Settings(_env_file=None, **settings.flat())
    assert again.model_dump() == settings.model_dump()
    changed = settings.replace(rate_limit_per_minute=3, api_port=1, model_name="m")
    assert (changed.api.rate_limit_per_minute, changed.api.port, changed.model_name) == (3, 1, "m")
    assert changed.api.key.get_secret_value() == "k" and changed.drift.share == 0.5
    assert settings.api.rate_limit_per_minute == 120_000  # the original is untouched
    with pytest.raises(KeyError):
        settings.replace(no_such_setting=1)


def test_dotenv_names_without_the_prefix_are_not_settings(clean_env, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        "API_KEY=other-tool\nPREFECT_API_URL=http://elsewhere\nRATE_LIMIT_PER_MINUTE=1\n"
    )
    settings = Settings(_env_file=env_file)
    assert settings.api.key is None
    assert settings.prefect.api_url == "http://127.0.0.1:4200/api"
    assert settings.api.rate_limit_per_minute == 120_000


def test_gate_primary_metric_is_checked_when_read(clean_env):
    clean_env.setenv("CRIMEFLOW_GATE_PRIMARY_METRIC", "accuracy")
    with pytest.raises(ValueError, match="gate primary metric"):
        Settings(_env_file=None)


def test_a_server_store_points_every_client_at_the_mlflow_server(tmp_path):
    embedded = Settings(home=tmp_path, _env_file=None)
    assert embedded.mlflow.tracking_uri.startswith("sqlite:///")
    assert embedded.mlflow.artifacts_destination == embedded.mlflow.artifact_root
    served = Settings(
        home=tmp_path,
        mlflow_port=5123,
        mlflow_backend_store_uri="postgresql+psycopg://postgres@127.0.0.1/mlflow",
        _env_file=None,
    )
    assert served.mlflow.tracking_uri == "http://127.0.0.1:5123"
    assert served.mlflow.public_url == "http://127.0.0.1:5123"
    given = Settings(
        home=tmp_path,
        mlflow_backend_store_uri="postgresql+psycopg://postgres@127.0.0.1/mlflow",
        mlflow_tracking_uri="http://mlflow:5000",
        _env_file=None,
    )
    assert given.mlflow.tracking_uri == "http://mlflow:5000"


def test_public_urls_default_to_where_this_machine_reaches_each_service(tmp_path):
    settings = Settings(
        home=tmp_path, api_host="0.0.0.0", api_port=8123, prefect_port=4321, _env_file=None
    )
    assert settings.api.public_url == "http://127.0.0.1:8123"
    assert settings.prefect.public_url == "http://127.0.0.1:4321"
    assert settings.mlflow.public_url == "http://127.0.0.1:5000"
    behind_proxy = Settings(
        home=tmp_path,
        prefect_api_url="https://prefect.example.org/api/",
        mlflow_tracking_uri="https://mlflow.example.org",
        _env_file=None,
    )
    assert behind_proxy.prefect.public_url == "https://prefect.example.org"
    assert behind_proxy.mlflow.public_url == "https://mlflow.example.org"


def test_auth_is_on_with_a_secret_or_a_jwks_url_and_off_by_default(clean_env):
    assert not Settings(_env_file=None).auth.enabled
    assert not Settings(_env_file=None, auth_jwt_secret="").auth.enabled  # empty means unset
    assert Settings(_env_file=None, auth_jwt_secret="s" * 32).auth.enabled
    assert Settings(_env_file=None, auth_jwks_url="http://127.0.0.1:9/jwks.json").auth.enabled


def test_a_short_jwt_secret_or_a_non_http_jwks_url_is_refused(clean_env):
    with pytest.raises(ValueError, match="JWT secret must be at least 32"):
        Settings(_env_file=None, auth_jwt_secret="short")
    with pytest.raises(ValueError, match="JWKS URL must be an http"):
        Settings(_env_file=None, auth_jwks_url="file:///etc/passwd")
