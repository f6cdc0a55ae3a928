"""The drift report store: lake layout, index order, HTML, and the Evidently workspace."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pytest

from crimeflow.contract.settings import Settings
from crimeflow.standins.generate import arrest_probability, generate_incidents
from crimeflow.stores.lake import Lake
from monitoring import report_store as reports
from monitoring.drift import DriftConfig, DriftResult, compute_drift
from monitoring.report_store import (
    INDEX_KEY,
    PROJECT_NAME,
    ReportStore,
    default_workspace_path,
    is_report_id,
    new_report_id,
)

START = datetime(2025, 3, 1, tzinfo=UTC)


def _frames(rows: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A scored reference and a prediction-log-shaped window of the same distribution."""
    reference = generate_incidents("2024-01", "2024-06", rows_per_month=300, seed=seed)
    reference = reference.assign(arrest_probability=arrest_probability(reference))
    window = generate_incidents("2025-03", "2025-03", rows_per_month=rows, seed=seed + 1)
    window = window.drop(columns=["arrest"]).assign(
        probability=arrest_probability(window), served_at=window["date"].dt.tz_localize("UTC")
    )
    return reference, window


@pytest.fixture(scope="module")
def checked() -> tuple:
    """One real check (result + Evidently snapshot) that the tests store several times."""
    reference, window = _frames(1200, 1)
    return compute_drift(
        reference, window, DriftConfig(), window_start=START, window_end=START + timedelta(7)
    )


@pytest.fixture(scope="module")
def insufficient() -> DriftResult:
    reference, window = _frames(40, 2)
    result, snapshot = compute_drift(reference, window, DriftConfig(), model_version="4")
    assert snapshot is None
    return result


def _at(result: DriftResult, minutes: int, version: str) -> DriftResult:
    """The same result as if checked `minutes` after START, for model `version`."""
    return msgspec.structs.replace(
        result, checked_at=START + timedelta(minutes=minutes), model_version=version
    )


def _store(tmp_path: Path) -> ReportStore:
    return ReportStore(Lake(str(tmp_path / "lake")), tmp_path / "home" / "evidently")


def test_saved_reports_are_listed_newest_first_and_served(tmp_path: Path, checked) -> None:
    result, snapshot = checked
    store = _store(tmp_path)
    ids = [
        store.save(_at(result, minutes, str(version)), snapshot)
        for version, minutes in enumerate((0, 30, 10), start=1)
    ]
    listed = store.list()
    # Newest first by check time, not by save order.
    assert [e["id"] for e in listed] == [ids[1], ids[2], ids[0]]
    assert [e["model_version"] for e in listed] == ["2", "3", "1"]
    assert store.latest() == listed[0]
    for entry in listed:
        assert {"id", "created_at", "window_start", "window_end", "model_version"} <= set(entry)
        assert entry["drift_detected"] is False and entry["drift_share"] == result.drift_share
        assert entry["status"] == "no_drift" and entry["workspace_run_id"]
        assert entry["window_start"] == START.isoformat()
    page = store.html(ids[0])
    assert page is not None and page.lstrip().lower().startswith(b"<!doctype html")
    assert b"Drift" in page
    assert store.result(ids[0]) == _at(result, 0, "1")


def test_snapshot_json_loads_back_into_evidently(tmp_path: Path, checked) -> None:
    from evidently.core.report import Snapshot

    result, snapshot = checked
    store = _store(tmp_path)
    report_id = store.save(result, snapshot)
    stored = store.snapshot_json(report_id)
    assert stored is not None
    loaded = Snapshot.loads(stored.decode())
    columns = {
        m["config"]["column"]
        for m in loaded.dict()["metrics"]
        if m["config"]["type"].endswith("ValueDrift")
    }
    assert {c.name for c in result.columns} | {"probability"} == columns


def test_lake_layout(tmp_path: Path, checked) -> None:
    result, snapshot = checked
    store = _store(tmp_path)
    report_id = store.save(result, snapshot)
    folder = tmp_path / "lake" / "reports" / "drift" / report_id
    # `_tmp` is the lake's staging folder for atomic writes.
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith("_")) == [
        "report.html",
        "result.json",
        "snapshot.json",
    ]
    assert (tmp_path / "lake" / INDEX_KEY).is_file()


