"""`step`, the one task policy: real Prefect tasks, never input-hash cached, names unchanged."""

from __future__ import annotations

import importlib
import pkgutil

from prefect import Task
from prefect.cache_policies import NO_CACHE

import tasks
from tasks import step

# The task names the flows' run graphs, the Prefect UI and the tests know (name -> module).
TASK_NAMES = {
    "commit_run": "etl_steps",
    "load_state": "etl_steps",
    "publish_summary": "etl_steps",
    "raw_row_counts": "etl_steps",
    "stage_raw": "etl_steps",
    "update_training_window": "etl_steps",
    "validate_month": "etl_steps",
    "write_month": "etl_steps",
    "write_stations": "etl_steps",
    "write_boundary_layers": "etl_steps",
    "extract-boundaries": "extract",
    "extract-crimes": "extract",
    "extract-late-updates": "extract",
    "extract-stations": "extract",
    "check_drift": "monitor_steps",
    "check_performance": "monitor_steps",
    "emit_performance_events": "monitor_steps",
    "publish_performance": "monitor_steps",
    "emit_drift_events": "monitor_steps",
    "load_current": "monitor_steps",
    "load_reference": "monitor_steps",
    "publish_verdict": "monitor_steps",
    "store_report": "monitor_steps",
    "build_staging_set": "retrain_steps",
    "choose_until": "retrain_steps",
    "earlier_retrain": "retrain_steps",
    "record_and_act": "retrain_steps",
    "roll_back": "retrain_steps",
    "run_gate": "retrain_steps",
    "stage_candidate": "retrain_steps",
    "stage_champion": "retrain_steps",
    "compute_analysis": "analysis_steps",
    "load_window": "analysis_steps",
    "publish_report": "analysis_steps",
    "load_community_areas": "boundary_steps",
    "audit_holdout": "train_steps",
    "evaluate_holdout": "train_steps",
    "fit_model": "train_steps",
    "load_stations": "train_steps",
    "load_training_window": "train_steps",
    "log_and_register": "train_steps",
    "log_audit_tables": "train_steps",
    "publish_training_summary": "train_steps",
}


def project_tasks() -> dict[str, Task]:
    """Every Prefect task defined in a tasks/ module, by task name."""
    found: dict[str, Task] = {}
    for info in pkgutil.iter_modules(tasks.__path__):
        module = importlib.import_module(f"tasks.{info.name}")
        for value in vars(module).values():
            if isinstance(value, Task) and value.fn.__module__ == module.__name__:
                found[value.name] = value
    return found


def test_every_task_keeps_its_name_and_never_caches_by_input():
    found = project_tasks()
    assert {name: t.fn.__module__.removeprefix("tasks.") for name, t in found.items()} == (
        TASK_NAMES
    )
    assert all(t.cache_policy is NO_CACHE for t in found.values())


def test_step_bare_and_with_options_gives_a_real_task():
    @step
    def double(x: int) -> int:
        return 2 * x

    @step(name="tripled", retries=2, retry_delay_seconds=0)
    def triple(x: int) -> int:
        return 3 * x

    assert isinstance(double, Task) and isinstance(triple, Task)
    assert (double.name, triple.name) == ("double", "tripled")
    assert (double.retries, triple.retries) == (0, 2)
    assert double.cache_policy is NO_CACHE and triple.cache_policy is NO_CACHE
    assert double.fn(4) == 8 and triple.fn(4) == 12
