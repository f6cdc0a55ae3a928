"""The S3 deployment variant: code pushed with push_to_s3, pulled by a worker with no checkout.

A real Prefect server, moto's S3 server as a process, `crimeflow blocks apply` (the CLI) writing
the lake's blocks, then `prefect deploy --all --prefect-file deployments/prefect.s3.yaml` from
the repository root. The bucket must hold the code (minus .prefectignore), and a worker started
in an empty folder, with no S3 keys in its environment, must download it before the run: the
rollback deployment then fails with the flow's own error (an empty registry), so its code ran.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from crimeflow.contract.settings import child_environment
from tests.e2e.conftest import PrefectServer
from tests.e2e.test_prefect_deploy import ROOT, prefect, run_on_a_worker
from tests.production import LAKE_BLOCK, LAKE_BUCKET, S3_KEYS, s3_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

POOL = "crimeflow-process"
CODE_PREFIX = "code/crimeflow/"


def test_a_worker_without_a_checkout_runs_code_pulled_from_s3(
    prefect_server: PrefectServer, prefect_api: str, tmp_path: Path
) -> None:
    import boto3
    from prefect.client.orchestration import get_client

    with s3_server(tmp_path / "logs") as endpoint:
        shell = child_environment(
            {
                **prefect_server.env,
                "CRIMEFLOW_HOME": str(tmp_path / "home"),
                "CRIMEFLOW_LAKE_URL": f"s3://{LAKE_BUCKET}/lake",
                "CRIMEFLOW_S3_ENDPOINT_URL": endpoint,
                "CRIMEFLOW_S3_ACCESS_KEY_ID": S3_KEYS["aws_access_key_id"],
                "CRIMEFLOW_S3_SECRET_ACCESS_KEY": S3_KEYS["aws_secret_access_key"],
                "CRIMEFLOW_S3_BUCKET_BLOCK": LAKE_BLOCK,
                "CRIMEFLOW_PREFECT_API_URL": prefect_server.api_url,
                "PREFECT_CLI_WRAP_LINES": "false",
            }
        )
        crimeflow = str(Path(sys.executable).with_name("crimeflow"))
        applied = subprocess.run(
            [crimeflow, "blocks", "apply"], env=shell, capture_output=True, text=True, timeout=120
        )
        assert applied.returncode == 0, applied.stderr
        assert "crimeflow-lake-credentials" in applied.stdout
        prefect(["work-pool", "create", POOL, "--type", "process", "--overwrite"], shell, ROOT)
        s3_file = ["--prefect-file", "deployments/prefect.s3.yaml"]
        prefect(["--no-prompt", "deploy", "--all", *s3_file], shell, ROOT)

        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **S3_KEYS)
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=LAKE_BUCKET, Prefix=CODE_PREFIX
        )
        pushed = {o["Key"][len(CODE_PREFIX) :] for p in pages for o in p.get("Contents", [])}
        assert {"flows/retrain.py", "tasks/retrain_steps.py", "prefect.yaml"} <= pushed
        assert not [k for k in pushed if k.split("/")[0] in {".venv", ".git", "tests", ".env"}]

        with get_client(sync_client=True) as api:
            rollback = api.read_deployment_by_name("rollback/rollback")
            ((step, arguments),) = [next(iter(s.items())) for s in rollback.pull_steps]
            assert step == "prefect_aws.deployments.steps.pull_from_s3"
            assert (arguments["bucket"], arguments["folder"]) == (LAKE_BUCKET, "code/crimeflow")
            run = api.create_flow_run_from_deployment(rollback.id, parameters={"reason": "e2e"})

            # The worker: an empty folder, the Prefect API, and no S3 keys at all.
            folder = tmp_path / "elsewhere"
            folder.mkdir()
            bare = {k: v for k, v in shell.items() if not k.startswith("CRIMEFLOW_S3_")}
            state, log = run_on_a_worker(api, run.id, bare, folder, tmp_path / "worker.log")
    assert state.is_failed(), f"{state}; worker log:\n{log}"
    assert "previous-champion" in log, log  # the flow's own error: the pulled code ran
