"""The one settings object: every path, URL, token and threshold, from `CRIMEFLOW_*` env vars."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Effective configuration; defaults give an embedded setup under `home`."""

    model_config = SettingsConfigDict(
        env_prefix="CRIMEFLOW_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- embedded state -------------------------------------------------------------------
    home: Path = Field(Path(".crimeflow"), description="Root folder of all embedded state.")
    lake_url: str = Field(
        "",
        description="Data lake root: a local folder, or s3://bucket/prefix. Default $HOME/lake.",
    )

    # --- Socrata (City of Chicago open data) ------------------------------------------------
    socrata_url: str = Field(
        "https://data.cityofchicago.org",
        description="SODA endpoint; http://127.0.0.1:PORT for the local stand-in.",
    )
    socrata_app_token: SecretStr | None = Field(None, description="Optional Socrata app token.")
    socrata_crimes_dataset: str = Field("ijzp-q8t2", description="Crimes dataset id.")
    socrata_stations_dataset: str = Field("z8bn-74gv", description="Police stations dataset id.")
    socrata_page_size: int = Field(50_000, gt=0, description="Rows per SODA page ($limit).")
    socrata_timeout_s: float = Field(60.0, gt=0, description="HTTP timeout per SODA request.")
    socrata_max_retries: int = Field(5, ge=0, description="Retries on timeouts, 5xx and 429.")
    socrata_backoff_s: float = Field(1.0, ge=0, description="First retry delay; doubles.")

    # --- S3 (only used when lake_url is s3://) -------------------------------------------------
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, moto).")
    s3_region: str = Field("us-east-1", description="S3 region.")
    s3_access_key_id: SecretStr | None = Field(None, description="S3 access key id.")
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret access key.")

    # --- ETL ------------------------------------------------------------------------------------
    backfill_months: int = Field(12, ge=1, description="Months a first run on an empty lake pulls.")
    training_window_months: int = Field(12, ge=1, description="Months in the rolling window.")
    max_bad_row_share: float = Field(
        0.05, ge=0, le=1, description="Fail the ETL when more than this share of rows is bad."
    )

    # --- MLflow -----------------------------------------------------------------------------
    mlflow_tracking_uri: str = Field(
        "",
        description="MLflow tracking/registry URI; default sqlite:///$HOME/mlflow.db (embedded).",
    )
    mlflow_artifact_root: str = Field(
        "", description="Where new experiments store artifacts; default $HOME/mlartifacts."
    )
    mlflow_port: int = Field(5000, description="Port of the local MLflow UI (crimeflow up).")
    mlflow_experiment: str = Field("crimeflow", description="MLflow experiment of the runs.")
    model_name: str = Field("chicago-arrest", description="Registered model name.")
    reference_sample_rows: int = Field(
        20_000, gt=0, description="Training rows logged as the drift monitor's reference."
    )

    # --- prediction API and its log -----------------------------------------------------------
    api_host: str = Field("127.0.0.1", description="Interface the API binds.")
    api_port: int = Field(8000, description="Port of the prediction API.")
    api_workers: int = Field(1, ge=1, description="uvicorn worker processes.")
    api_key: SecretStr | None = Field(None, description="Key for /admin/*; admin is off unset.")
    model_poll_interval_s: float = Field(
        15.0, gt=0, description="How often the API checks whether the champion alias moved."
    )
    predict_batch_max_rows: int = Field(10_000, gt=0, description="Rows per /predict/batch.")
    microbatch_max_rows: int = Field(
        64, gt=0, description="Concurrent single predictions scored together, at most."
    )
    microbatch_wait_ms: float = Field(
        1.0, ge=0, description="How long a single prediction waits for companions to batch with."
    )
    rate_limit_per_minute: int = Field(
        120_000, ge=0, description="Requests per minute per client; 0 turns rate limiting off."
    )
    cors_allow_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS; empty turns CORS off."
    )
    prediction_log_url: str = Field(
        "", description="SQLAlchemy URL of the prediction log; default SQLite under $HOME."
    )
    prediction_log_batch_rows: int = Field(
        512, gt=0, description="Most predictions committed in one transaction."
    )
    prediction_log_batch_wait_ms: float = Field(
        0.0,
        ge=0,
        description="Extra wait to fill a transaction (rows queued during a commit batch anyway).",
    )

    # --- drift monitor ----------------------------------------------------------------------
    drift_window_days: int = Field(7, gt=0, description="Days of logged traffic per check.")
    drift_min_current_rows: int = Field(
        200, gt=0, description="Fewer logged rows than this give 'insufficient data'."
    )
    drift_max_rows: int = Field(50_000, gt=0, description="Sampling cap per side (by day).")
    drift_share: float = Field(
        0.25, gt=0, le=1, description="Share of drifted columns that means dataset drift."
    )
    drift_max_unseen_share: float = Field(
        0.05, gt=0, le=1, description="Share of never-seen category values that means drift."
    )
    drift_min_labelled_rows: int = Field(
        200, gt=0, description="Feedback-labelled rows needed to report performance."
    )
    drift_seed: int = Field(0, description="Seed of the window sampling.")
    drift_prediction_triggers: bool = Field(
        True, description="Whether drift of the predicted probabilities alone means drift."
    )
    evidently_workspace: Path | None = Field(
        None, description="Evidently workspace folder; default $HOME/evidently."
    )
    evidently_ui_port: int = Field(8001, description="Port of `crimeflow reports ui`.")

    # --- Prefect (the orchestrator) ---------------------------------------------------------
    prefect_port: int = Field(4200, description="Port of the local Prefect server (crimeflow up).")
    prefect_api_url: str = Field(
        "",
        description="Prefect API the flows and the serve process use; default the local server.",
    )
    alert_webhook_url: SecretStr | None = Field(
        None,
        description="Webhook notified on rejected models and failed flow runs; unset: no alerts.",
    )

    # --- retraining and the staging gate -------------------------------------------------------
    retrain_debounce_s: float = Field(
        1800.0,
        ge=0,
        description="A drift retrain within this many seconds of the last one is skipped.",
    )
    retrain_until: str = Field(
        "",
        description="Newest month a retrain trains on (YYYY-MM); default the last complete month.",
    )
    retrain_holdout_months: int = Field(
        1, ge=1, description="Newest labelled months held out of training as the staging set."
    )
    gate_primary_metric: str = Field("pr_auc", description="Metric the challenger must improve.")
    gate_min_improvement: float = Field(
        0.0, description="Challenger minus champion on the primary metric, at least."
    )
    gate_tolerance: float = Field(
        0.01, ge=0, description="How much worse than the champion PR-AUC/ROC-AUC may be."
    )
    gate_min_roc_auc: float = Field(0.70, ge=0, le=1, description="Absolute ROC-AUC floor.")
    gate_min_pr_auc_lift: float = Field(
        1.5, ge=0, description="PR-AUC floor as a multiple of the staging arrest rate."
    )
    gate_max_calibration_gap: float = Field(
        0.05, ge=0, description="Largest |mean predicted - observed arrest rate| on staging."
    )
    gate_max_p99_ms: float = Field(
        50.0, gt=0, description="Budget for the candidate's p99 single-row latency."
    )
    gate_shadow_rows: int = Field(
        1000, ge=0, description="Recent logged requests the candidate must score without failure."
    )

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        # Derived defaults live here so that overriding CRIMEFLOW_HOME moves everything with it.
        if not self.lake_url:
            self.lake_url = str(self.home / "lake")
        if not self.mlflow_tracking_uri:
            self.mlflow_tracking_uri = f"sqlite:///{(self.home / 'mlflow.db').resolve()}"
        if self.evidently_workspace is None:
            self.evidently_workspace = self.home / "evidently"
        if not self.prediction_log_url:
            self.prediction_log_url = f"sqlite:///{(self.home / 'predictions.db').resolve()}"
        if not self.prefect_api_url:
            self.prefect_api_url = f"http://127.0.0.1:{self.prefect_port}/api"
        if not self.mlflow_artifact_root:
            self.mlflow_artifact_root = (self.home / "mlartifacts").resolve().as_uri()
        return self

    def masked(self) -> dict[str, Any]:
        """The effective settings as JSON-ready data, secrets masked."""
        data = json.loads(self.model_dump_json())
        for name, value in self:
            if isinstance(value, SecretStr):
                data[name] = "********"
        return data

    @classmethod
    def markdown_table(cls) -> str:
        """A markdown table of every setting: env name, default, description (for the README)."""
        rows = ["| variable | default | meaning |", "|---|---|---|"]
        for name, info in cls.model_fields.items():
            default = "" if info.default in (None, "") else f"`{info.default}`"
            rows.append(f"| `CRIMEFLOW_{name.upper()}` | {default} | {info.description} |")
        return "\n".join(rows)

    @property
    def s3_storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options built from the S3 settings."""
        options: dict[str, Any] = {"client_kwargs": {"region_name": self.s3_region}}
        if self.s3_endpoint_url:
            options["client_kwargs"]["endpoint_url"] = self.s3_endpoint_url
        if self.s3_access_key_id and self.s3_secret_access_key:
            options["key"] = self.s3_access_key_id.get_secret_value()
            options["secret"] = self.s3_secret_access_key.get_secret_value()
        return options


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment (and .env)."""
    return Settings()


def child_environment(overrides: dict[str, str]) -> dict[str, str]:
    """This process's environment plus `overrides`, for the processes crimeflow starts."""
    # The one other place that touches os.environ: children inherit PATH, the venv and any
    # CRIMEFLOW_* the user set, with a few values pinned by whoever starts them.
    return {**os.environ, **overrides}
