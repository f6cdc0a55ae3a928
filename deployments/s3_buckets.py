"""Create the stack's S3 buckets when they are missing: compose's one-shot `s3-init` job.

    python -m deployments.s3_buckets --endpoint-url http://seaweedfs:8333 \\
        crimeflow-lake crimeflow-mlflow

Credentials come the way boto3 finds them, which in compose is AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY in the job's environment: the S3 server's admin key, which no other
service gets (crimeflow's own key may read and write these buckets but not create any).
A bucket that already exists and is ours is left as it is, so the job runs on every
`docker compose up`; one that exists but answers 403 belongs to someone else and fails the job.
`ensure_buckets(client, names)` is the work; `main` only builds the client from the arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from typing import Any

DEFAULT_REGION = "us-east-1"
CREATED = "created"
EXISTS = "exists"


class BucketError(RuntimeError):
    """A bucket can neither be found nor created with the given key."""


def ensure_buckets(
    client: Any, names: Iterable[str], region: str = DEFAULT_REGION
) -> dict[str, str]:
    """Create each missing bucket; {name: "created" | "exists"}, in the order given."""
    return {name: ensure_bucket(client, name, region) for name in names}


def ensure_bucket(client: Any, name: str, region: str = DEFAULT_REGION) -> str:
    """Create the bucket unless it exists; "created" or "exists"."""
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=name)
        return EXISTS
    except ClientError as error:
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status != 404:
            raise BucketError(f"bucket {name}: HEAD answered {status} ({error})") from error
    # us-east-1 is S3's default location and must not be named; every other region must be.
    options = (
        {}
        if region == DEFAULT_REGION
        else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    )
    try:
        client.create_bucket(Bucket=name, **options)
    except ClientError as error:
        # Another run created it between our HEAD and our PUT: the outcome we wanted.
        if error.response.get("Error", {}).get("Code") == "BucketAlreadyOwnedByYou":
            return EXISTS
        raise BucketError(f"bucket {name}: create failed ({error})") from error
    return CREATED


def s3_client(endpoint_url: str | None, region: str) -> Any:
    """A boto3 S3 client with patient retries: the server may still be opening its stores."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": 10, "mode": "standard"}, s3={"addressing_style": "path"}
    )
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


def argument_parser() -> argparse.ArgumentParser:
    """The command line: bucket names, the endpoint and the region."""
    parser = argparse.ArgumentParser(prog="python -m deployments.s3_buckets", description=__doc__)
    parser.add_argument("buckets", nargs="+", help="bucket names")
    parser.add_argument("--endpoint-url", default=None, help="S3-compatible endpoint; AWS if unset")
    parser.add_argument("--region", default=DEFAULT_REGION, help="region the buckets belong to")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Ensure the named buckets, print one line each, exit 1 on the first failure."""
    args = argument_parser().parse_args(argv)
    from botocore.exceptions import BotoCoreError

    client = s3_client(args.endpoint_url, args.region)
    try:
        for name in args.buckets:
            print(f"{name}: {ensure_bucket(client, name, args.region)}", flush=True)
    except (BucketError, BotoCoreError) as error:  # BotoCoreError: unreachable endpoint, no key
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
