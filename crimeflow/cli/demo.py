"""The one-command embedded demo: the whole loop on one machine, running by itself.

`crimeflow demo` (and `make demo`) starts a local Prefect server, the MLflow UI, the serve
process with every deployment and the drift trigger, and the SODA stand-in with generated (or
given) Chicago incidents. It ingests the older months and trains the first champion through the
deployments, starts the API, replays traffic over HTTP (a normal phase, then a drift phase), and
runs the drift monitor. From there nothing is called by the demo: the drift event triggers the
retrain deployment, which ingests the newer months, trains, gates and promotes, and the API
hot-swaps the new champion. The demo only watches, prints what happens and writes
`$CRIMEFLOW_HOME/demo-summary.json`.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from crimeflow.contract.events import DRIFT_CHECKED, DRIFT_DETECTED, MODEL_PROMOTED, MODEL_REJECTED
from crimeflow.contract.months import newest_mature_month, shift_month
from crimeflow.contract.schema import LABEL
from crimeflow.contract.settings import Settings
from crimeflow.standins.generate import LOCATION_RENAMES_2020, Drift

OLD_MONTHS = 6
NEW_MONTHS = 3
ROWS_PER_MONTH = 4000
SEED = 7
# What the newer months bring: CPD's 2020 renaming of location descriptions, a narcotics surge,
# and an enforcement change (theft arrests far likelier, narcotics ones rarer). The first two
# shift the inputs; the last changes P(arrest | incident), which only a retrained model learns.
DRIFT = Drift(
    type_mix={"NARCOTICS": 3.0},
    location_vocabulary="modern",
    type_arrest_odds={"THEFT": 5.0, "NARCOTICS": 0.01},
)
# Months a model learns from: short enough that a retrain's fit months are half new ones.
TRAINING_WINDOW_MONTHS = 5
NORMAL_TRAFFIC_ROWS = 400
DRIFT_TRAFFIC_ROWS = 1600
BATCH_ROWS = 200
LOOP_TIMEOUT_S = 480.0
DEMO_FOLDER = "demo"
# Settings whose defaults derive from the home folder: re-derived for the demo's own folder.
HOME_DERIVED = (
    "lake_url",
    "mlflow_tracking_uri",
    "mlflow_artifact_root",
    "prediction_log_url",
    "prefect_api_url",
)
RUN_TIMEOUT_S = 600.0


@dataclass
class DemoPlan:
    """The data the demo serves and which months play which part."""

    crimes: pd.DataFrame
    old_months: list[str]
    new_months: list[str]
    generated: bool


@dataclass
class DemoSummary:
    """What `demo-summary.json` holds."""

    versions: list[dict[str, Any]] = field(default_factory=list)
    gate_decisions: list[dict[str, Any]] = field(default_factory=list)
    drift_checks: list[dict[str, Any]] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    # From the drift event's timestamp: the retrain run started, the gate decided, the API
    # served the new version (seconds).
    loop_latency_s: dict[str, float] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    loop_completed: bool = False


# --- data ------------------------------------------------------------------------------------


def generated_plan(
    today: date,
    old_months: int = OLD_MONTHS,
    new_months: int = NEW_MONTHS,
    rows_per_month: int = ROWS_PER_MONTH,
    maturity_days: int = 0,
) -> DemoPlan:
    """Seeded incidents ending at the newest month whose labels are `maturity_days` old (0:
    last month): older months, then newer ones with the drift knob on.

    A retrain learns only from months with mature labels, so the drifted months must be
    mature for it to learn them: the served source then ends before last month, as a
    lagging source would.
    """
    from crimeflow.standins.generate import generate_incidents

    last = newest_mature_month(today, maturity_days)
    new = [shift_month(last, -k) for k in range(new_months - 1, -1, -1)]
    old = [shift_month(new[0], -k) for k in range(old_months, 0, -1)]
    frames = [
        generate_incidents(old[0], old[-1], rows_per_month=rows_per_month, seed=SEED),
        generate_incidents(
            new[0], new[-1], rows_per_month=rows_per_month, seed=SEED + 1, drift=DRIFT
        ),
    ]
    crimes = pd.concat(frames, ignore_index=True)
    crimes["id"] = range(1, len(crimes) + 1)  # unique across the two draws
    return DemoPlan(crimes, old, new, generated=True)


def file_plan(paths: list[Path]) -> DemoPlan:
    """Incidents from files (e.g. ../shared/data/real): all but the newest two months are old."""
    from crimeflow.contract.schema import to_canonical
    from crimeflow.stores.files import read_incidents_file

    crimes = pd.concat([read_incidents_file(p) for p in paths], ignore_index=True)
    months = sorted(to_canonical(crimes)["date"].dt.strftime("%Y-%m").dropna().unique())
    if len(months) < NEW_MONTHS + 3:
        raise ValueError(f"--data needs at least {NEW_MONTHS + 3} months, found {months}")
    return DemoPlan(crimes, months[:-NEW_MONTHS], months[-NEW_MONTHS:], generated=False)


def traffic(plan: DemoPlan, drifted: bool, rows: int, seed: int) -> list[dict[str, Any]]:
    """API bodies (SODA JSON strings) for one traffic phase."""
    from crimeflow.contract.schema import to_canonical
    from crimeflow.standins.generate import generate_incidents, to_soda_strings

    month = plan.new_months[-1] if drifted else plan.old_months[-1]
    if plan.generated:
        frame = generate_incidents(
            month, month, rows_per_month=rows, seed=seed, drift=DRIFT if drifted else None
        )
    else:
        canonical = to_canonical(plan.crimes)
        frame = canonical[canonical["date"].dt.strftime("%Y-%m") == month]
        frame = frame.sample(min(rows, len(frame)), random_state=seed)
        if drifted:
            # Real records, with CPD's 2020 location vocabulary: the drift the demo shows.
            renamed = frame["location_description"].map(lambda v: LOCATION_RENAMES_2020.get(v, v))
            frame = frame.assign(location_description=renamed.astype("string"))
    records = to_soda_strings(frame.drop(columns=[LABEL])).to_dict("records")
    return [{k: v for k, v in r.items() if v is not None} for r in records]


# --- watching the Prefect server -------------------------------------------------------------


def wait_for(what: str, probe: Callable[[], Any], timeout_s: float, every_s: float = 1.0) -> Any:
    """Poll `probe` until it returns something truthy; TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every_s)
    raise TimeoutError(f"gave up after {timeout_s:.0f} s waiting for {what}")


