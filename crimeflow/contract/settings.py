"""The one settings object: every path, URL, token and threshold, from `CRIMEFLOW_*` env vars.

Settings come in groups, one per thing that is configured (`settings.gate`, `settings.api`,
`settings.socrata`...), and each group is the config object its reader takes. The env names
predate the groups and never change (users have .env files): a group field is read from
`CRIMEFLOW_<GROUP>_<FIELD>` (pydantic-settings' nested delimiter `_`, split once after the group
name), except the few fields a group lists in `unprefixed`, read from `CRIMEFLOW_<FIELD>`
(`CRIMEFLOW_RATE_LIMIT_PER_MINUTE` is `settings.api.rate_limit_per_minute`).
`Settings.env_names()` lists every name and where it goes.

Each setting also has a flat name, its env name without `CRIMEFLOW_` in lower case. Keyword
arguments take flat names (`Settings(home=..., gate_tolerance=0.02)`), so code and tests say
a setting the way the docs and the .env file do; `flat()` and `masked()` give them back.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_core import to_jsonable_python
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from crimeflow.contract.redact import MASK, redact, without_credentials

ENV_PREFIX = "CRIMEFLOW_"
# HS256 wants a key at least as long as its 32-byte output (RFC 7518 3.2).
MIN_JWT_SECRET_CHARS = 32
# A TCP port: `CRIMEFLOW_API_PORT=-1` is a configuration error, not a bind error later.
Port = Annotated[int, Field(ge=1, le=65535)]


class Group(BaseModel):
    """A group of settings; `unprefixed` names the fields whose env name lacks the group's."""

    unprefixed: ClassVar[frozenset[str]] = frozenset()


class SocrataSettings(Group):
    """The SODA client: the City of Chicago portal, or the local stand-in."""

    url: str = Field(
        "https://data.cityofchicago.org",
        description="SODA endpoint; http://127.0.0.1:PORT for the local stand-in.",
    )
    app_token: SecretStr | None = Field(None, description="Optional Socrata app token.")
    crimes_dataset: str = Field("ijzp-q8t2", description="Crimes dataset id.")
    stations_dataset: str = Field("z8bn-74gv", description="Police stations dataset id.")
    districts_dataset: str = Field(
        "24zt-jpfn", description="Police district boundaries dataset id (GeoJSON; empty: not used)."
    )
    community_areas_dataset: str = Field(
        "igwz-8jzy", description="Community area boundaries dataset id (GeoJSON; empty: not used)."
    )
    page_size: int = Field(50_000, gt=0, description="Rows per SODA page ($limit).")
    timeout_s: float = Field(60.0, gt=0, description="HTTP timeout per SODA request.")
    max_retries: int = Field(5, ge=0, description="Retries on timeouts, 5xx and 429.")
    backoff_s: float = Field(1.0, ge=0, description="First retry delay; doubles.")


