"""MLflow: tracking, the `chicago-arrest` registry with aliases, and a safe model loader.

Aliases (stages are deprecated): `champion` is served, `challenger` is the newest candidate,
`previous-champion` is the rollback target.

Loading is where a model registry becomes an attack surface: MLflow reads the skops allow-list
from the model's own MLmodel file, so a tampered artifact could trust anything. `load_model`
therefore checks that the artifact is skops and loads it with *our* reviewed list
(`crimeflow.domain.model.SKOPS_TRUSTED_TYPES`); it never falls back to pickle. It also checks
that the files are the ones registered (a sha256 of the artifact recorded on the version at
registration, `record_content_hash`) and that the model file lies inside the artifact folder.

Every MLflow HTTP request is bounded (`configure_mlflow_http`, applied by `mlflow_client`): the
client's own defaults retry an unreachable server for minutes.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.tracking import MlflowClient

from crimeflow.contract.redact import redact
from crimeflow.contract.settings import Settings

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"
# Model version tag holding the sha256 of the registered artifact's files.
CONTENT_HASH_TAG = "content_sha256"
# Written into a download by MLflow's client (name and version), not part of the artifact.
_CLIENT_SIDE_FILES = frozenset({"registered_model_meta"})
TRACKING_URI_ENV = "CRIMEFLOW_MLFLOW_TRACKING_URI"


class UntrustedModelError(RuntimeError):
    """The artifact is not skops, trusts unreviewed types, changed since registration, or
    points outside its folder."""


class RegistryUnavailableError(RuntimeError):
    """The MLflow tracking server / registry cannot be reached (a one-line, masked reason)."""


def configure_mlflow_http(settings: Settings) -> None:
    """Bound every MLflow HTTP request: timeout, retries and backoff from the settings."""
    # The one place that writes MLflow's variables: its REST client reads them at every
    # request (no API takes them), and its defaults (120 s, 7 retries with backoff 2) keep an
    # unreachable registry busy for minutes. Read only through the settings here.
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(settings.mlflow.request_timeout_s)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(settings.mlflow.request_max_retries)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = str(settings.mlflow.request_backoff_factor)


def mlflow_client(settings: Settings) -> MlflowClient:
    """Point MLflow at the configured tracking/registry store and return a client."""
    configure_mlflow_http(settings)
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


def describe_error(settings: Settings, error: BaseException) -> str:
    """One masked line saying what went wrong loading from MLflow, naming what to fix."""
    uri = redact(settings.mlflow.tracking_uri)
    causes = _causes(error)
    network = [c for c in causes if _is_network_error(c)]
    if network:
        text = str(network[-1])  # the innermost: closest to what the socket said
        errno = re.search(r"\[Errno -?\d+\][^'\")]*", text)
        short = errno.group(0).strip() if errno else (text.splitlines() or [""])[0][:160]
        what = redact(short) or type(network[-1]).__name__
        return f"the MLflow registry at {uri} is unreachable ({what}); check {TRACKING_URI_ENV}"
    lines = redact(str(error)).strip().splitlines()
    text = lines[0][:300] if lines else type(error).__name__
    if isinstance(error, MlflowException):
        return f"MLflow at {uri} answered: {text}"
    return text


def _is_network_error(error: BaseException) -> bool:
    """A refused, reset or timed-out connection (requests, urllib3 or the socket layer)."""
    return isinstance(error, (ConnectionError, TimeoutError)) or type(error).__module__.startswith(
        ("requests.", "urllib3.")
    )


def _causes(error: BaseException) -> list[BaseException]:
    """The error and everything it was raised from or during (cycle-safe)."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def check_registry_reachable(settings: Settings) -> None:
    """Raise RegistryUnavailableError (one line) unless a remote tracking server answers."""
    if not settings.mlflow.tracking_uri.startswith(("http://", "https://")):
        return  # a local store (SQLite, a folder) has no server to be down
    try:
        mlflow_client(settings).search_experiments(max_results=1)
    except Exception as error:
        raise RegistryUnavailableError(describe_error(settings, error)) from error


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
    local = download_version(settings, str(version))
    label = f"{settings.model_name} v{version}"
    verify_content_hash(label, local, (found.tags or {}).get(CONTENT_HASH_TAG))
    flavor = Model.load(str(local)).flavors.get("sklearn", {})
    if flavor.get("serialization_format") != "skops":
        raise UntrustedModelError(
            f"{label} is not a skops artifact "
            f"({flavor.get('serialization_format')!r}); refusing to unpickle it"
        )
    extra = set(flavor.get("skops_trusted_types") or []) - set(SKOPS_TRUSTED_TYPES)
    if extra:
        raise UntrustedModelError(f"{label} asks to trust unreviewed types: {sorted(extra)}")
    model_file = contained_path(label, local, flavor.get("pickled_model"))
    model = skops.io.load(model_file, trusted=SKOPS_TRUSTED_TYPES)
    return LoadedModel(
        model=model,
        name=settings.model_name,
        version=str(version),
        alias=alias,
        run_id=found.run_id,
        loaded_at=datetime.now(UTC),
    )


def download_version(settings: Settings, version: str, folder: Path | None = None) -> Path:
    """Download the artifact files of `version` (into `folder`, else a fresh temp folder)."""
    return Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{settings.model_name}/{version}",
            tracking_uri=settings.mlflow.tracking_uri,
            dst_path=None if folder is None else str(folder),
        )
    )


def artifact_sha256(folder: Path) -> str:
    """sha256 over every file of an artifact folder (relative path and content, sorted)."""
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in _CLIENT_SIDE_FILES)
    for path in files:
        # Path and length delimit each file: moving bytes between files changes the hash.
        name = path.relative_to(folder).as_posix().encode()
        digest.update(len(name).to_bytes(8, "big") + name)
        digest.update(path.stat().st_size.to_bytes(8, "big"))
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def verify_content_hash(label: str, folder: Path, expected: str | None) -> None:
    """UntrustedModelError unless the downloaded files hash to what was registered."""
    if not expected:
        raise UntrustedModelError(
            f"{label} has no {CONTENT_HASH_TAG} tag (registered without crimeflow's integrity "
            "record); refusing to load it: register the model again with `crimeflow train`"
        )
    actual = artifact_sha256(folder)
    if actual != expected:
        raise UntrustedModelError(
            f"{label} changed after registration: its files hash to {actual[:12]}..., "
            f"registered {expected[:12]}...; refusing to load it"
        )


def contained_path(label: str, folder: Path, relative: Any) -> Path:
    """`folder / relative`, resolved; UntrustedModelError if it leaves the folder."""
    if not isinstance(relative, str) or not relative:
        raise UntrustedModelError(f"{label} names no model file in its MLmodel metadata")
    root = folder.resolve()
    path = (root / relative).resolve()  # an absolute `relative` replaces root: caught below
    if not path.is_relative_to(root) or path == root:
        raise UntrustedModelError(
            f"{label}'s model file {relative!r} lies outside its artifact folder; refusing it"
        )
    return path


def record_content_hash(client: MlflowClient, settings: Settings, version: str) -> str:
    """Hash the registered files of `version` and tag the version with it; the hash."""
    # Hashed from a download, i.e. exactly the files a loader will get (MLflow writes its own
    # metadata into MLmodel while logging, so a hash of what we saved would not match).
    with tempfile.TemporaryDirectory(prefix="crimeflow-hash-") as folder:
        sha256 = artifact_sha256(download_version(settings, version, Path(folder)))
    client.set_model_version_tag(settings.model_name, version, CONTENT_HASH_TAG, sha256)
    return sha256


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
