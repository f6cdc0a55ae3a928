"""MLflow: tracking, the `chicago-arrest` registry with aliases, and a safe model loader.

Aliases (stages are deprecated): `champion` is served, `challenger` is the newest candidate,
`previous-champion` is the rollback target.

Loading is where a model registry becomes an attack surface: MLflow reads the skops allow-list
from the model's own MLmodel file, so a tampered artifact could trust anything. `load_model`
therefore checks that the artifact is skops and loads it with *our* reviewed list
(`crimeflow.domain.model.SKOPS_TRUSTED_TYPES`); it never falls back to pickle.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.tracking import MlflowClient

from crimeflow.contract.settings import Settings

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"


class UntrustedModelError(RuntimeError):
    """The artifact is not skops, or asks to trust types outside our reviewed list."""


def mlflow_client(settings: Settings) -> MlflowClient:
    """Point MLflow at the configured tracking/registry store and return a client."""
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    mlflow.set_registry_uri(settings.mlflow.tracking_uri)
    return MlflowClient(settings.mlflow.tracking_uri, settings.mlflow.tracking_uri)


def ensure_experiment(client: MlflowClient, settings: Settings) -> str:
    """The experiment id of `settings.mlflow.experiment`, created on first use."""
    experiment = client.get_experiment_by_name(settings.mlflow.experiment)
    if experiment is not None:
        return experiment.experiment_id
    # A remote tracking server chooses its own artifact store; the embedded one keeps
    # artifacts under CRIMEFLOW_HOME instead of ./mlruns of whatever the working folder is.
    remote = settings.mlflow.tracking_uri.startswith(("http://", "https://"))
    location = None if remote else f"{settings.mlflow.artifact_root}/{settings.mlflow.experiment}"
    return client.create_experiment(settings.mlflow.experiment, artifact_location=location)


def model_uri(settings: Settings, alias: str) -> str:
    """`models:/<name>@<alias>`."""
    return f"models:/{settings.model_name}@{alias}"


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The model version behind `alias`, or None when the alias (or the model) does not exist."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


@dataclass
class LoadedModel:
    """A model loaded from the registry, with where it came from."""

    model: Any
    name: str
    version: str
    alias: str | None
    run_id: str | None
    loaded_at: datetime


def load_model(
    settings: Settings, alias: str = CHAMPION, *, version: str | None = None
) -> LoadedModel:
    """Load `models:/<name>@<alias>` (or a version) with the reviewed skops allow-list only."""
    import skops.io

    from crimeflow.domain.model import SKOPS_TRUSTED_TYPES

    client = mlflow_client(settings)
    if version is None:
        found = version_by_alias(client, settings.model_name, alias)
        if found is None:
            raise LookupError(f"no version of {settings.model_name!r} has alias {alias!r}")
        version = found.version
    else:
        found, alias = client.get_model_version(settings.model_name, version), None
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{settings.model_name}/{version}",
            tracking_uri=settings.mlflow.tracking_uri,
        )
    )
    flavor = Model.load(str(local)).flavors.get("sklearn", {})
    if flavor.get("serialization_format") != "skops":
        raise UntrustedModelError(
            f"{settings.model_name} v{version} is not a skops artifact "
            f"({flavor.get('serialization_format')!r}); refusing to unpickle it"
        )
    extra = set(flavor.get("skops_trusted_types") or []) - set(SKOPS_TRUSTED_TYPES)
    if extra:
        raise UntrustedModelError(
            f"{settings.model_name} v{version} asks to trust unreviewed types: {sorted(extra)}"
        )
    model = skops.io.load(local / flavor["pickled_model"], trusted=SKOPS_TRUSTED_TYPES)
    return LoadedModel(
        model=model,
        name=settings.model_name,
        version=str(version),
        alias=alias,
        run_id=found.run_id,
        loaded_at=datetime.now(UTC),
    )


def set_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    """Point `alias` at `version`."""
    client.set_registered_model_alias(name, alias, version)


def promote_if_no_champion(client: MlflowClient, name: str, version: str) -> bool:
    """Make `version` the champion when there is none yet (the very first model); True if so."""
    if version_by_alias(client, name, CHAMPION) is not None:
        return False
    set_alias(client, name, CHAMPION, version)
    client.set_model_version_tag(name, version, "promoted_by", "first-model")
    client.set_model_version_tag(name, version, "promoted_at", datetime.now(UTC).isoformat())
    return True