def flow_runs(deployment: str, since: datetime) -> list[Any]:
    """Runs of a deployment (its name) expected to start after `since`."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
    )

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])),
            flow_run_filter=FlowRunFilter(
                expected_start_time=FlowRunFilterExpectedStartTime(after_=since)
            ),
        )


def read_events(name: str, since: datetime) -> list[Any]:
    """Events called `name` since `since`, oldest first."""
    from prefect import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    with get_client(sync_client=True) as client:
        page = client.read_events(
            EventFilter(
                event=EventNameFilter(name=[name]),
                occurred=EventOccurredFilter(since=since, until=datetime.now(UTC)),
            ),
            limit=50,  # the server's maximum
        )
    return sorted(page.events, key=lambda e: e.occurred)


def _decision(flow_run_id: Any, since: datetime) -> list[Any]:
    """The gate's promoted/rejected events; RuntimeError if the retrain run ended without one."""
    from prefect import get_client

    decided = read_events(MODEL_PROMOTED, since) + read_events(MODEL_REJECTED, since)
    if decided:
        return decided
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run_id).state
    if state is not None and state.is_final() and not state.is_completed():
        raise RuntimeError(f"the retrain run ended {state.name}: {state.message}")
    return []


def run(name: str, parameters: dict[str, Any]) -> Any:
    """Run a deployment through the serve process and wait for it; fail if it did not complete."""
    from prefect.deployments import run_deployment

    flow_run = run_deployment(
        name, parameters=parameters, timeout=RUN_TIMEOUT_S, poll_interval=1, as_subflow=False
    )
    if flow_run.state is None or not flow_run.state.is_completed():
        raise RuntimeError(f"{name} run {flow_run.name} ended {flow_run.state}")
    return flow_run


