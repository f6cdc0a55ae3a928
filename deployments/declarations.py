"""crimeflow's deployments, declared once: what runs, when, on which event, and where.

Three consumers read these records: deployments/serve.py (`prefect serve`, the embedded default
that `crimeflow up` runs) builds its deployments from them, and `python -m deployments.render`
(`make deployments`) writes prefect.yaml (a process work pool on this checkout) and
deployments/prefect.image.yaml (workers that run the project image) from them. Entrypoints are
strings, so nothing here imports a flow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crimeflow.contract.events import DRIFT_DETECTED, PERFORMANCE_DEGRADED, model_resource
from crimeflow.contract.schema import CHICAGO_TZ
from crimeflow.contract.settings import DriftSettings, Settings

PROJECT = "crimeflow"
# The Prefect release the deployment files are written for (`prefect-version` in the YAML).
PREFECT_VERSION = "3.8.8"
# The files render with the settings' defaults; serve.py passes the settings in force.
DEFAULT_MODEL_NAME: str = Settings.model_fields["model_name"].default
DEFAULT_DRIFT_WINDOW_DAYS: int = DriftSettings.model_fields["window_days"].default


@dataclass(frozen=True)
class Parameter:
    """One flow parameter a deployment (or trigger) passes; `note` is a comment for YAML readers."""

    name: str
    value: Any
    note: str = ""


@dataclass(frozen=True)
class Schedule:
    """A cron schedule in Chicago time; `why` explains the time in the YAML."""

    cron: str
    why: str
    timezone: str = CHICAGO_TZ
    active: bool = True


@dataclass(frozen=True)
class EventTrigger:
    """Run the deployment when `event` arrives for the resource `resource_id` (an automation).

    Parameter values may be Jinja templates such as `{{ event.payload.report_id }}`; they render
    to strings unless the value is `{"template": ..., "__prefect_kind": "json"}`.
    """

    name: str
    description: str
    event: str
    resource_id: str
    resource_note: str
    parameters: tuple[Parameter, ...]
    enabled: bool = True
    # Labels the event's related resources must carry, every entry matched by one of them
    # (Prefect's `match_related` as a list); empty = no condition.
    match_related: tuple[Mapping[str, str], ...] = ()
    related_note: str = ""
    # Prefect's defaults, written out so that the YAML says what the automation does.
    posture: str = "Reactive"
    threshold: int = 1
    within_seconds: int = 0


@dataclass(frozen=True)
class ConcurrencyLimit:
    """At most `limit` runs at once; `collision_strategy` says what happens to one more."""

    limit: int
    collision_strategy: str
    why: str


@dataclass(frozen=True)
class Deployment:
    """One deployment: its flow (`path/to/module.py:function`), metadata, schedules, trigger."""

    name: str
    entrypoint: str
    description: str
    tags: tuple[str, ...]
    parameters: tuple[Parameter, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    concurrency: ConcurrencyLimit | None = None
    triggers: tuple[EventTrigger, ...] = ()

    def parameter_values(self) -> dict[str, Any]:
        """The parameters as the mapping Prefect takes."""
        return {parameter.name: parameter.value for parameter in self.parameters}


@dataclass(frozen=True)
class Step:
    """A Prefect build or pull step: the step function's import path and its arguments."""

    function: str
    arguments: Mapping[str, Any]
    note: str = ""


@dataclass(frozen=True)
class Alternative:
    """Steps a user may swap in, written to the YAML as a commented-out example."""

    note: str
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class WorkPool:
    """The pool every deployment of a file goes to, with its job variables."""

    name: str
    anchor: str
    job_variables: Mapping[str, Any]
    job_variables_note: str = ""
    work_queue_name: str = "default"


@dataclass(frozen=True)
class DeploymentFile:
    """One `prefect deploy` file: where the code comes from (build/push/pull) and the pool."""

    path: str
    header: str
    pull: tuple[Step, ...]
    work_pool: WorkPool
    build: tuple[Step, ...] = ()
    build_note: str = ""
    push: tuple[Step, ...] = ()
    pull_alternatives: tuple[Alternative, ...] = ()


