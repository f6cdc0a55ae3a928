"""The performance loop, for real: concept drift the drift monitor cannot see, caught once the
labels arrive through the ETL, and repaired by the retrain its event triggers.

A real local Prefect server (its own session fixture), the serve process with every deployment
and both retrain triggers (`python -m deployments.serve`), the SODA stand-in, the API under
uvicorn. The newer months come from the generator with only `type_arrest_odds` changed (theft
arrests far likelier, narcotics ones rarer): the incidents look as before, the arrests do not.
The test sends those incidents (with their Socrata ids) over HTTP, ingests their months with the
ETL (the labels arrive), and runs the monitor: no input drift, realized PR-AUC down, the event
`crimeflow.performance.degraded`; then it only watches the trigger start the retrain (reason
`performance`), the gate pass and the API serve the new version. Assertions read Prefect's API
and the registry.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import httpx
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker

from crimeflow.cli.demo import (
    TRAINING_WINDOW_MONTHS,
    flow_runs,
    read_events,
    send,
    served_version,
    wait_for,
)
from crimeflow.cli.processes import free_port, log_tail
from crimeflow.cli.stack import Stack
from crimeflow.contract.events import DRIFT_DETECTED, MODEL_PROMOTED, PERFORMANCE_DEGRADED
from crimeflow.contract.months import previous_month, shift_month
from crimeflow.contract.schema import LABEL
from crimeflow.contract.settings import Settings, get_settings
from crimeflow.standins.generate import Drift, generate_incidents, to_soda_strings
from crimeflow.standins.soda import StandinServer
from crimeflow.stores.registry import CHAMPION

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROWS_PER_MONTH = 2500
TRAFFIC_ROWS = 800
OLD_MONTHS = 5
NEW_MONTHS = 2
LOOP_TIMEOUT_S = 300.0
# An enforcement change: P(arrest | incident) moves, the incidents themselves do not.
CONCEPT_DRIFT = Drift(type_arrest_odds={"THEFT": 8.0, "NARCOTICS": 0.001})


@dataclass
class PerfStack:
    """The running stack of this module."""

    settings: Settings
    api_url: str
    prefect_api: str
    new_months: list[str]
    traffic: pd.DataFrame


def months_before(today: date) -> tuple[list[str], list[str]]:
    """Older months, then the newer ones ending last month."""
    last = previous_month(today)
    new = [shift_month(last, -k) for k in range(NEW_MONTHS - 1, -1, -1)]
    old = [shift_month(new[0], -k) for k in range(OLD_MONTHS, 0, -1)]
    return old, new


@pytest.fixture(scope="module")
def stack(performance_prefect_server, tmp_path_factory) -> Iterator[PerfStack]:
    """Lake of the older months, champion v1, serve process and API; newer months not ingested."""
    home = tmp_path_factory.mktemp("perfloop") / "home"
    old, new = months_before(date.today())
    crimes = pd.concat(
        [
            generate_incidents(old[0], old[-1], rows_per_month=ROWS_PER_MONTH, seed=7),
            generate_incidents(
                new[0], new[-1], rows_per_month=ROWS_PER_MONTH, seed=8, drift=CONCEPT_DRIFT
            ),
        ],
        ignore_index=True,
    )
    crimes["id"] = range(1, len(crimes) + 1)  # unique across the two draws
    server = performance_prefect_server
    with StandinServer(crimes) as soda:
        env = {
            "CRIMEFLOW_HOME": str(home),
            "CRIMEFLOW_SOCRATA_URL": soda.url,
            "CRIMEFLOW_SOCRATA_BACKOFF_S": "0.01",
            "CRIMEFLOW_API_PORT": str(free_port()),
            "CRIMEFLOW_PREFECT_API_URL": server.api_url,
            "CRIMEFLOW_MODEL_POLL_INTERVAL_S": "1",
            "CRIMEFLOW_DRIFT_WINDOW_DAYS": "1",
            "CRIMEFLOW_TRAINING_WINDOW_MONTHS": str(TRAINING_WINDOW_MONTHS),
            # The stand-in's months are final when ingested: no waiting for labels to mature.
            "CRIMEFLOW_LABEL_MATURITY_DAYS": "0",
            "CRIMEFLOW_PERFORMANCE_MAX_DROP": "0.05",
            **server.env,
        }
        mp = pytest.MonkeyPatch()
        for name, value in env.items():
            mp.setenv(name, value)
        get_settings.cache_clear()
        settings = get_settings()
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            from flows.etl import monthly_etl
            from flows.train import train

            for month in old:
                monthly_etl(month=month)
            # One classifier, no model search: the champion only has to be good on the old months.
            train(until=old[-1], promote_if_none=True, classifier="logistic_regression")
            newest = crimes[crimes["date"].dt.strftime("%Y-%m") == new[-1]]
            traffic = newest.sample(TRAFFIC_ROWS, random_state=3)
            with Stack(settings) as running:
                running.start_serve()
                api_url = running.start_api()
                wait_for("the API to load the champion", lambda: served_version(api_url), 60)
                serve = running.services[0].process
                try:
                    yield PerfStack(settings, api_url, server.api_url, new, traffic)
                finally:
                    print("serve log tail:\n" + log_tail(serve.log_file, 80))
                    EventsWorker.drain_all()
                    APILogWorker.drain_all()
        mp.undo()
        get_settings.cache_clear()


def bodies(frame: pd.DataFrame) -> list[dict]:
    """API bodies (SODA strings) of incidents, with their Socrata `id` and without the label."""
    records = to_soda_strings(frame.drop(columns=[LABEL])).to_dict("records")
    return [{k: v for k, v in r.items() if v is not None} for r in records]


def test_concept_drift_seen_by_realized_performance_triggers_a_retrain(stack: PerfStack) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.etl import monthly_etl
    from flows.monitor import drift_monitor

    client = MlflowClient(stack.settings.mlflow.tracking_uri)
    champion = client.get_model_version_by_alias(stack.settings.model_name, CHAMPION)
    assert served_version(stack.api_url) == str(champion.version) == "1"
    baseline = float(champion.tags["holdout.pr_auc"])
    began = datetime.now(UTC) - timedelta(seconds=1)
    assert send(stack.api_url, bodies(stack.traffic)) == TRAFFIC_ROWS

    with temporary_settings(updates={PREFECT_API_URL: stack.prefect_api}):
        # The labels arrive: the ETL ingests the newer months (arrest flags included).
        for month in stack.new_months:
            monthly_etl(month=month)
        verdict = drift_monitor(window_days=1)
        assert verdict["drift_detected"] is False, verdict["reasons"]
        (window,) = verdict["performance_degraded"]
        assert (window["basis"], window["window"]) == ("realized", stack.new_months[-1])
        assert window["value"] < baseline - 0.05
        assert window["champion_baseline"] == pytest.approx(baseline)
        print(f"PR-AUC: champion holdout {baseline:.3f}, realized {window['value']:.3f}")

        # From here on the test only watches Prefect and the registry.
        (event,) = wait_for(
            "the performance event", lambda: read_events(PERFORMANCE_DEGRADED, began), 30
        )
        assert event.resource.id == f"crimeflow.model.{stack.settings.model_name}"
        assert event.payload["report_id"] == verdict["report_id"]
        assert event.payload["metric"] == "pr_auc"
        run = wait_for(
            "the retrain triggered by the performance event",
            lambda: [r for r in flow_runs("retrain", began) if r.state and r.state.is_final()],
            LOOP_TIMEOUT_S,
        )[0]
        assert run.state.name == "Completed", run.state
        assert run.parameters["reason"] == "performance"
        assert run.parameters["drift_report_id"] == verdict["report_id"]
        wait_for("a promoted event", lambda: read_events(MODEL_PROMOTED, began), 30)
        assert read_events(DRIFT_DETECTED, began) == []

    promoted = client.get_model_version_by_alias(stack.settings.model_name, CHAMPION)
    assert str(promoted.version) == "2"
    assert promoted.tags["gate"] == "passed"
    wait_for("the API to serve v2", lambda: served_version(stack.api_url) == "2", 30)
    # The API shows the assessment: GET /performance, and one window with ?window=.
    answer = httpx.get(
        f"{stack.api_url}/performance", params={"window": stack.new_months[-1]}, timeout=10
    ).json()
    (shown,) = answer["windows"]
    assert shown["degraded"] is True and shown["realized"]["rows"] == TRAFFIC_ROWS