def _seconds(start: datetime, end: datetime) -> float:
    """Seconds from `start` to `end` (both aware), rounded for the summary."""
    return round((end - start).total_seconds(), 1)


@contextmanager
def phase(summary: DemoSummary, name: str, echo: Callable[[str], object]) -> Iterator[None]:
    """Time one phase of the demo into the summary."""
    echo(f"-- {name}")
    start = time.perf_counter()
    yield
    summary.timings_s[name] = round(time.perf_counter() - start, 1)


# --- the demo ----------------------------------------------------------------------------------


def send(api: str, bodies: list[dict[str, Any]]) -> int:
    """POST bodies to /predict/batch in chunks; how many predictions were answered."""
    answered = 0
    with httpx.Client(base_url=api, timeout=120) as http:
        for start in range(0, len(bodies), BATCH_ROWS):
            response = http.post("/predict/batch", json=bodies[start : start + BATCH_ROWS])
            response.raise_for_status()
            answered += len(response.json()["predictions"])
    return answered


def served_version(api: str) -> str | None:
    """The version the API serves (None while it has none)."""
    response = httpx.get(f"{api}/model", timeout=10)
    return response.json()["version"] if response.status_code == 200 else None


def registry_versions(settings: Settings) -> list[dict[str, Any]]:
    """Every registered version with its aliases, holdout metrics and gate decision."""
    from crimeflow.stores.registry import mlflow_client

    client = mlflow_client(settings)
    model = client.get_registered_model(settings.model_name)
    aliases: dict[str, list[str]] = {}
    for alias, version in model.aliases.items():
        aliases.setdefault(str(version), []).append(alias)
    out = []
    for version in client.search_model_versions(f"name='{settings.model_name}'"):
        tags = version.tags
        out.append(
            {
                "version": str(version.version),
                "aliases": sorted(aliases.get(str(version.version), [])),
                "classifier": tags.get("classifier"),
                "fit_months": tags.get("fit_months"),
                "holdout_roc_auc": tags.get("holdout.roc_auc"),
                "holdout_pr_auc": tags.get("holdout.pr_auc"),
                "gate": tags.get("gate"),
                "gate_reasons": tags.get("gate.reasons"),
            }
        )
    return sorted(out, key=lambda v: int(v["version"]))


def summary_table(summary: DemoSummary) -> str:
    """The closing console table: versions, decisions, drift verdicts, timings."""
    lines = ["", "model versions:", "  v  aliases                       holdout ROC/PR   gate"]
    for v in summary.versions:
        lines.append(
            f"  {v['version']:<2} {','.join(v['aliases']) or '-':<29} "
            f"{v['holdout_roc_auc'] or '-'}/{v['holdout_pr_auc'] or '-'}  {v['gate'] or '-'}"
        )
    lines.append("drift checks:")
    lines += [
        f"  {d['status']}: drift share {d['drift_share']}, drifted {d['drifted_columns'] or '-'}"
        for d in summary.drift_checks
    ]
    lines.append("gate decisions:")
    lines += [
        f"  v{g['version']} {g['decision']} ({g['reasons'] or 'all checks passed'})"
        for g in summary.gate_decisions
    ]
    lines.append("loop latency from the drift event (s):")
    lines += [f"  {name:<40} {seconds:>7.1f}" for name, seconds in summary.loop_latency_s.items()]
    lines.append("timings (s):")
    lines += [f"  {name:<40} {seconds:>7.1f}" for name, seconds in summary.timings_s.items()]
    return "\n".join(lines)