def declare(
    model_name: str = DEFAULT_MODEL_NAME, drift_window_days: int = DEFAULT_DRIFT_WINDOW_DAYS
) -> tuple[Deployment, ...]:
    """The six deployments: monthly-etl, monthly-analysis, train, drift-monitor, retrain,
    rollback."""
    return (
        etl_deployment(),
        analysis_deployment(),
        train_deployment(model_name),
        drift_monitor_deployment(drift_window_days),
        retrain_deployment(model_name),
        rollback_deployment(),
    )


def etl_deployment() -> Deployment:
    """The monthly ETL, on the 2nd of each month."""
    return Deployment(
        name="monthly-etl",
        entrypoint="flows/etl.py:monthly_etl",
        description=(
            "Pull last month's Chicago crimes from Socrata (and re-pull rows whose arrest was "
            "recorded late), validate, enrich and write them to the lake; backfills an empty "
            "lake."
        ),
        tags=(PROJECT, "etl"),
        parameters=(
            Parameter(
                "month",
                None,
                'null = the previous month (a backfill on an empty lake); or "YYYY-MM"',
            ),
        ),
        schedules=(
            Schedule(
                "0 4 2 * *",
                "The 2nd at 04:00 in Chicago: the portal has published the whole previous "
                "month by then.",
            ),
        ),
    )


def analysis_deployment() -> Deployment:
    """The analyst's monthly report, after every completed monthly-etl run."""
    return Deployment(
        name="monthly-analysis",
        entrypoint="flows/analysis.py:monthly_analysis",
        description=(
            "The analyst's monthly report on the newest month in the lake: arrest rates with "
            "confidence intervals, chi-square tests by district and type, the trend over the "
            "window, heat map and map; HTML in the lake and at GET /analysis/latest. Runs when "
            "monthly-etl completes."
        ),
        tags=(PROJECT, "analysis"),
        parameters=(Parameter("month", None, 'null = the newest month in the lake; or "YYYY-MM"'),),
        triggers=(analysis_after_etl_trigger(),),
    )


def train_deployment(model_name: str) -> Deployment:
    """Training a challenger of `model_name`, on demand."""
    return Deployment(
        name="train",
        entrypoint="flows/train.py:train",
        description=(
            "Train a challenger on the lake's rolling window and register it in MLflow as "
            f"{model_name} (alias challenger); on demand."
        ),
        tags=(PROJECT, "training"),
        parameters=(
            Parameter(
                "until",
                None,
                'newest month of the window, "YYYY-MM"; null = the newest mature one in the lake',
            ),
            Parameter("holdout_months", 1),
            Parameter("promote_if_none", False),
            Parameter("classifier", "auto"),
            Parameter("balance", False),
        ),
    )


def drift_monitor_deployment(window_days: int) -> Deployment:
    """The daily drift check over the last `window_days` of traffic."""
    return Deployment(
        name="drift-monitor",
        entrypoint="flows/monitor.py:drift_monitor",
        description=(
            "Compare the last week of served predictions with the champion's reference data "
            "(Evidently); store the drift report and emit crimeflow.drift.checked / .detected."
        ),
        tags=(PROJECT, "monitoring"),
        parameters=(
            Parameter("window_days", window_days),
            Parameter("since", None),
            Parameter("until", None),
        ),
        schedules=(Schedule("0 6 * * *", "Daily at 06:00 in Chicago, after the night's traffic."),),
    )


def retrain_deployment(model_name: str) -> Deployment:
    """Retrain, gate and promote; on a drift event for `model_name` or by hand."""
    return Deployment(
        name="retrain",
        entrypoint="flows/retrain.py:retrain",
        description=(
            "Refresh the lake, train a challenger, evaluate it on the staging months and "
            "promote it to champion only if the gate passes; started by a drift event or by "
            "hand."
        ),
        tags=(PROJECT, "training"),
        parameters=(
            Parameter("reason", "manual"),
            Parameter("drift_report_id", None),
            Parameter("refresh", True),
            Parameter(
                "until",
                None,
                'newest month to ingest and train on, "YYYY-MM"; null = the last complete month',
            ),
        ),
        concurrency=ConcurrencyLimit(
            1,
            "CANCEL_NEW",
            "One retrain at a time; a drift event that arrives during a retrain is dropped, "
            "not queued.",
        ),
        triggers=(
            drift_trigger(model_name),
            performance_trigger(model_name),
            etl_completed_trigger(),
        ),
    )


