"""The lake's S3 location and keys, kept in Prefect as prefect-aws blocks.

In the production form the lake's bucket, folder and credentials live on the Prefect server
(the UI's Blocks page), not in every process's environment:

    AwsCredentials  "<CRIMEFLOW_S3_BUCKET_BLOCK>-credentials"  keys, region, endpoint URL
    S3Bucket        "<CRIMEFLOW_S3_BUCKET_BLOCK>"              bucket, folder, -> the credentials

`apply_lake_blocks` (`crimeflow blocks apply`, and `crimeflow up` when the setting is given)
writes both from `CRIMEFLOW_LAKE_URL` and `CRIMEFLOW_S3_*`; `lake_location` reads them back as
the URL and fsspec options the `Lake` opens. The lake keeps its own write protocol on top
(temporary key, then one server-side copy; content-hash idempotency): the blocks say where and
how to connect, not how to commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from crimeflow.contract.settings import S3Settings

CREDENTIALS_SUFFIX = "-credentials"


class LakeBlockError(RuntimeError):
    """The lake's blocks cannot be written or read (bad setting, missing block)."""


@dataclass(frozen=True)
class LakeBlocks:
    """What `apply_lake_blocks` wrote: the two block names and the lake URL they describe."""

    bucket_block: str
    credentials_block: str
    url: str


def credentials_block_name(bucket_block: str) -> str:
    """The AwsCredentials block that belongs to an S3Bucket block."""
    return f"{bucket_block}{CREDENTIALS_SUFFIX}"


def split_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/folder/sub` -> ("bucket", "folder/sub"); ValueError for anything else."""
    scheme, _, rest = url.partition("://")
    bucket, _, folder = rest.partition("/")
    if scheme not in ("s3", "s3a") or not bucket:
        raise ValueError(f"the lake URL must be s3://bucket[/folder] for S3 blocks, got {url!r}")
    return bucket, folder.strip("/")


def apply_lake_blocks(bucket_block: str, lake_url: str, s3: S3Settings) -> LakeBlocks:
    """Create or update the lake's AwsCredentials and S3Bucket blocks (idempotent)."""
    from prefect_aws import AwsClientParameters, AwsCredentials, S3Bucket

    if not bucket_block:
        raise LakeBlockError("CRIMEFLOW_S3_BUCKET_BLOCK is not set: no block name to write")
    try:
        bucket, folder = split_s3_url(lake_url)
    except ValueError as error:
        raise LakeBlockError(f"CRIMEFLOW_LAKE_URL: {error}") from error
    credentials = AwsCredentials(
        aws_access_key_id=s3.access_key_id.get_secret_value() if s3.access_key_id else None,
        aws_secret_access_key=s3.secret_access_key,
        region_name=s3.region,
        aws_client_parameters=AwsClientParameters(endpoint_url=s3.endpoint_url),
    )
    credentials_name = credentials_block_name(bucket_block)
    # Saved first, so that the bucket block refers to it (the UI links the two) instead of
    # holding a second copy of the keys.
    credentials.save(credentials_name, overwrite=True, _sync=True)
    S3Bucket(bucket_name=bucket, bucket_folder=folder, credentials=credentials).save(
        bucket_block, overwrite=True, _sync=True
    )
    lake_location.cache_clear()
    return LakeBlocks(bucket_block, credentials_name, f"s3://{bucket}/{folder}".rstrip("/"))


@lru_cache(maxsize=4)
def lake_location(bucket_block: str) -> tuple[str, dict[str, Any]]:
    """The lake URL and fsspec options held by an S3Bucket block on the Prefect server.

    Read once per process (a flow run is a process; the API asks on its first report request):
    rotating the keys means `crimeflow blocks apply`, then restarting the API.
    """
    from prefect_aws import S3Bucket

    try:
        block = S3Bucket.load(bucket_block, _sync=True)
    except ValueError as error:  # Prefect's "Unable to find block document named ..."
        raise LakeBlockError(
            f"no S3Bucket block {bucket_block!r} on the Prefect server (CRIMEFLOW_S3_BUCKET_BLOCK);"
            " run `crimeflow blocks apply`"
        ) from error
    credentials = block.credentials
    secret = getattr(credentials, "aws_secret_access_key", None)
    parameters = getattr(credentials, "aws_client_parameters", None)
    # The same fsspec options as CRIMEFLOW_S3_* would give, from the block's values.
    s3 = S3Settings(
        endpoint_url=parameters.endpoint_url if parameters is not None else None,
        region=getattr(credentials, "region_name", None) or S3Settings().region,
        access_key_id=getattr(credentials, "aws_access_key_id", None),
        secret_access_key=secret,
    )
    folder = block.bucket_folder.strip("/")
    return f"s3://{block.bucket_name}/{folder}".rstrip("/"), s3.storage_options