class S3Settings(Group):
    """S3 access, only used when the lake URL is s3://."""

    endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (SeaweedFS in compose, moto in tests)."
    )
    region: str = Field("us-east-1", description="S3 region.")
    access_key_id: SecretStr | None = Field(None, description="S3 access key id.")
    secret_access_key: SecretStr | None = Field(None, description="S3 secret access key.")
    bucket_block: str = Field(
        "",
        description=(
            "Name of the prefect-aws S3Bucket block that holds the lake's bucket, folder and "
            "credentials (`crimeflow blocks apply` writes it from the lake URL and the S3 "
            "settings); set: processes read the lake's location and keys from Prefect."
        ),
    )

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options built from the S3 settings."""
        options: dict[str, Any] = {"client_kwargs": {"region_name": self.region}}
        if self.endpoint_url:
            options["client_kwargs"]["endpoint_url"] = self.endpoint_url
        if self.access_key_id and self.secret_access_key:
            options["key"] = self.access_key_id.get_secret_value()
            options["secret"] = self.secret_access_key.get_secret_value()
        return options


class EtlSettings(Group):
    """The monthly ETL and the rolling training window it keeps."""

    unprefixed = frozenset(
        {"backfill_months", "training_window_months", "max_bad_row_share", "label_maturity_days"}
    )

    backfill_months: int = Field(12, ge=1, description="Months a first run on an empty lake pulls.")
    training_window_months: int = Field(12, ge=1, description="Months in the rolling window.")
    max_bad_row_share: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Fail the ETL when more than this share of a month's rows is bad.",
    )
    # Measured on the real 2018 records (docs/monitoring-and-retraining.md#label-maturity): 60
    # days after the incident at most 5 % of arrest flags can still change.
    label_maturity_days: int = Field(
        60,
        ge=0,
        description="Days after an incident before its arrest flag counts as final: training "
        "and the gate use only months this old (realized performance too); younger windows get "
        "the label-free estimate.",
    )
    min_month_share: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Fail the ETL when a past month has fewer rows than this share of the median "
        "of the 3 months with data before it (0 turns the check off).",
    )


class MlflowSettings(Group):
    """The MLflow tracking store and registry, and what a training run logs there."""

    unprefixed = frozenset({"reference_sample_rows"})

    tracking_uri: str = Field(
        "",
        description=(
            "MLflow tracking/registry URI; default sqlite:///$CRIMEFLOW_HOME/mlflow.db (embedded)."
        ),
    )
    artifact_root: str = Field(
        "",
        description="Where new experiments store artifacts; default $CRIMEFLOW_HOME/mlartifacts.",
    )
    port: Port = Field(5000, description="Port of the MLflow server `crimeflow up` starts.")
    backend_store_uri: SecretStr | None = Field(
        None,
        description=(
            "Store of the MLflow tracking server `crimeflow up` starts (postgresql+psycopg://...); "
            "set: clients default to that server, http://127.0.0.1:$CRIMEFLOW_MLFLOW_PORT."
        ),
    )
    artifacts_destination: str = Field(
        "",
        description=(
            "Where that server keeps artifacts (s3://bucket/prefix), served to clients through "
            "it; default the artifact root."
        ),
    )
    public_url: str = Field(
        "",
        description=(
            "MLflow UI base URL in links; default the tracking URI when it is http(s), else "
            "http://127.0.0.1:$CRIMEFLOW_MLFLOW_PORT."
        ),
    )
    experiment: str = Field("crimeflow", description="MLflow experiment of the runs.")
    request_timeout_s: int = Field(
        5, gt=0, description="Timeout of one MLflow HTTP request (connect and read), seconds."
    )
    request_max_retries: int = Field(
        1, ge=0, le=10, description="Retries of a failed MLflow HTTP request (refused, 5xx, 429)."
    )
    request_backoff_factor: int = Field(
        1, ge=0, le=120, description="Backoff between MLflow retries: factor * 2^(retry-1) s."
    )
    reference_sample_rows: int = Field(
        20_000, gt=0, description="Training rows logged as the drift monitor's reference."
    )


class ApiSettings(Group):
    """The prediction API: where it listens, admin key, batching, limits, CORS, model polling."""

    unprefixed = frozenset(
        {
            "model_poll_interval_s",
            "predict_batch_max_rows",
            "microbatch_max_rows",
            "microbatch_wait_ms",
            "rate_limit_per_minute",
            "cors_allow_origins",
            "redis_url",
        }
    )

    host: str = Field("127.0.0.1", description="Interface the API binds.")
    port: Port = Field(8000, description="Port of the prediction API.")
    public_url: str = Field(
        "",
        description=(
            "API base URL in links (drift reports, events, alerts); default "
            "http://$CRIMEFLOW_API_HOST:$CRIMEFLOW_API_PORT, a wildcard host as 127.0.0.1."
        ),
    )
    workers: int = Field(1, ge=1, description="uvicorn worker processes.")
    key: SecretStr | None = Field(None, description="Key for /admin/*; admin is off unset.")
    model_poll_interval_s: float = Field(
        15.0, gt=0, description="How often the API checks whether the champion alias moved."
    )
    model_load_wait_s: float = Field(
        30.0,
        ge=0,
        description=(
            "How long API startup waits for the first model load before listening anyway "
            "(the load goes on; /ready says 'loading the model' meanwhile). An unreachable "
            "registry ends the wait at once, a hanging one within the MLflow request timeouts."
        ),
    )
    drain_timeout_s: int = Field(
        20,
        gt=0,
        description=(
            "On SIGTERM, requests still running after this many seconds are cancelled "
            "(keep it below the orchestrator's grace period, 30 s in deployments/k8s)."
        ),
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
        default_factory=list,
        description="Origins allowed by CORS (a JSON list); empty turns CORS off.",
    )
    redis_url: SecretStr | None = Field(
        None,
        description=(
            "Redis (redis://host:port/db) counting the rate-limit windows across workers and "
            "replicas; unset: each worker counts its own."
        ),
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description=(
            "Proxy addresses or networks (a JSON list) whose X-Forwarded-For/-Proto the API "
            "believes; empty: forwarded headers are ignored and the peer address is the client."
        ),
    )


class AuthSettings(Group):
    """Bearer-token auth of the API: on when a JWT secret or a JWKS URL is set (api.auth)."""

    jwt_secret: SecretStr | None = Field(
        None,
        description=(
            "HS256 secret that signs `crimeflow token create` tokens and verifies them; set (or "
            "a JWKS URL): the API needs a bearer token with a scope on every route but "
            "/health, /ready, /metrics and /schema. At least 32 characters."
        ),
    )
    jwks_url: str = Field(
        "",
        description=(
            "An identity provider's JWKS (https://.../jwks.json): the API also accepts its "
            "RS256/ES256/... tokens; set: auth is on."
        ),
    )
    issuer: str = Field(
        "", description="Required `iss` of tokens (and written into created ones); unset: any."
    )
    audience: str = Field(
        "", description="Required `aud` of tokens (and written into created ones); unset: any."
    )
    ttl_s: int = Field(
        3600, gt=0, description="Lifetime of a `crimeflow token create` token without --ttl."
    )

    @field_validator("jwt_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # An HMAC key shorter than the hash output can be brute-forced from one token.
        if value is not None and 0 < len(value.get_secret_value()) < MIN_JWT_SECRET_CHARS:
            raise ValueError(
                f"the JWT secret must be at least {MIN_JWT_SECRET_CHARS} characters "
                "(e.g. `openssl rand -hex 32`)"
            )
        return value

    @field_validator("jwks_url")
    @classmethod
    def _http_jwks(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("the JWKS URL must be an http(s) URL")
        return value

    @property
    def enabled(self) -> bool:
        """Whether the API requires tokens: a non-empty secret or a JWKS URL is set."""
        return bool(self.jwt_secret and self.jwt_secret.get_secret_value()) or bool(self.jwks_url)


class PredictionLogSettings(Group):
    """Where the API logs every prediction, and how it batches the writes."""

    url: str = Field(
        "",
        description=(
            "SQLAlchemy URL of the prediction log; default sqlite:///$CRIMEFLOW_HOME/predictions.db."
        ),
    )
    batch_rows: int = Field(512, gt=0, description="Most predictions committed in one transaction.")
    batch_wait_ms: float = Field(
        0.0,
        ge=0,
        description="Extra wait to fill a transaction (rows queued during a commit batch anyway).",
    )


class DriftSettings(Group):
    """The drift monitor's window and decision rules (`monitoring.drift.DriftConfig`)."""

    window_days: int = Field(7, gt=0, description="Days of logged traffic per check.")
    min_current_rows: int = Field(
        200, gt=0, description="Fewer logged rows than this give 'insufficient data'."
    )
    max_rows: int = Field(50_000, gt=0, description="Sampling cap per side (by day).")
    share: float = Field(
        0.25, gt=0, le=1, description="Share of drifted columns that means dataset drift."
    )
    max_unseen_share: float = Field(
        0.05, gt=0, le=1, description="Share of never-seen category values that means drift."
    )
    min_labelled_rows: int = Field(
        200, gt=0, description="Feedback-labelled rows needed to report performance."
    )
    seed: int = Field(0, description="Seed of the window sampling.")
    prediction_triggers: bool = Field(
        True, description="Whether drift of the predicted probabilities alone means drift."
    )


