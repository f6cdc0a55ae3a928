"""The monthly ETL flow end to end: SODA stand-in over HTTP → sodapy → validate → enrich → lake."""

from __future__ import annotations

import weakref
from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from crimeflow.contract.months import previous_month, shift_month
from crimeflow.domain.validate import ValidationFailed
from crimeflow.standins.generate import add_bad_rows, generate_incidents, to_soda_strings
from crimeflow.standins.soda import StandinServer
from crimeflow.stores.lake import CLEAN_CRIMES, FEATURES, QUARANTINE_CRIMES, RAW_CRIMES, Lake
from crimeflow.stores.socrata import SodaSource
from flows.etl import monthly_etl

ROWS = 1500


@pytest.fixture(scope="module")
def incidents() -> pd.DataFrame:
    """Three generated months, 2024-01..03."""
    return generate_incidents("2024-01", "2024-03", rows_per_month=ROWS, seed=11)


def rows_in(frame: pd.DataFrame, month: str) -> int:
    return int((frame["date"].dt.strftime("%Y-%m") == month).sum())


def test_month_run_fills_every_zone_and_a_rerun_changes_nothing(incidents, configure):
    with StandinServer(incidents) as server:
        settings = configure(socrata_url=server.url)
        first = monthly_etl(month="2024-02")
        lake = Lake.from_settings(settings)
        mtimes = {p: lake.fs.modified(p) for p in lake.fs.find(lake.root)}
        second = monthly_etl(month="2024-02")

    [month] = first["months"]
    source_rows = rows_in(incidents, "2024-02")
    assert month["pulled"] == source_rows
    clean = lake.read(CLEAN_CRIMES, "2024-02")
    features = lake.read(FEATURES, "2024-02")
    assert len(clean) == source_rows - month["quarantined"]
    assert clean["id"].is_unique
    assert len(features) == len(clean)
    assert features["station_distance_m"].notna().mean() > 0.98
    assert {"hour", "weekday", "season", "day_part", "nearest_station_district"} <= set(features)
    manifest = lake.read_json(first["manifest_key"])
    assert manifest["partitions"]["2024-02"]["clean"]["rows"] == len(clean)
    assert len(manifest["partitions"]["2024-02"]["features"]["sha256"]) == 64
    assert "2024-02" in manifest["source"]["queries"]
    assert lake.read_json("window.json")["months"] == ["2024-02"]

    assert [m["changed"] for m in second["months"]] == [False]
    for path, modified in mtimes.items():
        if "/data.parquet" in path:
            assert lake.fs.modified(path) == modified, path


def test_backfill_on_empty_lake_then_next_month_only(configure):
    last = previous_month(datetime.now(ZoneInfo("America/Chicago")).date())
    first = shift_month(last, -1)
    data = generate_incidents(shift_month(first, -1), last, rows_per_month=500, seed=3)
    with StandinServer(data) as server:
        configure(socrata_url=server.url, backfill_months=2)
        backfill = monthly_etl()
        again = monthly_etl()
    assert [m["month"] for m in backfill["months"]] == [first, last]
    assert [m["month"] for m in again["months"]] == [last]
    assert backfill["window"] == [first, last]


def test_late_arrests_are_re_pulled_and_upserted(incidents, configure):
    with StandinServer(incidents) as server:
        settings = configure(socrata_url=server.url)
        monthly_etl(month="2024-01")
    january = incidents[incidents["date"].dt.month == 1]
    late_ids = january.loc[~january["arrest"].astype(bool), "id"].head(25)
    updated = incidents.copy()
    late = updated["id"].isin(late_ids)
    updated.loc[late, "arrest"] = True
    updated.loc[late, "updated_on"] = pd.Timestamp("2024-06-01 09:00:00")

    with StandinServer(updated) as server:
        configure(socrata_url=server.url)
        result = monthly_etl(month="2024-02")

    assert result["late_updates_pulled"] == 25
    by_month = {m["month"]: m for m in result["months"]}
    assert by_month["2024-01"]["updated_ids"] == 25 and by_month["2024-01"]["new_ids"] == 0
    clean = Lake.from_settings(settings).read(CLEAN_CRIMES, "2024-01").set_index("id")
    assert clean.loc[late_ids.tolist(), "arrest"].all()
    assert clean.index.is_unique


