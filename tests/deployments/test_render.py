"""The generated deployment files: fresh, parseable, and saying what the declarations say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployments.declarations import DEPLOYMENT_FILES, declare
from deployments.render import folded, main, render, rendered_files, scalar

ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = ROOT / "prefect.yaml"
IMAGE_YAML = ROOT / "deployments" / "prefect.image.yaml"
S3_YAML = ROOT / "deployments" / "prefect.s3.yaml"
NAMES = ["monthly-etl", "monthly-analysis", "train", "drift-monitor", "retrain", "rollback"]
# What may differ between the checkout and the image variant: where code and runs live.
INFRA_KEYS = {"work_pool", "pull", "build", "push"}


def deployments_of(path: Path) -> dict[str, dict[str, Any]]:
    """The deployments of a prefect.yaml, by name."""
    config = yaml.safe_load(path.read_text())
    return {deployment["name"]: deployment for deployment in config["deployments"]}


@pytest.fixture(scope="module")
def deployments() -> dict[str, dict[str, Any]]:
    return deployments_of(PREFECT_YAML)


# --- freshness -----------------------------------------------------------------------------------


def test_committed_files_are_the_rendered_declarations():
    texts = rendered_files(ROOT)
    assert set(texts) == {PREFECT_YAML, IMAGE_YAML, S3_YAML}
    for path, text in texts.items():
        where = path.relative_to(ROOT)
        assert path.read_text(encoding="utf-8") == text, f"{where} is stale: run `make deployments`"
        assert text.startswith("# Generated from deployments/declarations.py by `make deployments`")


def test_check_mode_names_stale_files_and_writing_fixes_them(tmp_path, capsys):
    (tmp_path / "deployments").mkdir()
    (tmp_path / "prefect.yaml").write_text(PREFECT_YAML.read_text() + "# edited by hand\n")
    # The image file is missing altogether.
    assert main(["--check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "prefect.yaml is stale" in err
    assert "deployments/prefect.image.yaml is stale" in err
    assert not (tmp_path / "deployments" / "prefect.image.yaml").exists()
    assert main(["--root", str(tmp_path)]) == 0
    assert main(["--check", "--root", str(tmp_path)]) == 0
    assert (tmp_path / "prefect.yaml").read_text() == PREFECT_YAML.read_text()


def test_check_mode_passes_on_the_repository():
    command = [sys.executable, "-m", "deployments.render", "--check"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_rendering_imports_no_flow():
    code = (
        "import sys, deployments.render; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'flows', 'tasks', 'prefect'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stderr


# --- the YAML pieces -----------------------------------------------------------------------------


TRICKY = [
    "",
    "null",
    "true",
    "no",
    "1",
    "0.5",
    "a: b",
    "x #y",
    "{{ event.payload.report_id }}",
    "0 4 2 * *",
    "*alias",
    "&anchor",
    "a, b",
    "[a]",
    " padded ",
    "it's",
    'say "hi"',
    "crimeflow:0.1.0",
    "- item",
]


@pytest.mark.parametrize("value", [*TRICKY, None, True, False, 0, 7, 1.5])
def test_scalars_read_back_as_themselves(value):
    assert yaml.safe_load(f"k: {scalar(value)}") == {"k": value}
    assert yaml.safe_load(f"[{scalar(value, in_flow=True)}]") == [value]


def test_crons_are_quoted_for_readability():
    assert scalar("0 6 * * *") == '"0 6 * * *"'
    assert scalar("America/Chicago") == "America/Chicago"


def test_folded_descriptions_read_back_and_refuse_what_would_change():
    text = " ".join(["word"] * 60)
    lines = folded("description", text, 4)
    assert all(len(line) <= 100 for line in lines)
    assert yaml.safe_load("\n".join(lines)) == {"description": text}
    for bad in ("two\nlines", " leading space", ("x" * 60 + "  ") * 3):
        with pytest.raises(ValueError, match="folding"):
            folded("description", bad, 4)


# --- what the files say --------------------------------------------------------------------------


def test_the_files_hold_every_declared_field():
    for file in DEPLOYMENT_FILES:
        parsed = {d["name"]: d for d in yaml.safe_load(render(file, declare()))["deployments"]}
        for declaration in declare():
            deployment = parsed[declaration.name]
            assert deployment["entrypoint"] == declaration.entrypoint
            assert deployment["description"] == declaration.description
            assert deployment["tags"] == list(declaration.tags)
            assert deployment["parameters"] == declaration.parameter_values()
            assert deployment["work_pool"]["name"] == file.work_pool.name


def test_the_six_deployments_on_the_process_pool(deployments):
    assert list(deployments) == NAMES
    for deployment in deployments.values():
        assert deployment["work_pool"]["name"] == "crimeflow-process"
        assert deployment["description"].strip()
        assert "crimeflow" in deployment["tags"]


def test_checkout_pull_step_changes_into_the_recorded_checkout():
    config = yaml.safe_load(PREFECT_YAML.read_text())
    (build,) = config["build"]
    step = build["prefect.deployments.steps.run_shell_script"]
    assert step["script"] == "pwd"
    (pull,) = config["pull"]
    directory = pull["prefect.deployments.steps.set_working_directory"]["directory"]
    assert directory == "{{ " + step["id"] + ".stdout }}"


def test_schedules(deployments):
    assert deployments["monthly-etl"]["schedules"] == [
        {"cron": "0 4 2 * *", "timezone": "America/Chicago", "active": True}
    ]
    assert deployments["drift-monitor"]["schedules"] == [
        {"cron": "0 6 * * *", "timezone": "America/Chicago", "active": True}
    ]
    for name in ("train", "retrain", "rollback"):
        assert not deployments[name].get("schedules")


def test_retrain_trigger_and_concurrency(deployments):
    retrain = deployments["retrain"]
    assert retrain["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    by_event = {t["expect"][0]: t for t in retrain["triggers"]}
    etl = by_event["prefect.flow-run.Completed"]
    assert etl["name"] == "retrain-after-etl"
    assert etl["match_related"] == [
        {"prefect.resource.role": "flow", "prefect.resource.name": "monthly-etl"},
        {"prefect.resource.role": "deployment", "prefect.resource.name": "monthly-etl"},
        {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.auto-scheduled"},
    ]
    assert etl["parameters"] == {"reason": "schedule", "until": "{{ flow_run.parameters.month }}"}
    for event, reason in (
        ("crimeflow.drift.detected", "drift"),
        ("crimeflow.performance.degraded", "performance"),
    ):
        trigger = by_event[event]
        assert trigger["enabled"] is True
        assert trigger["expect"] == [event]
        assert trigger["match"] == {"prefect.resource.id": "crimeflow.model.chicago-arrest"}
        assert trigger["parameters"] == {
            "reason": reason,
            "drift_report_id": "{{ event.payload.report_id }}",
        }


def test_image_variant_declares_the_same_deployments(deployments):
    image = deployments_of(IMAGE_YAML)
    assert list(image) == NAMES
    for name in NAMES:
        strip = lambda d: {k: v for k, v in d.items() if k not in INFRA_KEYS}  # noqa: E731
        assert strip(image[name]) == strip(deployments[name]), name
        assert image[name]["work_pool"]["name"] == "crimeflow-docker"
    config = yaml.safe_load(IMAGE_YAML.read_text())
    assert config["build"] is None and config["push"] is None
    (pull,) = config["pull"]
    assert pull["prefect.deployments.steps.set_working_directory"]["directory"] == "/app"
