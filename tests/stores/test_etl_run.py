"""The late-update query of an ETL run and the manifest it writes."""

from __future__ import annotations

from datetime import datetime

from crimeflow.contract.settings import SocrataSettings
from crimeflow.domain.etl_summary import EtlRunSummary
from crimeflow.domain.ingest import EtlState
from crimeflow.stores.etl_run import late_updates_where, run_manifest
from crimeflow.stores.lake import WriteResult
from crimeflow.stores.socrata import crimes_in_month_where


def test_late_updates_only_after_a_watermark_and_for_months_not_pulled():
    first = EtlState()
    assert late_updates_where(first, ["2018-03"]) is None
    state = EtlState(months=["2018-01", "2018-02"], watermark="2018-03-01T12:00:00")
    assert late_updates_where(state, ["2018-01", "2018-02"]) is None  # all pulled again
    where = late_updates_where(state, ["2018-03"])
    assert where is not None
    assert where.startswith("updated_on > '2018-03-01T12:00:00")
    assert "date >= '2018-01-01T00:00:00" in where and "date < '2018-03-01T00:00:00" in where


def test_manifest_records_source_queries_and_every_partition():
    def written(key: str, changed: bool) -> WriteResult:
        return WriteResult(key, f"/lake/{key}", 3, f"sha-{key}", changed)

    summary = EtlRunSummary("r1", [], {}, 0, ["2018-03"], {}, "/lake", "manifests/runs/r1.json")
    soda = SocrataSettings(url="http://127.0.0.1:9", crimes_dataset="c-1", stations_dataset="s-1")
    manifest = run_manifest(
        soda,
        summary,
        ["2018-03"],
        {"2018-03": {"raw": written("raw/2018-03", True)}},
        written("raw/stations", False),
        datetime(2018, 4, 1, 2, 3, 4, 500),
    )
    assert manifest["run_id"] == "r1"
    assert manifest["partitions"]["2018-03"]["raw"] == {
        "key": "raw/2018-03",
        "rows": 3,
        "sha256": "sha-raw/2018-03",
        "changed": True,
    }
    assert manifest["stations"]["changed"] is False
    assert manifest["source"] == {
        "url": "http://127.0.0.1:9",
        "crimes_dataset": "c-1",
        "stations_dataset": "s-1",
        "queries": {"2018-03": crimes_in_month_where("2018-03")},
    }
    assert manifest["finished_at"] == "2018-04-01T02:03:04"