def test_bad_rows_go_to_quarantine_with_a_reason(incidents, configure):
    month = incidents[incidents["date"].dt.month == 3]
    dirty = add_bad_rows(month, share=0.02, seed=5)
    with StandinServer(dirty) as server:
        settings = configure(socrata_url=server.url)
        result = monthly_etl(month="2024-03")
    lake = Lake.from_settings(settings)
    quarantine = lake.read(QUARANTINE_CRIMES, "2024-03")
    assert len(quarantine) == result["months"][0]["quarantined"] > 0
    assert quarantine["reason"].str.len().gt(0).all()
    # Rows without a date are never returned by a date-filtered SODA query, so compare with
    # what was pulled, and check that every other corrupted row was caught.
    pulled = result["months"][0]["pulled"]
    assert len(lake.read(CLEAN_CRIMES, "2024-03")) + len(quarantine) == pulled
    missing_date = len(dirty.attrs["bad_rows"]["missing_date"])
    assert pulled == len(month) - missing_date
    assert len(quarantine) == round(0.02 * len(month)) - missing_date
    assert sum(result["quarantine_reasons"].values()) >= len(quarantine)


def test_too_many_bad_rows_fail_the_flow_and_write_nothing(incidents, configure):
    month = incidents[incidents["date"].dt.month == 3]
    dirty = add_bad_rows(month, share=0.2, seed=5)
    with StandinServer(dirty) as server:
        settings = configure(socrata_url=server.url)
        with pytest.raises(ValidationFailed, match=r"above the 5\.00% threshold"):
            monthly_etl(month="2024-03")
    lake = Lake.from_settings(settings)
    for zone in (RAW_CRIMES, CLEAN_CRIMES, FEATURES):
        assert lake.months(zone) == []
    assert lake.read_json("state/etl.json") is None


def test_the_lake_can_live_on_s3(incidents, configure, s3_settings):
    with StandinServer(incidents) as server:
        settings = configure(
            socrata_url=server.url,
            lake_url=s3_settings.lake_url,
            s3_endpoint_url=s3_settings.s3.endpoint_url,
            s3_access_key_id="test",
            s3_secret_access_key="test",
        )
        result = monthly_etl(month="2024-01")
    lake = Lake.from_settings(settings)
    assert settings.lake_url.startswith("s3://")
    assert lake.months(FEATURES) == ["2024-01"]
    assert len(lake.read(FEATURES, "2024-01")) == result["months"][0]["clean"]


def test_each_run_publishes_a_markdown_summary_with_a_plot(incidents, configure):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter

    with StandinServer(incidents) as server:
        configure(socrata_url=server.url)
        result = monthly_etl(month="2024-03")
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["etl-summary"])),
            flow_run_filter=FlowRunFilter(id={"any_": [result["run_id"]]}),
        )
    [summary] = artifacts
    assert summary.type == "markdown"
    assert f"**{rows_in(incidents, '2024-03'):,}** rows pulled" in summary.data
    assert "data:image/png;base64," in summary.data


def test_the_raw_zone_keeps_socrata_text(incidents, configure):
    with StandinServer(incidents) as server:
        settings = configure(socrata_url=server.url)
        monthly_etl(month="2024-01")
    raw = Lake.from_settings(settings).read(RAW_CRIMES, "2024-01")
    assert all(isinstance(dtype, pd.StringDtype) for dtype in raw.dtypes)
    assert set(raw["arrest"].unique()) == {"true", "false"}
    assert raw["beat"].str.fullmatch(r"\d{4}").all()
    assert raw["date"].str.endswith(".000").all()  # SODA's floating timestamp text


