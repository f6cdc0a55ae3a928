"""The requirement files: runtime (the image) and development split, pins, and import coverage.

requirements.txt is what deployments/Dockerfile installs; requirements-dev.txt adds the test and
dev tools for `make install`. These tests resolve each file's dependency closure from the
installed distributions' metadata (importlib.metadata, markers and extras evaluated), so they
need no network: the image must carry no test tool, and every package the shipped code imports
must come with requirements.txt. Every checker is also fed a broken copy.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "requirements.txt"
DEV = ROOT / "requirements-dev.txt"
CONSTRAINTS = ROOT / "constraints.txt"
PYPROJECT = ROOT / "pyproject.toml"
MAKEFILE = ROOT / "Makefile"
DOCKERFILE = ROOT / "deployments" / "Dockerfile"

# What the image ships (pyproject's packages) and what only development uses.
SHIPPED = ("crimeflow", "api", "flows", "tasks", "monitoring", "deployments")
DEVELOPMENT = ("tests", "scripts")
FIRST_PARTY = frozenset(SHIPPED + DEVELOPMENT)
TEST_TOOLS = frozenset({"pytest", "pytest-timeout", "hypothesis", "moto", "ruff"})


# --- reading the files ----------------------------------------------------------------------


def requirement_file(path: Path) -> tuple[list[Requirement], list[Path]]:
    """A requirements file's own requirements and the files it includes with `-r`."""
    requirements, includes = [], []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r ", "--requirement ")):
            includes.append(path.parent / line.split(maxsplit=1)[1])
        else:
            requirements.append(Requirement(line))
    return requirements, includes


def all_requirements(path: Path) -> list[Requirement]:
    """A requirements file's requirements, with those of the files it includes."""
    own, includes = requirement_file(path)
    return [*own, *(r for include in includes for r in all_requirements(include))]


def names(requirements: Iterable[Requirement]) -> set[str]:
    """Canonical project names."""
    return {canonicalize_name(r.name) for r in requirements}


def constraint_pins(path: Path = CONSTRAINTS) -> dict[str, str]:
    """constraints.txt as {canonical name: version}."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.strip().partition("==")
            pins[canonicalize_name(name)] = version
    return pins


# --- checkers -------------------------------------------------------------------------------


def pin_errors(requirements: Iterable[Requirement], pins: Mapping[str, str]) -> list[str]:
    """Requirements that are not `==` the version constraints.txt pins."""
    errors = []
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        specifiers = [(s.operator, s.version) for s in requirement.specifier]
        if name not in pins:
            errors.append(f"{requirement.name}: not pinned in constraints.txt")
        elif specifiers != [("==", pins[name])]:
            errors.append(f"{requirement.name}: {requirement.specifier} is not =={pins[name]}")
    return errors


@cache
def _distribution_requires(name: str) -> tuple[str, ...] | None:
    """An installed distribution's Requires-Dist lines; None when it is not installed."""
    try:
        return tuple(metadata.distribution(name).requires or ())
    except metadata.PackageNotFoundError:
        return None


def dependency_closure(requirements: Iterable[Requirement]) -> tuple[set[str], list[str]]:
    """Every project the requirements pull in (markers and extras evaluated), and the missing."""
    seen: set[tuple[str, frozenset[str]]] = set()
    missing: list[str] = []
    stack = [(canonicalize_name(r.name), frozenset(r.extras)) for r in requirements]
    while stack:
        name, extras = stack.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        requires = _distribution_requires(name)
        if requires is None:
            missing.append(name)
            continue
        for line in requires:
            dependency = Requirement(line)
            wanted = dependency.marker is None or any(
                dependency.marker.evaluate({"extra": extra}) for extra in (extras or {""})
            )
            if wanted:
                stack.append((canonicalize_name(dependency.name), frozenset(dependency.extras)))
    return {name for name, _ in seen}, sorted(set(missing))


def imported_modules(folders: Iterable[Path]) -> dict[str, set[str]]:
    """Top-level names of every absolute import (and pytest.importorskip), with their files."""
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            for module in _imports_of(ast.parse(path.read_text(encoding="utf-8"))):
                where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                found.setdefault(module.split(".")[0], set()).add(str(where))
    return found


