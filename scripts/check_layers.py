"""Check the layer rules of docs/architecture.md; print each break and exit 1 if there is any.

Rooms, lowest first: crimeflow.contract <- crimeflow.domain <- crimeflow.stores <-
crimeflow.standins <- monitoring <- tasks <- flows <- deployments / crimeflow.cli. `api` uses the
library and monitoring; only crimeflow.cli imports it. Run it as `python scripts/check_layers.py
[ROOT]` (`make lint` does).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

MAX_FUNCTION_LINES = 80
# Folders whose functions are held to the length rule (tests/ is not).
CODE_FOLDERS = ("crimeflow", "tasks", "api", "monitoring", "flows", "deployments", "scripts")
TOP_ROOMS = {"crimeflow", "tasks", "api", "monitoring", "flows", "deployments"}
# The library's rooms and the top-level packages, lowest first: a room may import only rooms
# before it. `api` may use them all but tasks, flows and deployments; only the shell
# (crimeflow.cli, `python -m crimeflow`) may import api, and it may import anything.
ORDER = (
    "crimeflow.contract",
    "crimeflow.domain",
    "crimeflow.stores",
    "crimeflow.standins",
    "monitoring",
    "tasks",
    "flows",
    "deployments",
)
SHELL = ("crimeflow.cli", "crimeflow.__main__")


def _forbidden() -> dict[str, set[str]]:
    """What each room may not import, derived from ORDER."""
    rules = {room: {*ORDER[i + 1 :], "crimeflow.cli", "api"} for i, room in enumerate(ORDER)}
    # Modules at the top of the crimeflow package sit with the stand-ins, below monitoring.
    rules["crimeflow"] = rules["crimeflow.standins"]
    rules["api"] = {"crimeflow.cli", "tasks", "flows", "deployments"}
    rules.update({shell: set() for shell in SHELL})
    return rules


FORBIDDEN: dict[str, set[str]] = _forbidden()
TASK_DECORATORS = {"task", "step"}


def python_files(root: Path, folder: str) -> Iterator[Path]:
    """The .py files under `root/folder`, sorted."""
    yield from sorted((root / folder).rglob("*.py"))


def module_of(root: Path, path: Path) -> str:
    """The dotted module name of a file below `root`."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.Module, module: str, is_package: bool) -> Iterator[str]:
    """Every module an `import` or `from ... import` names, relative imports resolved."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            yield name
            yield from (f"{name}.{alias.name}" for alias in node.names)


def room_of(module: str) -> str | None:
    """The most specific room in FORBIDDEN that holds `module`."""
    matches = [room for room in FORBIDDEN if module == room or module.startswith(room + ".")]
    return max(matches, key=len) if matches else None


def within(module: str, room: str) -> bool:
    """Whether `module` is `room` or lies inside it."""
    return module == room or module.startswith(room + ".")


def import_breaks(root: Path) -> Iterator[str]:
    """`path:line imports X` for each import that points up (or sideways into api)."""
    for folder in sorted(TOP_ROOMS):
        for path in python_files(root, folder):
            module = module_of(root, path)
            room = room_of(module)
            if room is None:
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            targets = set(imported_modules(tree, module, path.name == "__init__.py"))
            bad = {
                target
                for target in targets
                if any(within(target, f) and not within(module, f) for f in FORBIDDEN[room])
            }
            # `from api.x import Y` names api.x and api.x.Y: report the module once.
            for target in sorted(t for t in bad if not any(within(t, b) and t != b for b in bad)):
                yield f"{path.relative_to(root)}: {room} may not import {target}"


def is_task_decorator(node: ast.expr) -> bool:
    """`@task`, `@task(...)`, `@prefect.task(...)`, `@step` or `@step(...)`."""
    if isinstance(node, ast.Call):
        node = node.func
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
    return name in TASK_DECORATORS


def taskless_modules(root: Path) -> Iterator[str]:
    """Modules in tasks/ (not __init__.py) that define no Prefect task."""
    for path in python_files(root, "tasks"):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        functions = [
            n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        if not any(is_task_decorator(d) for f in functions for d in f.decorator_list):
            yield f"{path.relative_to(root)}: defines no @task (tasks/ holds Prefect tasks only)"


def long_functions(root: Path) -> Iterator[str]:
    """Functions longer than MAX_FUNCTION_LINES lines, outside tests/."""
    for folder in CODE_FOLDERS:
        for path in python_files(root, folder):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = node.end_lineno - node.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        yield (
                            f"{path.relative_to(root)}:{node.lineno}: {node.name} is {length} "
                            f"lines (at most {MAX_FUNCTION_LINES})"
                        )


def breaks(root: Path) -> list[str]:
    """Every break of the layer rules under `root`."""
    return [*import_breaks(root), *taskless_modules(root), *long_functions(root)]


def main(argv: list[str]) -> int:
    """Print the breaks; exit status 1 when there is any."""
    root = Path(argv[1] if len(argv) > 1 else ".").resolve()
    found = breaks(root)
    for line in found:
        print(line)
    print(f"layer rules: {len(found)} break(s)" if found else "layer rules: ok")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