def test_workspace_keeps_one_project_with_every_run(tmp_path: Path, checked) -> None:
    from evidently.ui.workspace import Workspace

    result, snapshot = checked
    store = _store(tmp_path)
    for minutes in range(3):
        store.save(_at(result, minutes, "1"), snapshot)
    # A new store (the next flow run) reuses the project instead of adding another.
    again = _store(tmp_path)
    again.save(_at(result, 5, "2"), snapshot)

    workspace = Workspace(str(tmp_path / "home" / "evidently"))
    projects = workspace.search_project(PROJECT_NAME)
    assert len(projects) == 1
    assert len(workspace.list_runs(projects[0].id)) == 4
    dashboard = workspace.get_dashboard(projects[0].id)
    titles = {panel.title for panel in dashboard.panels}
    assert {"Share of drifted columns", "Drifted columns"} <= titles
    run_ids = {str(run) for run in workspace.list_runs(projects[0].id)}
    assert {e["workspace_run_id"] for e in again.list()} == run_ids


def test_insufficient_data_is_stored_without_a_snapshot(tmp_path: Path, insufficient) -> None:
    store = _store(tmp_path)
    report_id = store.save(insufficient, None)
    entry = store.latest()
    assert entry is not None and entry["id"] == report_id
    assert entry["status"] == "insufficient_data" and entry["drift_detected"] is None
    assert entry["workspace_run_id"] is None
    assert store.snapshot_json(report_id) is None
    page = store.html(report_id)
    assert page is not None and b"insufficient data" in page
    assert b"40" in page  # the row count that was too small


def test_unknown_and_malformed_ids_serve_nothing(tmp_path: Path, insufficient) -> None:
    store = _store(tmp_path)
    assert store.list() == [] and store.latest() is None
    store.save(insufficient, None)
    assert store.html("20990101T000000Z-abcd") is None
    assert store.html("../index.json") is None and store.result("index") is None
    assert not is_report_id("20250101T000000Z") and is_report_id("20250101T000000Z-0a9f")


def test_ids_stay_unique_when_the_random_suffix_repeats(
    tmp_path: Path, insufficient, monkeypatch: pytest.MonkeyPatch
) -> None:
    suffixes = itertools.chain(["abcd", "abcd"], itertools.repeat("ef01"))
    monkeypatch.setattr(reports.secrets, "token_hex", lambda _n: next(suffixes))
    store = _store(tmp_path)
    first = store.save(insufficient, None)
    second = store.save(insufficient, None)  # same check time, same first suffix
    assert first == f"{insufficient.checked_at:%Y%m%dT%H%M%SZ}-abcd"
    assert second != first and len(store.list()) == 2


def test_report_ids_sort_by_time() -> None:
    early = new_report_id(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    late = new_report_id(datetime(2025, 1, 2, 3, 4, 6, tzinfo=UTC))
    assert early.startswith("20250102T030405Z-") and early < late


def test_rebuild_index_restores_a_lost_index(tmp_path: Path, insufficient) -> None:
    store = _store(tmp_path)
    for minutes in range(3):
        store.save(_at(insufficient, minutes, "1"), None)
    before = store.list()
    (tmp_path / "lake" / INDEX_KEY).unlink()
    assert store.list() == []
    assert store.rebuild_index() == before == store.list()


def test_a_broken_workspace_does_not_lose_the_report(tmp_path: Path, checked) -> None:
    result, snapshot = checked
    blocker = tmp_path / "home" / "evidently"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    store = ReportStore(Lake(str(tmp_path / "lake")), blocker)
    report_id = store.save(result, snapshot)
    assert store.latest()["workspace_run_id"] is None
    assert store.html(report_id) is not None and store.result(report_id) == result


def test_workspace_path_lives_under_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", _env_file=None)
    assert default_workspace_path(settings.home) == tmp_path / "home" / "evidently"


def test_store_on_s3(s3_settings: Settings, insufficient) -> None:
    store = ReportStore(Lake.from_settings(s3_settings), s3_settings.home / "evidently")
    ids = [store.save(_at(insufficient, m, "1"), None) for m in (0, 1)]
    assert [e["id"] for e in store.list()] == ids[::-1]
    assert store.html(ids[0]) is not None
    store.lake.fs.rm_file(store.lake.url_for(INDEX_KEY))
    assert [e["id"] for e in store.rebuild_index()] == ids[::-1]


def test_index_entries_are_plain_json(tmp_path: Path, checked) -> None:
    result, snapshot = checked
    store = _store(tmp_path)
    store.save(result, snapshot)
    entry = store.latest()
    assert entry is not None
    assert all(isinstance(v, str | int | float | bool | list | type(None)) for v in entry.values())
    assert np.isclose(entry["drift_share"], result.drift_share)