def rollback_deployment() -> Deployment:
    """Moving the champion back, on demand."""
    return Deployment(
        name="rollback",
        entrypoint="flows/retrain.py:rollback",
        description=(
            "Point the champion alias back at previous-champion (the model served before the "
            "last promotion); on demand."
        ),
        tags=(PROJECT, "training"),
        parameters=(Parameter("reason", "manual"),),
    )


def drift_trigger(model_name: str) -> EventTrigger:
    """Run `retrain` on every `crimeflow.drift.detected` for this model, with the report id."""
    return EventTrigger(
        name="retrain-on-drift",
        description="A drift check found drift; retrain, gate, promote or reject.",
        event=DRIFT_DETECTED,
        resource_id=model_resource(model_name)["prefect.resource.id"],
        resource_note=(
            "crimeflow.model.<CRIMEFLOW_MODEL_NAME>; "
            f"{DEFAULT_MODEL_NAME} is the default model name."
        ),
        parameters=(
            Parameter("reason", "drift"),
            Parameter(
                "drift_report_id",
                "{{ event.payload.report_id }}",
                "Templates render to strings (unless `__prefect_kind: json`): report ids are "
                "strings.",
            ),
        ),
    )


def performance_trigger(model_name: str) -> EventTrigger:
    """Run `retrain` on every `crimeflow.performance.degraded` for this model (same limit and
    debounce as drift: the deployment's concurrency limit, the flow's debounce)."""
    drift = drift_trigger(model_name)
    return EventTrigger(
        name="retrain-on-performance",
        description=(
            "A window's PR-AUC (realized on matured outcomes, else estimated) fell below the "
            "champion's holdout figure by more than CRIMEFLOW_PERFORMANCE_MAX_DROP; retrain, "
            "gate, promote or reject."
        ),
        event=PERFORMANCE_DEGRADED,
        resource_id=drift.resource_id,
        resource_note=drift.resource_note,
        parameters=(
            Parameter("reason", "performance"),
            Parameter(
                "drift_report_id",
                "{{ event.payload.report_id }}",
                "The monitor report whose performance section found the drop.",
            ),
        ),
    )


# The state-change event Prefect's server emits when a flow run reaches Completed
# (prefect/server/models/events.py: `prefect.flow-run.<state name>`, resource
# `prefect.flow-run.<id>`, related resources the flow, deployment, work queue/pool, tags).
FLOW_RUN_COMPLETED = "prefect.flow-run.Completed"
ETL_NAME = "monthly-etl"  # the ETL's flow name and its deployment's name
# Prefect's scheduler tags every run it creates from a schedule with this tag.
AUTO_SCHEDULED_TAG = "prefect.tag.auto-scheduled"


def etl_completed_trigger() -> EventTrigger:
    """Run `retrain` (reason `schedule`) when a scheduled run of the monthly-etl deployment
    completes."""
    return EventTrigger(
        name="retrain-after-etl",
        description=(
            "The monthly ETL completed: retrain on the window ending with its month, through "
            "the same gate (a candidate no better than the champion is rejected)."
        ),
        event=FLOW_RUN_COMPLETED,
        resource_id="prefect.flow-run.*",
        resource_note="Any flow run; the related resources below narrow it to the ETL.",
        match_related=(
            {"prefect.resource.role": "flow", "prefect.resource.name": ETL_NAME},
            {"prefect.resource.role": "deployment", "prefect.resource.name": ETL_NAME},
            {"prefect.resource.role": "tag", "prefect.resource.id": AUTO_SCHEDULED_TAG},
        ),
        related_note=(
            "Runs of the monthly-etl deployment that its schedule created (Prefect's scheduler "
            "tags them auto-scheduled). A backfill started by hand month by month does not start "
            "a retrain per month (run `retrain` once after it); the ETL subflows a retrain runs "
            "have no deployment, so a retrain never triggers another; nor does `crimeflow etl`."
        ),
        parameters=(
            Parameter("reason", "schedule"),
            Parameter(
                "until",
                "{{ flow_run.parameters.month }}",
                "The ETL run's month: null (the scheduled run: the previous month, which the "
                'retrain then takes as the last complete month) or "YYYY-MM". One expression '
                "renders as JSON, so null stays null.",
            ),
        ),
    )


