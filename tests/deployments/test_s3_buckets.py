"""The s3-init job's bucket creation, against the moto S3 server (tests/conftest.py)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from deployments import s3_buckets
from deployments.s3_buckets import CREATED, EXISTS, BucketError, ensure_bucket, ensure_buckets, main
from tests.conftest import S3_CREDENTIALS


def fresh_name() -> str:
    """A bucket name no other test uses."""
    return f"init-{uuid.uuid4().hex[:12]}"


def bucket_names(client: Any) -> set[str]:
    """Every bucket on the server."""
    return {b["Name"] for b in client.list_buckets()["Buckets"]}


def test_missing_buckets_are_created_and_existing_ones_left_alone(s3_client: Any) -> None:
    lake, artifacts = fresh_name(), fresh_name()
    s3_client.create_bucket(Bucket=artifacts)
    s3_client.put_object(Bucket=artifacts, Key="keep.txt", Body=b"x")
    assert ensure_buckets(s3_client, [lake, artifacts]) == {lake: CREATED, artifacts: EXISTS}
    assert {lake, artifacts} <= bucket_names(s3_client)
    # A second run (every `docker compose up`) changes nothing and keeps the objects.
    assert ensure_buckets(s3_client, [lake, artifacts]) == {lake: EXISTS, artifacts: EXISTS}
    assert s3_client.get_object(Bucket=artifacts, Key="keep.txt")["Body"].read() == b"x"


def test_other_regions_name_their_location(s3_endpoint: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="eu-west-1", **S3_CREDENTIALS)
    name = fresh_name()
    assert ensure_bucket(client, name, "eu-west-1") == CREATED
    assert client.get_bucket_location(Bucket=name)["LocationConstraint"] == "eu-west-1"


def test_an_unusable_answer_is_an_error_not_a_creation() -> None:
    from botocore.exceptions import ClientError

    class Forbidden:
        def __init__(self) -> None:
            self.created: list[str] = []

        def head_bucket(self, Bucket: str) -> None:
            raise ClientError(
                {"Error": {"Code": "403"}, "ResponseMetadata": {"HTTPStatusCode": 403}},
                "HeadBucket",
            )

        def create_bucket(self, Bucket: str) -> None:
            self.created.append(Bucket)

    client = Forbidden()
    with pytest.raises(BucketError, match="HEAD answered 403"):
        ensure_bucket(client, "someone-elses")
    assert client.created == []


def test_main_prints_each_bucket_and_exits_0(
    s3_endpoint: str, s3_client: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # boto3 reads the key from the environment, as in the compose job.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_CREDENTIALS["aws_secret_access_key"])
    name = fresh_name()
    assert main(["--endpoint-url", s3_endpoint, name]) == 0
    assert main(["--endpoint-url", s3_endpoint, name]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{name}: {CREATED}", f"{name}: {EXISTS}"]
    assert name in bucket_names(s3_client)


def test_main_exits_1_when_the_server_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    # Port 9 (discard) on loopback: refused at once; one attempt instead of ten.
    monkeypatch.setattr(s3_buckets, "s3_client", _no_retry_client)
    assert main(["--endpoint-url", "http://127.0.0.1:9", "lake"]) == 1
    assert "error:" in capsys.readouterr().err


def _no_retry_client(endpoint: str, region: str) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(retries={"max_attempts": 1}, connect_timeout=2)
    return boto3.client("s3", endpoint_url=endpoint, region_name=region, config=config)


def test_the_jobs_client_uses_path_style_and_patient_retries() -> None:
    client = s3_buckets.s3_client("http://seaweedfs:8333", "us-east-1")
    assert client.meta.endpoint_url == "http://seaweedfs:8333"
    assert client.meta.config.s3["addressing_style"] == "path"
    # More patient than boto3's default 3 attempts: the server may still be opening its stores.
    assert client.meta.config.retries["total_max_attempts"] > 3
