"""The analyst report's trigger on a real Prefect server: a completed monthly-etl run makes
Prefect create a monthly-analysis run (the automation Prefect built from the declaration).

The analysis deployment is registered the way the serve process registers it, but nothing
serves it here: the test checks the run the automation creates, then deletes it and the
deployment, so that no later test's worker picks the run up. The flow itself is tested in
tests/flows/test_analysis_flow.py.
"""

from __future__ import annotations

import time

import pytest
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker

from crimeflow.contract.settings import get_settings
from crimeflow.standins.generate import generate_incidents
from crimeflow.standins.soda import StandinServer
from deployments.declarations import analysis_deployment
from deployments.serve import runner_deployment

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TRIGGER_TIMEOUT_S = 30.0


def test_a_completed_etl_run_creates_an_analysis_run(prefect_api, tmp_path, monkeypatch):
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    from flows.etl import monthly_etl

    incidents = generate_incidents("2024-01", "2024-01", rows_per_month=500, seed=3)
    monkeypatch.setenv("CRIMEFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CRIMEFLOW_SOCRATA_BACKOFF_S", "0.01")
    deployment_id = runner_deployment(analysis_deployment()).apply()
    try:
        with StandinServer(incidents) as soda:
            monkeypatch.setenv("CRIMEFLOW_SOCRATA_URL", soda.url)
            get_settings.cache_clear()
            monthly_etl(month="2024-01")
        with get_client(sync_client=True) as client:
            only_analysis = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            deadline = time.monotonic() + TRIGGER_TIMEOUT_S
            runs = []
            while not runs and time.monotonic() < deadline:
                runs = client.read_flow_runs(deployment_filter=only_analysis)
                time.sleep(0.5)
            for run in runs:
                client.delete_flow_run(run.id)
        assert len(runs) == 1, runs
        assert runs[0].parameters == {"month": None}
    finally:
        with get_client(sync_client=True) as client:
            client.delete_deployment(deployment_id)
        # Send this process's queued events and logs while the server still runs.
        EventsWorker.drain_all()
        APILogWorker.drain_all()
        get_settings.cache_clear()