def demo_settings(settings: Settings, plan: DemoPlan, soda_url: str) -> Settings:
    """The user's settings, moved into the demo's own folder and pointed at the stand-in.

    Everything derived from the home (lake, MLflow store, prediction log, Evidently workspace,
    Prefect) lives under `$CRIMEFLOW_HOME/demo`, so the demo never touches other state there.
    """
    values = settings.flat()
    values.update({name: "" for name in HOME_DERIVED})
    values.update(
        home=settings.home / DEMO_FOLDER,
        evidently_workspace=None,
        socrata_url=soda_url,
        # The demo's API runs without auth, whatever the shell or .env says: it sends its own
        # traffic without tokens. Empty (not None) so the children do not inherit the user's.
        auth_jwt_secret="",
        auth_jwks_url="",
        drift_window_days=1,
        model_poll_interval_s=2.0,
        training_window_months=TRAINING_WINDOW_MONTHS,
        # Given files are history: retrain up to their newest month, not up to today's.
        retrain_until="" if plan.generated else plan.new_months[-1],
    )
    return Settings(_env_file=None, **values)


def run_demo(
    settings: Settings,
    data: list[Path] | None = None,
    keep_running: bool = False,
    echo: Callable[[str], object] = print,
    plan: DemoPlan | None = None,
) -> DemoSummary:
    """Run the whole loop once (see the module docstring); the summary it also writes."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from crimeflow.cli.stack import Stack
    from crimeflow.standins.soda import StandinServer

    summary = DemoSummary()
    started = time.perf_counter()
    if plan is None:
        maturity = settings.etl.label_maturity_days
        plan = file_plan(data) if data else generated_plan(date.today(), maturity_days=maturity)
    echo(
        f"data: {len(plan.crimes):,} incidents; champion months {plan.old_months[0]}.."
        f"{plan.old_months[-1]}, new months {', '.join(plan.new_months)}"
    )
    summary_path = settings.home / "demo-summary.json"
    with StandinServer(plan.crimes) as soda:
        settings = demo_settings(settings, plan, soda.url)
        # A rerun starts the loop afresh: the demo's own folder only, nothing else in the home.
        shutil.rmtree(settings.home, ignore_errors=True)
        with Stack(settings) as stack:
            with phase(summary, "start Prefect, MLflow UI, serve", echo):
                stack.start_prefect()
                stack.start_mlflow_ui()
                stack.start_serve()
            summary.urls = {**stack.urls, "soda": soda.url}
            echo(f"Prefect UI {stack.urls['prefect_ui']} · MLflow UI {stack.urls['mlflow_ui']}")
            with temporary_settings(updates={PREFECT_API_URL: stack.prefect_api_url}):
                run_loop(stack, plan, summary, echo)
            summary.timings_s["total"] = round(time.perf_counter() - started, 1)
            summary.versions = registry_versions(settings)
            summary_path.write_text(json.dumps(asdict(summary), indent=2, default=str))
            echo(summary_table(summary))
            echo(f"summary: {summary_path}")
            if keep_running:
                echo("services keep running; Ctrl-C stops them")
                stop = threading.Event()
                try:
                    stack.wait(stop)
                except KeyboardInterrupt:
                    echo("stopping ...")
    return summary


def run_loop(
    stack: Any,
    plan: DemoPlan,
    summary: DemoSummary,
    echo: Callable[[str], object],
) -> None:
    """The demo's phases, from the first ETL to the API serving the retrained champion."""
    api = _first_champion(stack, plan, summary, echo)
    _replay_traffic(api, plan, summary, echo)
    before = served_version(api)
    since = datetime.now(UTC) - timedelta(seconds=1)
    if not _check_drift(since, summary, echo):
        echo("no drift detected: nothing to retrain")
        return
    _follow_retrain(api, before, since, summary, echo)
    summary.loop_completed = True