def _imports_of(tree: ast.AST) -> Iterable[str]:
    """Module names a parsed file imports, inside functions too."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", None) == "importorskip"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            yield str(node.args[0].value)


def third_party(modules: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """The imports that are neither the standard library nor this project."""
    return {
        name: files
        for name, files in modules.items()
        if name not in sys.stdlib_module_names and name not in FIRST_PARTY
    }


@cache
def _providers() -> Mapping[str, list[str]]:
    """Top-level import name -> the installed distributions that provide it (a slow scan)."""
    return metadata.packages_distributions()


def import_errors(modules: Mapping[str, set[str]], available: set[str]) -> list[str]:
    """Imported top-level names whose distribution is not among `available` projects."""
    providers = _providers()
    errors = []
    for module, files in sorted(third_party(modules).items()):
        where = sorted(files)[0]
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        if not dists:
            errors.append(f"{where}: imports {module}, which no installed distribution provides")
        elif not dists & available:
            errors.append(f"{where}: imports {module} ({', '.join(sorted(dists))}), not required")
    return errors


def tool_errors(requirements: Iterable[Requirement], tools: set[str]) -> list[str]:
    """Test tools among the requirements or anywhere in their closure."""
    closure, _ = dependency_closure(requirements)
    return [f"{tool} would be installed" for tool in sorted(closure & tools)]


# --- tests ----------------------------------------------------------------------------------


def dev_only() -> set[str]:
    """What requirements-dev.txt adds to the runtime set."""
    own, includes = requirement_file(DEV)
    assert includes == [RUNTIME], "requirements-dev.txt must start from -r requirements.txt"
    return names(own)


def test_every_requirement_is_pinned_as_in_constraints() -> None:
    pins = constraint_pins()
    assert pin_errors(all_requirements(DEV), pins) == []
    assert names(all_requirements(DEV)) <= set(pins)


def test_pin_checker_rejects_drift_and_missing_pins() -> None:
    pins = {"redis": "8.1.0", "ruff": "0.17.6"}
    requirements = [Requirement("redis==8.0.0"), Requirement("ruff>=0.17"), Requirement("six==1")]
    errors = pin_errors(requirements, pins)
    assert len(errors) == 3, errors
    assert "is not ==8.1.0" in errors[0] and "is not ==0.17.6" in errors[1]
    assert "six: not pinned" in errors[2]


def test_the_image_requirements_carry_no_test_tool() -> None:
    tools = dev_only()
    assert tools >= TEST_TOOLS, "the test tools belong in requirements-dev.txt"
    runtime = all_requirements(RUNTIME)
    assert names(runtime).isdisjoint(tools)
    assert tool_errors(runtime, tools) == []


def test_test_tool_checker_looks_through_dependencies() -> None:
    # moto is no direct requirement here, but moto[server]'s closure is checked all the same.
    errors = tool_errors([Requirement("moto[server]")], {"moto", "flask", "pytest"})
    assert errors == ["flask would be installed", "moto would be installed"]


def test_shipped_code_imports_only_what_requirements_txt_installs() -> None:
    closure, missing = dependency_closure(all_requirements(RUNTIME))
    assert missing == []
    modules = imported_modules(ROOT / folder for folder in SHIPPED)
    assert {"prefect", "litestar", "redis", "prometheus_client"} <= set(modules)
    assert import_errors(modules, closure) == []


def test_shipped_imports_are_direct_requirements() -> None:
    # Not only reachable through another package: a direct import is a direct requirement,
    # so that an upgrade elsewhere cannot drop it from the image.
    modules = imported_modules(ROOT / folder for folder in SHIPPED)
    assert import_errors(modules, names(all_requirements(RUNTIME))) == []


def test_import_checker_rejects_dev_only_and_unknown_packages(tmp_path: Path) -> None:
    (tmp_path / "code.py").write_text(
        "import json\nimport hypothesis\nfrom surely_no_such_package.sub import x\n"
        "def f():\n    import pytest\n",
        encoding="utf-8",
    )
    closure, _ = dependency_closure(all_requirements(RUNTIME))
    errors = import_errors(imported_modules([tmp_path]), closure)
    assert any("imports hypothesis (hypothesis), not required" in e for e in errors), errors
    assert any("imports pytest (pytest), not required" in e for e in errors), errors
    assert any("surely_no_such_package, which no installed" in e for e in errors), errors
    assert not any("json" in e for e in errors), errors


def test_tests_and_scripts_import_only_what_requirements_dev_txt_installs() -> None:
    closure, missing = dependency_closure(all_requirements(DEV))
    assert missing == []
    modules = imported_modules(ROOT / folder for folder in DEVELOPMENT)
    assert {"pytest", "moto", "hypothesis"} <= set(modules)
    assert import_errors(modules, closure) == []


def test_pyproject_names_the_same_packages() -> None:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    assert names(map(Requirement, project["dependencies"])) == names(all_requirements(RUNTIME))
    dev = project["optional-dependencies"]["dev"]
    assert names(map(Requirement, dev)) == dev_only()
    # The extras too: moto's server extra is what the tests start.
    assert {r.name: r.extras for r in map(Requirement, dev)}["moto"] == {"server"}


def test_make_installs_the_dev_set_and_the_image_only_the_runtime_set() -> None:
    makefile = MAKEFILE.read_text(encoding="utf-8")
    stamp = re.search(r"^\$\(STAMP\):(.*)$", makefile, re.MULTILINE)
    assert stamp is not None
    assert {"requirements.txt", "requirements-dev.txt", "constraints.txt"} <= set(
        stamp.group(1).split()
    )
    assert "-r requirements-dev.txt -c constraints.txt" in makefile
    instructions = [
        line
        for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert any("-r requirements.txt -c constraints.txt" in line for line in instructions)
    assert not any("requirements-dev" in line for line in instructions)
