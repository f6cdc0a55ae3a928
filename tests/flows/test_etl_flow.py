"""The monthly ETL flow end to end: SODA stand-in over HTTP → sodapy → validate → enrich → lake."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from crimeflow.contract.months import previous_month, shift_month
from crimeflow.domain.validate import ValidationFailed
from crimeflow.standins.generate import add_bad_rows, generate_incidents
from crimeflow.standins.soda import StandinServer
from crimeflow.stores.lake import CLEAN_CRIMES, FEATURES, QUARANTINE_CRIMES, RAW_CRIMES, Lake
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
