"""The lake through prefect-aws blocks: written from the settings, read back by the Lake.

A Prefect test harness (a real, throwaway API) holds the blocks; the lake is a prefix on the
moto S3 server. The process that opens the lake knows only the block's name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from crimeflow.contract.settings import Settings
from crimeflow.stores.lake import CLEAN_CRIMES, Lake
from crimeflow.stores.lake_blocks import (
    LakeBlockError,
    apply_lake_blocks,
    credentials_block_name,
    lake_location,
    split_s3_url,
)


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[None]:
    """A throwaway Prefect API for this module's blocks."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_split_s3_url():
    assert split_s3_url("s3://lake/a/b/") == ("lake", "a/b")
    assert split_s3_url("s3://lake") == ("lake", "")
    for bad in ("/tmp/lake", "s3://", "gs://b/p"):
        with pytest.raises(ValueError, match="s3://bucket"):
            split_s3_url(bad)


def test_apply_refuses_a_local_lake_or_no_name(tmp_path):
    settings = Settings(home=tmp_path, _env_file=None)
    with pytest.raises(LakeBlockError, match="CRIMEFLOW_LAKE_URL"):
        apply_lake_blocks("lake", settings.lake_url, settings.s3)
    with pytest.raises(LakeBlockError, match="CRIMEFLOW_S3_BUCKET_BLOCK"):
        apply_lake_blocks("", "s3://b/p", settings.s3)


def test_a_lake_opened_by_block_name_reads_and_writes_the_same_objects(
    prefect_api: None, s3_settings: Settings, s3_client: Any, tmp_path
):
    from prefect_aws import AwsCredentials, S3Bucket

    written = apply_lake_blocks("test-lake", s3_settings.lake_url, s3_settings.s3)
    assert written.url == s3_settings.lake_url
    assert written.credentials_block == credentials_block_name("test-lake")
    # On the server: the bucket block refers to the credentials block, keys stored as secrets.
    bucket = S3Bucket.load("test-lake", _sync=True)
    assert bucket.bucket_name == s3_settings.lake_url.removeprefix("s3://").split("/")[0]
    keys = AwsCredentials.load(written.credentials_block, _sync=True)
    assert keys.aws_client_parameters.endpoint_url == s3_settings.s3.endpoint_url

    # A process with only the block's name (no URL, no keys) opens the very same lake.
    by_block = Settings(home=tmp_path, s3_bucket_block="test-lake", _env_file=None)
    lake = Lake.from_settings(by_block)
    assert lake.url == s3_settings.lake_url
    frame = pd.DataFrame({"id": [1, 2], "arrest": [True, False]})
    assert lake.write(CLEAN_CRIMES, frame, "2024-05").changed
    direct = Lake.from_settings(s3_settings)
    pd.testing.assert_frame_equal(direct.read(CLEAN_CRIMES, "2024-05"), frame)
    bucket_name, prefix = s3_settings.lake_url.removeprefix("s3://").split("/", 1)
    keys_listed = s3_client.list_objects_v2(Bucket=bucket_name, Prefix=prefix)["Contents"]
    assert [o["Key"] for o in keys_listed] == [f"{prefix}/clean/crimes/month=2024-05/data.parquet"]


def test_applying_twice_updates_in_place(prefect_api: None, s3_settings: Settings):
    from prefect_aws import S3Bucket

    apply_lake_blocks("twice-lake", s3_settings.lake_url, s3_settings.s3)
    first = S3Bucket.load("twice-lake", _sync=True)
    moved = s3_settings.lake_url + "-moved"
    apply_lake_blocks("twice-lake", moved, s3_settings.s3)
    second = S3Bucket.load("twice-lake", _sync=True)
    assert second._block_document_id == first._block_document_id
    assert lake_location("twice-lake")[0] == moved


def test_a_missing_block_names_the_command_that_writes_it(prefect_api: None):
    with pytest.raises(LakeBlockError, match="crimeflow blocks apply"):
        lake_location("no-such-lake")
