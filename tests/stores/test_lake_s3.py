"""S3-only lake behaviour against the moto server: caches, foreign writers, object layout.

The shared behaviour suite (round trip, atomicity, idempotency, listing, JSON) runs on S3 too:
see the `lake` fixture in test_lake.py.
"""

from __future__ import annotations

import io
from typing import Any

import pandas as pd

from crimeflow.contract.settings import Settings
from crimeflow.stores.lake import Lake, frame_hash


def frame(ids: list[int]) -> pd.DataFrame:
    """A small frame with an id column and a nullable label."""
    return pd.DataFrame(
        {
            "id": pd.array(ids, dtype="Int64"),
            "arrest": pd.array([i % 2 == 0 for i in ids], dtype="boolean"),
        }
    )


def bucket_and_prefix(settings: Settings) -> tuple[str, str]:
    """Split the settings' s3://bucket/prefix lake URL."""
    bucket, _, prefix = settings.lake_url.removeprefix("s3://").partition("/")
    return bucket, prefix


def put_parquet(client: Any, bucket: str, key: str, data: pd.DataFrame) -> None:
    """Store a frame as Parquet the way another tool would (no crimeflow footer metadata)."""
    buffer = io.BytesIO()
    data.to_parquet(buffer, index=False)
    client.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())


def prime_listing_cache(lake: Lake, zone: str) -> None:
    """Fill the shared s3fs instance's listing cache, as any other user of it (pandas) may."""
    base = f"{lake.root}/{zone}"
    for folder in lake.fs.ls(base, detail=False):
        for path in lake.fs.ls(folder, detail=False):
            lake.fs.info(path)
    assert base in lake.fs.dircache


def test_objects_land_under_the_configured_prefix(s3_settings: Settings, s3_client: Any) -> None:
    lake = Lake.from_settings(s3_settings)
    bucket, prefix = bucket_and_prefix(s3_settings)
    assert lake.url == s3_settings.lake_url
    result = lake.write("features", frame([1, 2]), "2024-05")
    assert result.url == f"{s3_settings.lake_url}/features/month=2024-05/data.parquet"
    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")
    assert [o["Key"] for o in listed["Contents"]] == [
        f"{prefix}/features/month=2024-05/data.parquet"
    ]


def test_listing_sees_objects_written_by_another_process(
    s3_settings: Settings, s3_client: Any
) -> None:
    lake = Lake.from_settings(s3_settings)
    bucket, prefix = bucket_and_prefix(s3_settings)
    lake.write("clean/crimes", frame([1]), "2024-01")
    assert lake.months("clean/crimes") == ["2024-01"]
    prime_listing_cache(lake, "clean/crimes")
    put_parquet(s3_client, bucket, f"{prefix}/clean/crimes/month=2024-02/data.parquet", frame([2]))
    assert lake.months("clean/crimes") == ["2024-01", "2024-02"]
    assert lake.exists("clean/crimes/month=2024-02/data.parquet")


def test_read_after_a_foreign_overwrite_returns_the_new_object(
    s3_settings: Settings, s3_client: Any
) -> None:
    lake = Lake.from_settings(s3_settings)
    bucket, prefix = bucket_and_prefix(s3_settings)
    lake.write("features", frame([1]), "2024-01")
    prime_listing_cache(lake, "features")
    bigger = frame(list(range(5_000)))
    put_parquet(s3_client, bucket, f"{prefix}/features/month=2024-01/data.parquet", bigger)
    pd.testing.assert_frame_equal(lake.read("features", "2024-01"), bigger)
    prime_listing_cache(lake, "features")
    put_parquet(s3_client, bucket, f"{prefix}/features/month=2024-01/data.parquet", frame([7]))
    assert lake.content_hash("features", "2024-01") == frame_hash(frame([7]))


def test_foreign_partition_is_hashed_by_content_and_not_rewritten(
    s3_versioned_settings: Settings, s3_client: Any
) -> None:
    lake = Lake.from_settings(s3_versioned_settings)
    bucket, prefix = bucket_and_prefix(s3_versioned_settings)
    key = f"{prefix}/features/month=2024-03/data.parquet"
    data = frame([3, 1, 2])
    put_parquet(s3_client, bucket, key, data)
    assert lake.content_hash("features", "2024-03") == frame_hash(data)
    assert lake.write("features", data.iloc[::-1], "2024-03").changed is False
    versions = s3_client.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
    assert len(versions) == 1


def test_a_broken_object_is_replaced_by_the_next_write(
    s3_settings: Settings, s3_client: Any
) -> None:
    lake = Lake.from_settings(s3_settings)
    bucket, prefix = bucket_and_prefix(s3_settings)
    s3_client.put_object(
        Bucket=bucket, Key=f"{prefix}/raw/stations/data.parquet", Body=b"<html>oops</html>"
    )
    assert lake.content_hash("raw/stations") is None
    assert lake.write("raw/stations", frame([1])).changed is True
    pd.testing.assert_frame_equal(lake.read("raw/stations"), frame([1]))


def test_two_lake_objects_on_one_url_agree(s3_settings: Settings) -> None:
    writer, reader = Lake.from_settings(s3_settings), Lake.from_settings(s3_settings)
    assert reader.read_json("state/etl.json") is None
    writer.write_json("state/etl.json", {"months": ["2024-01"]})
    assert reader.read_json("state/etl.json") == {"months": ["2024-01"]}
    writer.write_json("state/etl.json", {"months": ["2024-01", "2024-02"]})
    assert reader.read_json("state/etl.json") == {"months": ["2024-01", "2024-02"]}