class PerformanceSettings(Group):
    """Realized and estimated performance of the champion per window (`monitoring.outcomes`)."""

    max_drop: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Emit crimeflow.performance.degraded when a window's PR-AUC (realized, "
        "else estimated) is more than this below the champion's holdout PR-AUC.",
    )
    lookback_days: int = Field(
        120,
        gt=0,
        description="Days of logged predictions the monitor joins with the lake's arrest flags.",
    )
    min_rows: int = Field(
        200, ge=2, description="Rows a window needs for a realized or estimated figure."
    )


class EvidentlySettings(Group):
    """Where drift reports are kept for the Evidently UI."""

    workspace: Path | None = Field(
        None, description="Evidently workspace folder; default $CRIMEFLOW_HOME/evidently."
    )
    ui_port: Port = Field(8001, description="Port of `crimeflow reports ui`.")


class PrometheusSettings(Group):
    """The Prometheus server `crimeflow up` starts when a `prometheus` binary is on PATH."""

    port: Port = Field(
        9090, description="Port of the Prometheus `crimeflow up` starts (if it is installed)."
    )


class ExporterSettings(Group):
    """The loop exporter (`crimeflow exporter`): Prometheus metrics read from durable state."""

    host: str = Field("127.0.0.1", description="Interface the loop exporter binds.")
    port: Port = Field(9108, description="Port of the loop exporter's /metrics.")