def analysis_after_etl_trigger() -> EventTrigger:
    """Run the analyst report when a flow run of `monthly-etl` reaches Completed."""
    return EventTrigger(
        name="analysis-after-etl",
        description="monthly-etl completed: report on the newest month in the lake.",
        event=FLOW_RUN_COMPLETED,
        resource_id="prefect.flow-run.*",
        resource_note="Any flow run whose related flow (below) is monthly-etl.",
        match_related=({"prefect.resource.role": "flow", "prefect.resource.name": ETL_NAME},),
        parameters=(Parameter("month", None, "null: the newest month the ETL left in the lake"),),
    )


# --- where the code comes from: one file per kind of worker ------------------------------------

PROCESS_HEADER = """\
crimeflow's deployments for `prefect deploy --all` (a Prefect 3 server and workers).

  prefect work-pool create crimeflow-process --type process   # once per Prefect server
  prefect --no-prompt deploy --all                            # from the repository root
  prefect worker start --pool crimeflow-process               # on the machine with this checkout
  python -m deployments.alerts                                # the alert automations (optional)

The embedded default (`crimeflow up`, deployments/serve.py) serves the same six flows with the
same schedules and trigger without a work pool, from the same declarations.

Code location: this file is for workers that run on the machine (or a copy of the volume)
holding this git checkout. The build step records the checkout's absolute path at deploy time
and the pull step changes into it before each flow run, so entrypoints such as flows/etl.py
resolve and the checkout's installed package (`pip install -e .`) is the one that runs.
For a container image (Docker, Kubernetes, ECS pools), deploy
deployments/prefect.image.yaml instead (the code is baked into the image at /app); see
deployments/WORK_POOLS.md for each pool type's job_variables.

Settings reach flow runs through the worker's environment (CRIMEFLOW_* and PREFECT_API_URL
as the worker sees them); add overrides to the pool's job_variables (env) in
deployments/declarations.py, or pass `--job-variable` to `prefect deploy`."""

IMAGE_HEADER = """\
crimeflow's deployments for workers that run the project image (deployments/Dockerfile):
Docker, Kubernetes or ECS work pools. The six deployments are those of ../prefect.yaml; only
where the code comes from and the pool differ. Run from the repository root, so that the
entrypoints resolve:

  docker build -f deployments/Dockerfile -t crimeflow:0.1.0 .   # and push it where workers pull
  prefect work-pool create crimeflow-docker --type docker        # or kubernetes / ecs
  prefect --no-prompt deploy --all --prefect-file deployments/prefect.image.yaml \\
      [--pool crimeflow-k8s] [--job-variable image=registry.example.org/crimeflow:0.1.0]
  prefect worker start --pool crimeflow-docker                   # needs prefect-docker

deployments/WORK_POOLS.md lists the job_variables of each pool type (env, resources, secrets)."""

SET_WORKING_DIRECTORY = "prefect.deployments.steps.set_working_directory"
IMAGE_PULL = (
    Step(
        SET_WORKING_DIRECTORY,
        {"directory": "/app"},
        "The image's WORKDIR, where `pip install -e .` put the project: flows/*.py resolve there.",
    ),
)