def test_a_backfill_holds_one_month_at_a_time(configure, monkeypatch):
    """Each month is pulled only once the month before is written, and by then none of the
    earlier months' frames (pulled, raw, clean, quarantine, features) is alive any more."""
    last = previous_month(datetime.now(ZoneInfo("America/Chicago")).date())
    months = [shift_month(last, offset) for offset in range(-3, 1)]
    data = generate_incidents(months[0], last, rows_per_month=300, seed=7)
    events: list[tuple[str, str, list[str]]] = []
    frames: list[tuple[str, weakref.ref]] = []  # (month, the frame) of every month so far

    def alive() -> list[str]:
        return sorted({month for month, ref in frames if ref() is not None})

    def fetch(self, dataset, where, select, on_progress=None):
        frame = real_fetch(self, dataset, where, select, on_progress)
        if "date >=" in (where or ""):
            month = where.split("'")[1][:7]
            events.append(("fetch", month, alive()))
            frames.append((month, weakref.ref(frame)))
        return frame

    def write(self, zone, frame, month=None):
        if month is not None:
            events.append(("write", month, [zone]))
            frames.append((month, weakref.ref(frame)))
        return real_write(self, zone, frame, month)

    real_fetch, real_write = SodaSource.fetch, Lake.write
    monkeypatch.setattr(SodaSource, "fetch", fetch)
    monkeypatch.setattr(Lake, "write", write)
    with StandinServer(data) as server:
        configure(socrata_url=server.url, backfill_months=len(months))
        result = monthly_etl()

    assert [m["month"] for m in result["months"]] == months
    fetches = [(month, live) for kind, month, live in events if kind == "fetch"]
    # When a month is pulled, no frame of any earlier month is still in memory.
    assert fetches == [(month, []) for month in months]
    # Pulls and writes interleave: month by month, each month's four zones written in turn.
    zones = ["clean/crimes", "quarantine/crimes", "features", "raw/crimes"]
    expected = [e for m in months for e in [("fetch", m, []), *(("write", m, [z]) for z in zones)]]
    assert events == expected
    assert alive() == []


def test_a_bad_month_stops_a_backfill_before_it_is_written_and_commits_nothing(configure):
    last = previous_month(datetime.now(ZoneInfo("America/Chicago")).date())
    months = [shift_month(last, offset) for offset in range(-2, 1)]
    data = generate_incidents(months[0], last, rows_per_month=300, seed=9)
    bad = data["date"].dt.strftime("%Y-%m") == months[1]
    dirty = pd.concat([to_soda_strings(data[~bad]), add_bad_rows(data[bad], share=0.2, seed=5)])
    with StandinServer(dirty.reset_index(drop=True)) as server:
        settings = configure(socrata_url=server.url, backfill_months=len(months))
        with pytest.raises(ValidationFailed, match=r"above the 5\.00% threshold"):
            monthly_etl()
    lake = Lake.from_settings(settings)
    # The month before is whole in every zone; the bad month and the ones after are not there.
    for zone in (RAW_CRIMES, CLEAN_CRIMES, QUARANTINE_CRIMES, FEATURES):
        assert lake.months(zone) == months[:1]
    # Not committed: no state, no training window, so the next run pulls them all again.
    assert lake.read_json("state/etl.json") is None
    assert lake.read_json("window.json") is None


def test_an_empty_past_month_fails_the_run_before_anything_is_written_for_it(configure):
    """The source lost a month (no rows for 2024-03): the run names the month and the counts
    of the months before it, and 2024-03 gets no partition; leading empty months are skipped."""
    data = generate_incidents("2024-01", "2024-04", rows_per_month=300, seed=13)
    gap = data[data["date"].dt.strftime("%Y-%m") != "2024-03"].reset_index(drop=True)
    with StandinServer(gap) as server:
        settings = configure(socrata_url=server.url)
        monthly_etl(month="2023-12")  # before the source's first data: skipped, not a failure
        monthly_etl(month="2024-01")
        monthly_etl(month="2024-02")
        with pytest.raises(ValidationFailed) as caught:
            monthly_etl(month="2024-03")
        monthly_etl(month="2024-04")  # judged by the months with data, 2024-01 and 02
    assert str(caught.value).startswith("month 2024-03 has 0 rows; the trailing months have ")
    assert "2024-01: 300 / 2024-02: 300" in str(caught.value)
    lake = Lake.from_settings(settings)
    for zone in (RAW_CRIMES, CLEAN_CRIMES, QUARANTINE_CRIMES, FEATURES):
        assert lake.months(zone) == ["2024-01", "2024-02", "2024-04"], zone
    assert lake.read_json("state/etl.json")["months"] == ["2024-01", "2024-02", "2024-04"]