class PrefectSettings(Group):
    """The orchestrator the flows report to, and where its alerts go."""

    unprefixed = frozenset(
        {
            "alert_webhook_url",
            "alert_email_host",
            "alert_email_port",
            "alert_email_from",
            "alert_email_to",
            "alert_email_username",
            "alert_email_password",
            "alert_email_tls",
        }
    )

    port: Port = Field(4200, description="Port of the local Prefect server (crimeflow up).")
    api_url: str = Field(
        "",
        description=(
            "Prefect API the flows and the serve process use; "
            "default http://127.0.0.1:$CRIMEFLOW_PREFECT_PORT/api (the local server)."
        ),
    )
    alert_webhook_url: SecretStr | None = Field(
        None,
        description=(
            "Webhook notified of every loop decision (drift, promoted, rejected, rolled back) "
            "and failed crimeflow flow runs; unset: no webhook alerts."
        ),
    )
    alert_email_host: str = Field(
        "", description="SMTP server the alert emails go through; unset: no email alerts."
    )
    alert_email_port: Port = Field(587, description="SMTP port (465 for tls=ssl).")
    alert_email_from: str = Field(
        "", description="Sender of the alert emails; default the username, else crimeflow@HOST."
    )
    alert_email_to: str = Field(
        "", description="Recipients of the alert emails, comma-separated; unset: no email alerts."
    )
    alert_email_username: str = Field("", description="SMTP login; unset: no authentication.")
    alert_email_password: SecretStr | None = Field(None, description="SMTP password.")
    alert_email_tls: Literal["starttls", "ssl", "none"] = Field(
        "starttls",
        description="SMTP encryption: starttls (port 587), ssl (implicit TLS, 465) or none.",
    )
    database_url: SecretStr | None = Field(
        None,
        description=(
            "Database of the Prefect server `crimeflow up` starts (postgresql+asyncpg://...); "
            "unset: SQLite under $CRIMEFLOW_HOME/prefect."
        ),
    )
    public_url: str = Field(
        "", description="Prefect UI base URL in links; default the API URL without /api."
    )


class RetrainSettings(Group):
    """The retraining loop: debounce, the newest month, the staging months held out."""

    debounce_s: float = Field(
        1800.0,
        ge=0,
        description="A drift retrain within this many seconds of the last one is skipped.",
    )
    until: str = Field(
        "",
        description="Newest month a retrain trains on (YYYY-MM); default the last complete month.",
    )
    holdout_months: int = Field(
        1, ge=1, description="Newest labelled months held out of training as the staging set."
    )


COMPARED_METRICS = ("pr_auc", "roc_auc")