PROCESS_FILE = DeploymentFile(
    path="prefect.yaml",
    header=PROCESS_HEADER,
    build=(
        Step(
            "prefect.deployments.steps.run_shell_script",
            {"id": "checkout", "script": "pwd", "stream_output": False},
            "The checkout's absolute path, so that the pull step works wherever it was cloned.",
        ),
    ),
    pull=(Step(SET_WORKING_DIRECTORY, {"directory": "{{ checkout.stdout }}"}),),
    pull_alternatives=(
        Alternative(
            "Image variant (the code is in the image, the worker starts the container there):",
            tuple(Step(step.function, step.arguments) for step in IMAGE_PULL),
        ),
        Alternative(
            "Remote-checkout variant (a worker without this checkout clones it per run; add\n"
            'access_token: "{{ prefect.blocks.secret.<name> }}" for a private repository):',
            (
                Step(
                    "prefect.deployments.steps.git_clone",
                    {"repository": "https://example.org/you/crimeflow.git", "branch": "main"},
                ),
            ),
        ),
    ),
    work_pool=WorkPool(
        name="crimeflow-process",
        anchor="process_pool",
        job_variables={},
        job_variables_note=(
            "Process pool variables: env (extra environment), working_dir, stream_output, command."
        ),
    ),
)

IMAGE_FILE = DeploymentFile(
    path="deployments/prefect.image.yaml",
    header=IMAGE_HEADER,
    build_note="Nothing to build or push here: the image is built and pushed by CI (or by hand, "
    "above).",
    pull=IMAGE_PULL,
    work_pool=WorkPool(
        name="crimeflow-docker",
        anchor="image_pool",
        job_variables={"image": "crimeflow:0.1.0", "env": {"CRIMEFLOW_HOME": "/var/lib/crimeflow"}},
        job_variables_note=(
            "env holds the flow runs' settings: point them at shared state, not the "
            "container's disk."
        ),
    ),
)

S3_HEADER = """\
crimeflow's deployments for process workers on other machines, without a checkout: the code
travels through S3 with prefect-aws's steps. `prefect deploy` uploads this folder (minus
.prefectignore: no .git, .venv, .env, tests or local state) to s3://crimeflow-lake/code/crimeflow,
and before every flow run the worker downloads it into its working folder. The keys are those of
the lake's AwsCredentials block, which `crimeflow blocks apply` writes
(CRIMEFLOW_S3_BUCKET_BLOCK=crimeflow-lake, as compose sets it); the worker's machine needs the
crimeflow package installed (`pip install .`) and PREFECT_API_URL, nothing else.

  crimeflow blocks apply                                         # once, and after a key change
  prefect --no-prompt deploy --all --prefect-file deployments/prefect.s3.yaml   # repository root
  prefect worker start --pool crimeflow-process                  # on any machine

The six deployments are those of ../prefect.yaml; only where the code comes from differs."""

# The lake's bucket and its credentials block: `crimeflow blocks apply` with
# CRIMEFLOW_S3_BUCKET_BLOCK=crimeflow-lake. The code goes beside the lake (`lake/`), not in it.
CODE_BUCKET = "crimeflow-lake"
CODE_FOLDER = "code/crimeflow"
S3_CREDENTIALS = "{{ prefect.blocks.aws-credentials.crimeflow-lake-credentials }}"

S3_FILE = DeploymentFile(
    path="deployments/prefect.s3.yaml",
    header=S3_HEADER,
    push=(
        Step(
            "prefect_aws.deployments.steps.push_to_s3",
            {
                "id": "push_code",
                "requires": "prefect-aws>=0.7",
                "bucket": CODE_BUCKET,
                "folder": CODE_FOLDER,
                "credentials": S3_CREDENTIALS,
            },
            "The repository (as filtered by .prefectignore) to S3, once per `prefect deploy`.",
        ),
    ),
    pull=(
        Step(
            "prefect_aws.deployments.steps.pull_from_s3",
            {
                "id": "pull_code",
                "requires": "prefect-aws>=0.7",
                "bucket": "{{ push_code.bucket }}",
                "folder": "{{ push_code.folder }}",
                "credentials": S3_CREDENTIALS,
            },
            "Into the flow run's working folder, where flows/*.py then resolve.",
        ),
    ),
    work_pool=PROCESS_FILE.work_pool,
)

DEPLOYMENT_FILES = (PROCESS_FILE, IMAGE_FILE, S3_FILE)
