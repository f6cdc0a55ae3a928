"""Model integrity and a bounded registry: what `load_model` refuses, and how fast MLflow fails.

A real embedded registry: a private copy of the session's `registry_home` (v1 champion) with a
v2 registered into it; the tests tamper with v2's stored files only and restore them afterwards.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from mlflow.exceptions import MlflowException

from crimeflow.contract.settings import Settings
from crimeflow.stores.registry import (
    CONTENT_HASH_TAG,
    UntrustedModelError,
    artifact_sha256,
    contained_path,
    describe_error,
    download_version,
    load_model,
    mlflow_client,
    record_content_hash,
)
from crimeflow.stores.serving import alias_version
from tests.conftest import register_model


def stored_folder(settings: Settings, version: str) -> Path:
    """Where the registry keeps a version's files (what an attacker with store access edits)."""
    client = mlflow_client(settings)
    source = client.get_model_version(settings.model_name, version).source
    location = client.get_logged_model(source.removeprefix("models:/")).artifact_location
    return Path(urlparse(location).path)


def resave_with_threshold(folder: Path, threshold: float) -> None:
    """Re-save the stored skops model with another decision threshold (a tampered artifact)."""
    import skops.io

    from crimeflow.domain.model import SKOPS_TRUSTED_TYPES

    path = folder / "model.skops"
    model = skops.io.load(path, trusted=SKOPS_TRUSTED_TYPES)
    model.decision_threshold_ = threshold
    skops.io.dump(model, path)


@pytest.fixture(scope="module")
def two_versions(
    registry_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, str]:
    """Settings on a registry copy where v1 is champion and v2 is registered without alias."""
    home = tmp_path_factory.mktemp("integrity") / "home"
    shutil.copytree(registry_home, home)
    settings = Settings(
        home=home,
        mlflow_artifact_root=(registry_home / "mlartifacts").resolve().as_uri(),
        _env_file=None,
    )
    return settings, register_model(settings, seed=7)


@pytest.fixture
def v2(two_versions: tuple[Settings, str], tmp_path: Path) -> Iterator[tuple[Settings, str, Path]]:
    """v2 with its stored files and tags restored after the test."""
    settings, version = two_versions
    folder = stored_folder(settings, version)
    backup = tmp_path / "backup"
    shutil.copytree(folder, backup)
    client = mlflow_client(settings)
    recorded = client.get_model_version(settings.model_name, version).tags[CONTENT_HASH_TAG]
    yield settings, version, folder
    shutil.rmtree(folder)
    shutil.copytree(backup, folder)
    client.set_model_version_tag(settings.model_name, version, CONTENT_HASH_TAG, recorded)


def test_registration_records_the_hash_of_the_stored_files(v2, tmp_path: Path) -> None:
    settings, version, _ = v2
    tags = mlflow_client(settings).get_model_version(settings.model_name, version).tags
    assert tags[CONTENT_HASH_TAG] == artifact_sha256(
        download_version(settings, version, tmp_path / "dl")
    )
    assert load_model(settings, version=version).version == version


def test_a_resaved_artifact_with_another_threshold_is_refused(v2) -> None:
    settings, version, folder = v2
    original = load_model(settings, version=version).model.decision_threshold_
    resave_with_threshold(folder, 0.01)
    with pytest.raises(UntrustedModelError, match="changed after registration"):
        load_model(settings, version=version)
    # The check is what refuses it: with the hash re-recorded, the tampered model would load.
    record_content_hash(mlflow_client(settings), settings, version)
    assert load_model(settings, version=version).model.decision_threshold_ == 0.01 != original


def test_changed_metadata_is_refused_too(v2) -> None:
    settings, version, folder = v2
    (folder / "MLmodel").write_text((folder / "MLmodel").read_text() + "\n# edited\n")
    with pytest.raises(UntrustedModelError, match="changed after registration"):
        load_model(settings, version=version)


@pytest.mark.parametrize("escape", ["../../outside.skops", "ABSOLUTE"])
def test_a_model_file_outside_the_artifact_folder_is_refused(v2, escape: str) -> None:
    settings, version, folder = v2
    # A perfectly loadable model outside the folder: only the containment check stops it.
    outside = folder.parent.parent / "outside.skops"
    shutil.copy(folder / "model.skops", outside)
    target = str(outside) if escape == "ABSOLUTE" else escape
    meta = yaml.safe_load((folder / "MLmodel").read_text())
    meta["flavors"]["sklearn"]["pickled_model"] = target
    (folder / "MLmodel").write_text(yaml.safe_dump(meta))
    record_content_hash(mlflow_client(settings), settings, version)  # the hash matches
    try:
        with pytest.raises(UntrustedModelError, match="outside its artifact folder"):
            load_model(settings, version=version)
    finally:
        outside.unlink()


def test_a_version_without_a_recorded_hash_is_refused(v2) -> None:
    settings, version, _ = v2
    mlflow_client(settings).delete_model_version_tag(settings.model_name, version, CONTENT_HASH_TAG)
    with pytest.raises(UntrustedModelError, match=f"no {CONTENT_HASH_TAG} tag"):
        load_model(settings, version=version)


def test_contained_path_resolves_inside_only(tmp_path: Path) -> None:
    (tmp_path / "model.skops").write_bytes(b"x")
    assert contained_path("m", tmp_path, "model.skops") == (tmp_path / "model.skops").resolve()
    for bad in ("../x", "/etc/passwd", "", ".", None, "a/../../x"):
        with pytest.raises(UntrustedModelError):
            contained_path("m", tmp_path, bad)


def test_the_hash_covers_names_and_contents(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"12")
    (tmp_path / "b").write_bytes(b"3")
    first = artifact_sha256(tmp_path)
    (tmp_path / "a").write_bytes(b"1")
    (tmp_path / "b").write_bytes(b"23")  # same bytes overall, moved between files
    assert artifact_sha256(tmp_path) != first
    (tmp_path / "registered_model_meta").write_text("written by the MLflow client")
    assert artifact_sha256(tmp_path) == artifact_sha256(tmp_path)


# --- a bounded registry ---------------------------------------------------------------------


def closed_port() -> int:
    """A local port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_registry_fails_in_seconds_with_a_masked_reason(tmp_path: Path) -> None:
    uri = f"http://ops:pa55word@127.0.0.1:{closed_port()}"
    settings = Settings(home=tmp_path, mlflow_tracking_uri=uri, _env_file=None)
    started = time.monotonic()
    with pytest.raises(MlflowException) as raised:
        alias_version(settings)
    # MLflow's defaults (7 retries, backoff 2) took about 4 minutes here.
    assert time.monotonic() - started < 5
    reason = describe_error(settings, raised.value)
    assert "unreachable" in reason and "CRIMEFLOW_MLFLOW_TRACKING_URI" in reason
    assert "pa55word" not in reason and "ops:********@127.0.0.1" in reason


def test_mlflow_client_applies_the_request_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    for variable in ("TIMEOUT", "MAX_RETRIES", "BACKOFF_FACTOR"):
        monkeypatch.setenv(f"MLFLOW_HTTP_REQUEST_{variable}", "99")  # restored afterwards
    mlflow_client(
        Settings(
            mlflow_request_timeout_s=3,
            mlflow_request_max_retries=0,
            mlflow_request_backoff_factor=2,
            _env_file=None,
        )
    )
    # Read back the way MLflow's REST client reads them at every request.
    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 3
    assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 0
    assert MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get() == 2