class GateSettings(Group):
    """The staging gate's thresholds; `crimeflow.domain.gate` decides with this very object."""

    primary_metric: str = Field("pr_auc", description="Metric the challenger must improve.")
    min_improvement: float = Field(
        0.0, description="Challenger minus champion on the primary metric, at least."
    )
    tolerance: float = Field(
        0.01, ge=0, description="How much worse than the champion PR-AUC/ROC-AUC may be."
    )
    min_roc_auc: float = Field(0.70, ge=0, le=1, description="Absolute ROC-AUC floor.")
    min_pr_auc_lift: float = Field(
        1.5, ge=0, description="PR-AUC floor as a multiple of the staging arrest rate."
    )
    max_calibration_gap: float = Field(
        0.05,
        ge=0,
        description="Largest gap between mean predicted and observed arrest rate on staging.",
    )
    max_p99_ms: float = Field(
        50.0, gt=0, description="Budget for the candidate's p99 single-row latency."
    )
    shadow_rows: int = Field(
        1000, ge=0, description="Recent logged requests the candidate must score without failure."
    )
    district_min_rows: int = Field(
        500, ge=1, description="Staging rows a police district needs for the per-district rule."
    )
    max_district_drop: float = Field(
        0.05,
        ge=0,
        description="How much lower than the champion's a district's staging PR-AUC may be.",
    )

    @field_validator("primary_metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in COMPARED_METRICS:
            raise ValueError(
                f"gate primary metric must be one of {COMPARED_METRICS}, got {value!r}"
            )
        return value


class _UnprefixedNames(PydanticBaseSettingsSource):
    """The env (or .env) source plus the group fields whose env name lacks the group's name.

    pydantic-settings' nested delimiter reads `CRIMEFLOW_GATE_TOLERANCE` into `gate.tolerance`
    by itself; a name such as `CRIMEFLOW_RATE_LIMIT_PER_MINUTE` matches no group, so this reads
    it from the wrapped source's variables into its group, before the sources are merged (the
    environment still beats the .env file).
    """

    def __init__(self, source: EnvSettingsSource) -> None:
        super().__init__(source.settings_cls)
        self.source = source

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        """Unused: `__call__` reads through the wrapped source."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        # The .env source passes unknown names through as extras, even names without the
        # prefix (`API_KEY=` meant for another tool): only the settings' own fields go on.
        data = {k: v for k, v in self.source().items() if k in Settings.model_fields}
        for flat, (group, field) in Settings.places().items():
            if group is None or field not in GROUPS[group].unprefixed:
                continue
            name = ENV_PREFIX + flat
            raw = self.source.env_vars.get(name if self.source.case_sensitive else name.lower())
            if raw is None:
                continue
            info = GROUPS[group].model_fields[field]
            try:
                value = self.source.prepare_field_value(flat, info, raw, False)
            except ValueError as error:
                # Name the variable (a bare JSONDecodeError names nothing the user set).
                raise SettingsError(f'error parsing value for "{name}": {error}') from error
            data[group] = {**data.get(group, {}), field: value}
        return data


class Settings(BaseSettings):
    """Effective configuration; defaults give an embedded setup under `home`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="_",
        env_nested_max_split=1,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    home: Path = Field(Path(".crimeflow"), description="Root folder of all embedded state.")
    lake_url: str = Field(
        "",
        description="Data lake root: a local folder, or s3://bucket/prefix. "
        "Default $CRIMEFLOW_HOME/lake.",
    )
    model_name: str = Field("chicago-arrest", description="Registered model name.")
    socrata: SocrataSettings = Field(default_factory=SocrataSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    etl: EtlSettings = Field(default_factory=EtlSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    prediction_log: PredictionLogSettings = Field(default_factory=PredictionLogSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    performance: PerformanceSettings = Field(default_factory=PerformanceSettings)
    evidently: EvidentlySettings = Field(default_factory=EvidentlySettings)
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    exporter: ExporterSettings = Field(default_factory=ExporterSettings)
    prefect: PrefectSettings = Field(default_factory=PrefectSettings)
    retrain: RetrainSettings = Field(default_factory=RetrainSettings)
    gate: GateSettings = Field(default_factory=GateSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The default sources and order; env and .env also read the unprefixed names."""
        assert isinstance(env_settings, EnvSettingsSource)
        assert isinstance(dotenv_settings, EnvSettingsSource)
        return (
            init_settings,
            _UnprefixedNames(env_settings),
            _UnprefixedNames(dotenv_settings),
            file_secret_settings,
        )

    @classmethod
    def places(cls) -> dict[str, tuple[str | None, str]]:
        """Every flat name and where it lives: (group, field), group None for a top-level one."""
        places: dict[str, tuple[str | None, str]] = {}
        for name in cls.model_fields:
            group = GROUPS.get(name)
            if group is None:
                places[name] = (None, name)
                continue
            for field in group.model_fields:
                flat = field if field in group.unprefixed else f"{name}_{field}"
                places[flat] = (name, field)
        return places

    @classmethod
    def env_names(cls) -> list[str]:
        """Every environment variable the settings read, in table order."""
        return [f"{ENV_PREFIX}{flat.upper()}" for flat in cls.places()]

    @model_validator(mode="before")
    @classmethod
    def _fold_flat_names(cls, data: Any) -> Any:
        # Flat keyword arguments (`gate_tolerance=...`) into their groups. Only keyword arguments
        # arrive flat (the env sources above read into groups), and they beat every other
        # source, so a flat value also beats the same field given inside its group.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for flat, (group, field) in cls.places().items():
            if group is None or flat not in data:
                continue
            current = data.get(group)
            values = current.model_dump() if isinstance(current, BaseModel) else dict(current or {})
            data[group] = {**values, field: data.pop(flat)}
        return data

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        # Derived defaults live here so that overriding CRIMEFLOW_HOME moves everything with it.
        if not self.lake_url:
            self.lake_url = str(self.home / "lake")
        if not self.mlflow.tracking_uri:
            # With a server store configured, every client talks to the server `up` starts.
            self.mlflow.tracking_uri = (
                local_url("127.0.0.1", self.mlflow.port)
                if self.mlflow.backend_store_uri
                else f"sqlite:///{(self.home / 'mlflow.db').resolve()}"
            )
        if self.evidently.workspace is None:
            self.evidently.workspace = self.home / "evidently"
        if not self.prediction_log.url:
            self.prediction_log.url = f"sqlite:///{(self.home / 'predictions.db').resolve()}"
        if not self.prefect.api_url:
            self.prefect.api_url = f"http://127.0.0.1:{self.prefect.port}/api"
        if not self.mlflow.artifact_root:
            self.mlflow.artifact_root = (self.home / "mlartifacts").resolve().as_uri()
        if not self.mlflow.artifacts_destination:
            self.mlflow.artifacts_destination = self.mlflow.artifact_root
        self._derive_public_urls()
        return self

    def _derive_public_urls(self) -> None:
        """Links people open default to where this machine reaches each service."""
        if not self.api.public_url:
            self.api.public_url = local_url(self.api.host, self.api.port)
        if not self.mlflow.public_url:
            remote = self.mlflow.tracking_uri.startswith(("http://", "https://"))
            # A link people open carries no credentials, whatever the client's URI holds.
            self.mlflow.public_url = (
                without_credentials(self.mlflow.tracking_uri)
                if remote
                else local_url("127.0.0.1", self.mlflow.port)
            )
        if not self.prefect.public_url:
            api_url = without_credentials(self.prefect.api_url)
            self.prefect.public_url = api_url.removesuffix("/").removesuffix("/api")
        for group in (self.api, self.mlflow, self.prefect):
            group.public_url = group.public_url.rstrip("/")

    def flat(self) -> dict[str, Any]:
        """Every setting under its flat name (what `Settings(**...)` takes back)."""
        return {
            flat: getattr(self if group is None else getattr(self, group), field)
            for flat, (group, field) in self.places().items()
        }

    def masked(self) -> dict[str, Any]:
        """The effective settings by flat name as JSON-ready data, every secret masked.

        Secrets are masked whole; plain URLs keep everything but the credentials inside them.
        """
        data = {name: _masked_value(value) for name, value in self.flat().items()}
        return to_jsonable_python(data)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed, by flat name (not validated, like `model_copy`)."""
        update: dict[str, Any] = {}
        places = self.places()
        for flat, value in changes.items():
            group, field = places[flat]
            if group is None:
                update[field] = value
            else:
                current = update.get(group, getattr(self, group))
                update[group] = current.model_copy(update={field: value})
        return self.model_copy(update=update)

    @classmethod
    def markdown_table(cls) -> str:
        """A markdown table of every setting: env name, default, meaning (docs/operations.md)."""
        rows = ["| variable | default | meaning |", "|---|---|---|"]
        for flat, (group, field) in cls.places().items():
            info = (cls if group is None else GROUPS[group]).model_fields[field]
            value = info.get_default(call_default_factory=True)
            default = "" if value in (None, "") else f"`{value}`"
            meaning = (info.description or "").replace("|", "\\|")  # a bare | splits the row
            rows.append(f"| `{ENV_PREFIX}{flat.upper()}` | {default} | {meaning} |")
        return "\n".join(rows)


def _masked_value(value: Any) -> Any:
    """A setting as `masked()` shows it: a secret as ********, a URL without its password."""
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, str):
        return redact(value)
    return value


# The group class of every group field of Settings.
GROUPS: dict[str, type[Group]] = {
    name: info.annotation
    for name, info in Settings.model_fields.items()
    if isinstance(info.annotation, type) and issubclass(info.annotation, Group)
}


def local_url(host: str, port: int) -> str:
    """The URL of a local service; a wildcard bind is reached through the loopback address."""
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment (and .env)."""
    return Settings()


def child_environment(overrides: dict[str, str]) -> dict[str, str]:
    """This process's environment plus `overrides`, for the processes crimeflow starts."""
    # The one other place that touches os.environ: children inherit PATH, the venv and any
    # CRIMEFLOW_* the user set, with a few values pinned by whoever starts them.
    return {**os.environ, **overrides}
