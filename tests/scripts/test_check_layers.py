"""The layer check: each rule fed a tree that breaks it, a clean tree, and this repository."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "check_layers.py"


@pytest.fixture(scope="module")
def checker() -> ModuleType:
    """scripts/check_layers.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("check_layers", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tree(root: Path, files: dict[str, str]) -> Path:
    """Write a small project tree: every top-level room exists, plus `files`."""
    for room in ("crimeflow", "tasks", "api", "monitoring", "flows", "deployments", "scripts"):
        (root / room).mkdir(parents=True, exist_ok=True)
        (root / room / "__init__.py").touch()
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


CLEAN = {
    "crimeflow/contract/schema.py": "LABEL = 'arrest'\n",
    "crimeflow/domain/model.py": "from crimeflow.contract.schema import LABEL\n",
    "crimeflow/stores/lake.py": "from crimeflow.domain import model\n",
    "crimeflow/cli/main.py": "import api.app\nimport flows.etl\nimport deployments.serve\n",
    "monitoring/drift.py": "from crimeflow.stores.lake import x\n",
    "tasks/steps.py": "from prefect import task\n\n@task\ndef load():\n    return 1\n",
    "tasks/more.py": "from tasks import step\n\n@step(name='x')\ndef go():\n    return 1\n",
    "flows/etl.py": "from tasks.steps import load\n",
    "api/app.py": "from monitoring.drift import x\nfrom crimeflow.stores import lake\n",
}


def test_a_clean_tree_passes(checker: ModuleType, tmp_path: Path) -> None:
    assert checker.breaks(tree(tmp_path, CLEAN)) == []


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        # Rule 1: nothing outside crimeflow/cli imports api.
        ("tasks/bad.py", "from api.schemas import X\n@task\ndef f(): ...\n", "may not import api"),
        ("crimeflow/stores/bad.py", "import api.app\n", "may not import api.app"),
        ("monitoring/bad.py", "from api import schemas\n", "may not import api"),
        # Rule 2: api imports no flows or tasks.
        ("api/bad.py", "from tasks.steps import load\n", "may not import tasks.steps"),
        ("api/bad2.py", "import flows.etl\n", "may not import flows.etl"),
        # Rule 3: monitoring imports no tasks or flows.
        ("monitoring/bad.py", "from tasks import steps\n", "may not import tasks"),
        # Rule 4: the library imports nothing above it, and its rooms point down.
        ("crimeflow/domain/bad.py", "from monitoring.drift import x\n", "monitoring.drift"),
        ("crimeflow/contract/bad.py", "from crimeflow.stores import lake\n", "crimeflow.stores"),
        ("crimeflow/domain/bad.py", "from ..stores import lake\n", "crimeflow.stores"),
        ("crimeflow/stores/bad.py", "import deployments.serve\n", "deployments.serve"),
        # Rule 5: every tasks/ module defines a task.
        ("tasks/pure.py", "def helper():\n    return 1\n", "defines no @task"),
        # Rule 6: no function over 80 lines outside tests/.
        ("scripts/long.py", "def f():\n" + "    x = 1\n" * 80, "f is 81 lines"),
    ],
)
def test_each_rule_names_the_offender(
    checker: ModuleType, tmp_path: Path, name: str, text: str, expected: str
) -> None:
    found = checker.breaks(tree(tmp_path, {**CLEAN, name: text}))
    assert len(found) == 1, found
    assert found[0].startswith(name) and expected in found[0]


def test_tests_may_import_anything_and_be_long(checker: ModuleType, tmp_path: Path) -> None:
    long_test = "import api.app\nimport flows.etl\ndef test_f():\n" + "    x = 1\n" * 100
    assert checker.breaks(tree(tmp_path, {**CLEAN, "tests/test_x.py": long_test})) == []


def test_this_repository_keeps_the_rules() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(REPO)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout
    assert done.stdout.strip().endswith("layer rules: ok")