def _first_champion(
    stack: Any, plan: DemoPlan, summary: DemoSummary, echo: Callable[[str], object]
) -> str:
    """Ingest the older months, train and promote the first champion, start the API; its URL."""
    with phase(summary, "ETL of the older months (monthly-etl runs)", echo):
        for month in plan.old_months:
            run("monthly-etl/monthly-etl", {"month": month})
            echo(f"   ingested {month}")
    with phase(summary, "first champion (train run)", echo):
        run("train/train", {"until": plan.old_months[-1], "promote_if_none": True})
    with phase(summary, "start the API", echo):
        api = stack.start_api()
        wait_for("the API to load the champion", lambda: served_version(api), 120)
    echo(f"API {api} (docs {api}/schema) serves v{served_version(api)}")
    return api


def _replay_traffic(
    api: str, plan: DemoPlan, summary: DemoSummary, echo: Callable[[str], object]
) -> None:
    """Send a normal phase of traffic, then a drifted one, through the API."""
    with phase(summary, "traffic: normal, then drifted (HTTP)", echo):
        normal = send(api, traffic(plan, drifted=False, rows=NORMAL_TRAFFIC_ROWS, seed=1))
        drifted = send(api, traffic(plan, drifted=True, rows=DRIFT_TRAFFIC_ROWS, seed=2))
        echo(f"   {normal:,} normal + {drifted:,} drifted predictions served and logged")


def _check_drift(since: datetime, summary: DemoSummary, echo: Callable[[str], object]) -> bool:
    """Run the drift monitor and record its verdicts; whether any found drift."""
    with phase(summary, "drift check (drift-monitor run)", echo):
        run("drift-monitor/drift-monitor", {"window_days": 1})
    # Events reach the server asynchronously, a moment after the run that emitted them ends.
    checked = wait_for("the drift check's event", lambda: read_events(DRIFT_CHECKED, since), 60)
    for event in checked:
        payload = dict(event.payload)
        summary.drift_checks.append(payload)
        echo(f"   drift check: {payload['status']} · report {payload['report_url']}")
    return any(d.get("drift_detected") for d in summary.drift_checks)


def _follow_retrain(
    api: str,
    before: str | None,
    since: datetime,
    summary: DemoSummary,
    echo: Callable[[str], object],
) -> None:
    """From the drift event on, only watch: the triggered retrain, the gate, the API's swap."""
    events = wait_for("the drift event", lambda: read_events(DRIFT_DETECTED, since), 30)
    detected_at = events[0].occurred
    with phase(summary, "drift event → retrain run started", echo):
        retrain = wait_for(
            "the triggered retrain run",
            # A second event (performance) may start a retrain that the concurrency limit
            # cancels: follow the one that runs.
            lambda: [
                r
                for r in flow_runs("retrain", since)
                if r.start_time and not (r.state and r.state.is_cancelled())
            ],
            LOOP_TIMEOUT_S,
        )[0]
        echo(f"   retrain run {retrain.name} started by the trigger")
    summary.loop_latency_s["event_to_run_start"] = _seconds(detected_at, retrain.start_time)
    with phase(summary, "retrain → gate decided", echo):
        decided = wait_for(
            "the gate's decision", lambda: _decision(retrain.id, since), LOOP_TIMEOUT_S
        )
    summary.loop_latency_s["event_to_gate_decided"] = _seconds(detected_at, decided[0].occurred)
    for event in decided:
        payload = dict(event.payload)
        verdict = "promoted" if event.event == MODEL_PROMOTED else "rejected"
        summary.gate_decisions.append(
            {"version": payload["version"], "decision": verdict, "reasons": payload["reasons"]}
        )
        echo(f"   v{payload['version']} {verdict}: {payload['reasons'] or 'all checks passed'}")
    if any(g["decision"] == "promoted" for g in summary.gate_decisions):
        with phase(summary, "promotion → API serves the new version", echo):
            wait_for("the API to swap", lambda: served_version(api) != before, 60, every_s=0.2)
        summary.loop_latency_s["event_to_api_serving"] = _seconds(detected_at, datetime.now(UTC))
        echo(f"API now serves v{served_version(api)} (was v{before})")
