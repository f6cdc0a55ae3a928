"""The lake: pure helpers, then one behaviour suite run against a local folder and moto S3."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from crimeflow.contract.schema import empty_canonical, to_canonical
from crimeflow.contract.settings import Settings
from crimeflow.stores import lake as lake_module
from crimeflow.stores.lake import (
    Lake,
    WriteResult,
    frame_hash,
    month_of,
    rolling_window,
)

CANONICAL_DTYPES = {
    "id": "Int64",
    "case_number": "string",
    "date": "datetime64[ns]",
    "arrest": "boolean",
    "domestic": "boolean",
    "beat": "string",
    "district": "string",
    "ward": "Int64",
    "community_area": "Int64",
    "x_coordinate": "float64",
    "year": "Int64",
    "updated_on": "datetime64[ns]",
    "latitude": "float64",
}


def incidents(ids: list[int], updated: list[str | None], month: str = "2024-05") -> pd.DataFrame:
    """Canonical incidents with the given ids and `updated_on` values; nulls sprinkled in."""
    n = len(ids)
    raw = pd.DataFrame(
        {
            "id": [str(i) for i in ids],
            "case_number": [f"JH{i}" if i % 3 else None for i in ids],
            "date": [f"{month}-{1 + i % 28:02d}T{i % 24:02d}:15:00" for i in ids],
            "primary_type": ["THEFT", "BATTERY", None, "ASSAULT"][:1] * n,
            "arrest": [["true", "false", None][i % 3] for i in ids],
            "domestic": [["false", "true"][i % 2] for i in ids],
            "beat": [["614", "1011", None][i % 3] for i in ids],
            "district": [["6", "10", None][i % 3] for i in ids],
            "ward": [[str(i % 50 + 1), None][i % 5 == 0] for i in ids],
            "community_area": [str(i % 77 + 1) for i in ids],
            "x_coordinate": [[1_170_000.5 + i, None][i % 4 == 0] for i in ids],
            "y_coordinate": [1_900_000.25 + i for i in ids],
            "updated_on": updated,
            "latitude": [[41.88 + i / 1e4, None][i % 4 == 0] for i in ids],
            "longitude": [-87.63 - i / 1e4 for i in ids],
        }
    )
    return to_canonical(raw)


# --- pure functions ---------------------------------------------------------------------------


def test_month_of_formats_timestamps_and_keeps_missing_as_na() -> None:
    stamps = pd.Series(pd.to_datetime(["2024-01-31 23:59:59", None, "2018-10-01 00:00:00"]))
    months = month_of(stamps)
    assert months.dtype == "string"
    assert months.tolist() == ["2024-01", pd.NA, "2018-10"]
    assert month_of(pd.Series(["2025-11-03T00:00:00.000", "garbage"])).tolist() == [
        "2025-11",
        pd.NA,
    ]


def test_rolling_window_keeps_newest_n_distinct_months_oldest_first() -> None:
    months = ["2024-03", "2023-12", "2024-01", "2024-03", "2024-02"]
    assert rolling_window(months, 2) == ["2024-02", "2024-03"]
    assert rolling_window(months, 12) == ["2023-12", "2024-01", "2024-02", "2024-03"]
    assert rolling_window([], 3) == []
    with pytest.raises(ValueError):
        rolling_window(months, 0)
    with pytest.raises(ValueError):
        rolling_window(["2024-13"], 1)


def test_frame_hash_ignores_row_order_index_and_column_order() -> None:
    frame = incidents(list(range(40)), ["2024-06-02T00:00:00"] * 40)
    shuffled = frame.sample(frac=1.0, random_state=7)
    assert not shuffled["id"].is_monotonic_increasing
    assert frame_hash(shuffled) == frame_hash(frame)
    assert frame_hash(frame.set_index("case_number", drop=False)) == frame_hash(frame)
    assert frame_hash(frame[list(reversed(frame.columns))]) == frame_hash(frame)


def test_frame_hash_sees_values_missingness_and_dtypes() -> None:
    frame = incidents(list(range(10)), ["2024-06-02T00:00:00"] * 10)
    base = frame_hash(frame)
    changed = frame.copy()
    changed.loc[3, "arrest"] = not bool(frame.loc[3, "arrest"])
    assert frame_hash(changed) != base
    later = frame.copy()
    later.loc[0, "updated_on"] += pd.Timedelta(seconds=1)
    assert frame_hash(later) != base
    blank = frame.copy()
    blank["case_number"] = blank["case_number"].fillna("")
    assert frame_hash(blank) != base  # '' is a value, <NA> is not
    as_float = frame.astype({"ward": "float64"})
    assert frame_hash(as_float) != base
    # Same values, same bytes, other dtype: it would read back differently, so it differs.
    assert frame_hash(frame.astype({"community_area": "int64"})) != base
    assert frame_hash(frame.astype({"primary_type": "category"})) != base
    # Moving a character between neighbouring strings must not collide.
    a = pd.DataFrame({"s": pd.array(["ab", "c"], dtype="string")})
    b = pd.DataFrame({"s": pd.array(["a", "bc"], dtype="string")})
    assert frame_hash(a) != frame_hash(b)


def test_frame_hash_ignores_bytes_hidden_under_missing_values() -> None:
    one = pd.arrays.IntegerArray(np.array([1, 99]), np.array([False, True]))
    two = pd.arrays.IntegerArray(np.array([1, 0]), np.array([False, True]))
    assert frame_hash(pd.DataFrame({"ward": one})) == frame_hash(pd.DataFrame({"ward": two}))


def test_frame_hash_orders_duplicate_ids_by_content() -> None:
    frame = pd.concat(
        [incidents([1], ["2024-06-01T00:00:00"]), incidents([1], ["2024-06-02T00:00:00"])],
        ignore_index=True,
    )
    assert frame_hash(frame) == frame_hash(frame.iloc[::-1])


# --- the behaviour suite, on both backends -------------------------------------------------------


@pytest.fixture(params=["local", "s3"])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Lake:
    """A fresh, empty lake in a tmp folder or under a fresh prefix on the moto S3 server."""
    if request.param == "local":
        return Lake.from_settings(Settings(home=tmp_path, lake_url=str(tmp_path / "lake")))
    return Lake.from_settings(request.getfixturevalue("s3_versioned_settings"))


def fingerprint(lake: Lake, key: str, request: pytest.FixtureRequest) -> Any:
    """Something that changes whenever the object at `key` is rewritten, even with equal bytes."""
    path = f"{lake.root}/{key}"
    if lake.url.startswith("s3://"):
        bucket, _, prefix = path.partition("/")
        client = request.getfixturevalue("s3_client")
        versions = client.list_object_versions(Bucket=bucket, Prefix=prefix).get("Versions", [])
        return sorted(v["VersionId"] for v in versions if v["Key"] == prefix)
    stat = os.stat(path)
    return (stat.st_ino, stat.st_mtime_ns)


def leftovers(lake: Lake) -> list[str]:
    """Every object under the lake whose path has a `_tmp` segment."""
    lake.fs.invalidate_cache(lake.root)
    return [p for p in lake.fs.find(lake.root) if "/_tmp/" in p]


def test_from_settings_defaults_to_a_folder_under_home(tmp_path: Path) -> None:
    lake = Lake.from_settings(Settings(home=tmp_path / "home"))
    assert lake.url == str((tmp_path / "home" / "lake").resolve())
    assert lake.partition_path("features", "2024-05") == "features/month=2024-05/data.parquet"
    assert lake.partition_path("raw/stations") == "raw/stations/data.parquet"
    assert lake.url_for("window.json") == f"{lake.url}/window.json"


@pytest.mark.parametrize(
    ("zone", "month"),
    [
        ("../etc", None),
        ("raw/crimes/", None),
        ("Raw", None),
        ("features", "2024-5"),
        ("x", "2024-00"),
    ],
)
def test_partition_path_rejects_bad_zones_and_months(tmp_path: Path, zone: str, month: str) -> None:
    with pytest.raises(ValueError):
        Lake(str(tmp_path)).partition_path(zone, month)


def test_canonical_dtypes_survive_a_parquet_round_trip(lake: Lake) -> None:
    frame = incidents(list(range(30)), ["2024-06-02T10:11:12.123456789"] * 29 + [None])
    result = lake.write("raw/crimes", frame, "2024-05")
    assert isinstance(result, WriteResult)
    assert (result.changed, result.rows, result.key) == (
        True,
        30,
        "raw/crimes/month=2024-05/data.parquet",
    )
    back = lake.read("raw/crimes", "2024-05")
    assert back is not None
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    for column, dtype in CANONICAL_DTYPES.items():
        assert str(back[column].dtype) == dtype, column
    assert frame_hash(back) == result.content_hash == lake.content_hash("raw/crimes", "2024-05")


def test_empty_and_extra_column_frames_round_trip(lake: Lake) -> None:
    empty = empty_canonical()
    lake.write("clean/crimes", empty, "2024-05")
    pd.testing.assert_frame_equal(lake.read("clean/crimes", "2024-05"), empty)
    rejected = incidents([1, 2], ["2024-06-02T00:00:00"] * 2)
    rejected["reason"] = ["latitude: out of bounds", "beat: missing"]
    lake.write("quarantine/crimes", rejected, "2024-05")
    pd.testing.assert_frame_equal(lake.read("quarantine/crimes", "2024-05"), rejected)


def test_row_count_reads_the_footer_and_is_none_for_a_missing_partition(lake: Lake) -> None:
    lake.write("raw/crimes", incidents([1, 2, 3], ["2024-06-02T00:00:00"] * 3), "2024-06")
    lake.write("raw/crimes", empty_canonical(), "2024-07")
    assert lake.row_count("raw/crimes", "2024-06") == 3
    assert lake.row_count("raw/crimes", "2024-07") == 0
    assert lake.row_count("raw/crimes", "2024-08") is None


def test_read_of_a_missing_partition_is_none(lake: Lake) -> None:
    assert lake.read("features", "2024-01") is None
    assert lake.content_hash("features", "2024-01") is None
    assert not lake.exists("features/month=2024-01/data.parquet")


def test_rewriting_equal_content_changes_nothing(
    lake: Lake, request: pytest.FixtureRequest
) -> None:
    frame = incidents(list(range(20)), ["2024-06-02T00:00:00"] * 20)
    first = lake.write("features", frame, "2024-05")
    key = first.key
    before = fingerprint(lake, key, request)
    # Same rows in another order and with another index: still the same content.
    again = lake.write("features", frame.sample(frac=1.0, random_state=1), "2024-05")
    assert first.changed is True
    assert again.changed is False
    assert again.content_hash == first.content_hash
    assert fingerprint(lake, key, request) == before
    changed = frame.copy()
    assert changed.loc[0, "arrest"]
    changed.loc[0, "arrest"] = False
    third = lake.write("features", changed, "2024-05")
    assert third.changed is True
    assert fingerprint(lake, key, request) != before
    pd.testing.assert_frame_equal(lake.read("features", "2024-05"), changed)


def test_failure_while_writing_keeps_the_old_partition_and_no_temp_files(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = incidents([1, 2, 3], ["2024-06-02T00:00:00"] * 3)
    lake.write("clean/crimes", old, "2024-05")
    seen_during_write: list[pd.DataFrame | None] = []

    def crash_half_way(table: Any, sink: Any) -> None:
        sink.write(b"PAR1" + b"\0" * 4096)  # a truncated Parquet file
        seen_during_write.append(lake.read("clean/crimes", "2024-05"))
        raise RuntimeError("disk full")

    monkeypatch.setattr(lake_module, "_write_parquet", crash_half_way)
    with pytest.raises(RuntimeError, match="disk full"):
        lake.write("clean/crimes", incidents([9], ["2024-06-03T00:00:00"]), "2024-05")
    # Readers saw the old partition while the new one was half written, and still do.
    pd.testing.assert_frame_equal(seen_during_write[0], old)
    pd.testing.assert_frame_equal(lake.read("clean/crimes", "2024-05"), old)
    assert leftovers(lake) == []


def test_failure_at_commit_keeps_old_json_and_no_temp_files(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake.write_json("state/etl.json", {"watermark": "2024-06-01T00:00:00"})

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("connection reset")

    if lake.url.startswith("s3://"):
        monkeypatch.setattr(lake.fs, "copy", refuse)
    else:
        monkeypatch.setattr(lake_module.os, "replace", refuse)
    with pytest.raises(OSError, match="connection reset"):
        lake.write_json("state/etl.json", {"watermark": "2024-07-01T00:00:00"})
    monkeypatch.undo()
    assert lake.read_json("state/etl.json") == {"watermark": "2024-06-01T00:00:00"}
    assert leftovers(lake) == []


def test_json_documents_round_trip_and_are_idempotent(
    lake: Lake, request: pytest.FixtureRequest
) -> None:
    assert lake.read_json("manifests/runs/r1.json") is None
    manifest = {
        "run_id": "r1",
        "months": ["2024-05"],
        "rows": {"raw": np.int64(30), "clean": 29},
        "arrest_rate": float("nan"),
        "started_at": datetime(2024, 6, 1, 12, 30),
    }
    assert lake.write_json("manifests/runs/r1.json", manifest) is True
    stored = lake.read_json("manifests/runs/r1.json")
    assert stored == {
        "run_id": "r1",
        "months": ["2024-05"],
        "rows": {"raw": 30, "clean": 29},
        "arrest_rate": None,
        "started_at": "2024-06-01T12:30:00",
    }
    before = fingerprint(lake, "manifests/runs/r1.json", request)
    assert lake.write_json("manifests/runs/r1.json", dict(reversed(manifest.items()))) is False
    assert fingerprint(lake, "manifests/runs/r1.json", request) == before
    assert lake.write_json("window.json", {"months": []}) is True
    assert lake.exists("window.json")
    assert leftovers(lake) == []


def test_months_lists_only_real_partitions_in_order(lake: Lake) -> None:
    frame = incidents([1], ["2024-06-02T00:00:00"])
    for month in ["2024-03", "2023-12", "2024-01"]:
        lake.write("features", frame, month)
    lake.write("clean/crimes", frame, "2022-01")
    lake.write_bytes("features/month=2024-02/notes.txt", b"not a partition")
    lake.write_bytes("features/month=2024-13/data.parquet", b"not a month")
    lake.write_bytes("features/_tmp/abandoned.parquet", b"crash debris")
    assert lake.months("features") == ["2023-12", "2024-01", "2024-03"]
    assert lake.months("clean/crimes") == ["2022-01"]
    assert lake.months("quarantine/crimes") == []


def test_keys_lists_a_folder_by_pattern_with_keys_relative_to_the_lake(lake: Lake) -> None:
    assert lake.keys("manifests/runs", "*.json") == []  # nothing there yet
    for name in ("b", "a"):
        lake.write_json(f"manifests/runs/{name}.json", {"run": name})
    lake.write_bytes("manifests/runs/notes.txt", b"x")
    lake.write_json("manifests/runs/deeper/c.json", {})
    assert lake.keys("manifests/runs", "*.json") == [
        "manifests/runs/a.json",
        "manifests/runs/b.json",
    ]
    assert lake.read_json(lake.keys("manifests/runs", "*.json")[0]) == {"run": "a"}


def test_read_months_concatenates_and_fails_on_a_missing_month(lake: Lake) -> None:
    may = incidents([1, 2], ["2024-06-02T00:00:00"] * 2, month="2024-05")
    june = incidents([3], ["2024-07-02T00:00:00"], month="2024-06")
    lake.write("features", may, "2024-05")
    lake.write("features", june, "2024-06")
    both = lake.read_months("features", ["2024-05", "2024-06"])
    pd.testing.assert_frame_equal(both, pd.concat([may, june], ignore_index=True))
    assert lake.read_months("features", []).empty
    with pytest.raises(FileNotFoundError):
        lake.read_months("features", ["2024-05", "2024-07"])


def test_single_file_zone_and_bytes(lake: Lake) -> None:
    stations = pd.DataFrame({"district": ["1", "Headquarters"], "latitude": [41.85, 41.83]})
    assert lake.write("raw/stations", stations).changed
    assert not lake.write("raw/stations", stations).changed
    pd.testing.assert_frame_equal(lake.read("raw/stations"), stations)
    assert lake.read_bytes("reports/etl/r1/plot.png") is None
    assert lake.write_bytes("reports/etl/r1/plot.png", b"\x89PNG") is True
    assert lake.read_bytes("reports/etl/r1/plot.png") == b"\x89PNG"


# --- real data ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.real_data
def test_ten_real_months_partition_and_rewrite_idempotently(
    real_data_dir: Path, tmp_path: Path
) -> None:
    source = real_data_dir / "crimes_2018-01_to_2018-10_chicagocrimedata-datastore.csv.gz"
    frame = to_canonical(pd.read_csv(source, dtype=str))
    months = month_of(frame["date"])
    lake = Lake(str(tmp_path / "lake"))
    for month, rows in frame.groupby(months):
        lake.write("raw/crimes", rows, str(month))
    assert lake.months("raw/crimes") == [f"2018-{m:02d}" for m in range(1, 11)]
    assert len(lake.read("raw/crimes", "2018-01")) == 20_237
    assert len(lake.read("raw/crimes", "2018-10")) == 22_185
    again = [lake.write("raw/crimes", rows, str(m)) for m, rows in frame.groupby(months)]
    assert not any(r.changed for r in again)
    everything = lake.read_months("raw/crimes", lake.months("raw/crimes"))
    assert len(everything) == 222_472
    assert frame_hash(everything) == frame_hash(frame)
