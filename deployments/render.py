"""Write prefect.yaml and deployments/prefect.image.yaml from deployments/declarations.py.

`python -m deployments.render` (`make deployments`) rewrites the files that changed;
`python -m deployments.render --check` writes nothing, names each stale file and exits 1.
`render(file, deployments)` is pure (records in, YAML text out); only `main` touches the disk.
The YAML is written line by line rather than dumped, so that it keeps the comments a user of
`prefect deploy` needs; tests parse it back and compare it with the records.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from deployments.declarations import (
    DEPLOYMENT_FILES,
    PREFECT_VERSION,
    PROJECT,
    ConcurrencyLimit,
    Deployment,
    DeploymentFile,
    EventTrigger,
    Parameter,
    Schedule,
    Step,
    declare,
)

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 100
GENERATED = "Generated from deployments/declarations.py by `make deployments`; do not edit by hand."


# --- YAML pieces ---------------------------------------------------------------------------------


def scalar(value: Any, in_flow: bool = False) -> str:
    """One YAML scalar: plain where it parses back to the same value, else JSON-quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if not isinstance(value, str):
        raise TypeError(f"not a YAML scalar: {value!r}")
    # Parsing it back is the test: it catches `null`, `1`, `: `, ` #`, `*`, `{{`, commas in [..].
    document, expected = (f"[{value}]", [value]) if in_flow else (f"k: {value}", {"k": value})
    # `*` reads like an alias to people (crons), so those strings are quoted although valid plain.
    if value and not set(value) & {"\n", "*"} and parses_to(document, expected):
        return value
    # A JSON string is a valid double-quoted YAML scalar.
    return json.dumps(value)


def parses_to(document: str, expected: Any) -> bool:
    """Whether the YAML text parses (safely) to `expected`."""
    try:
        return yaml.safe_load(document) == expected
    except yaml.YAMLError:
        return False


def comment(text: str, indent: int, wrap: bool = True) -> list[str]:
    """`# text` at the indent; long lines wrapped to the width unless `wrap` is false."""
    pad = " " * indent
    lines: list[str] = []
    for line in text.splitlines():
        pieces = textwrap.wrap(line, WIDTH - indent - 2) if wrap and line else [line]
        lines.extend(f"{pad}# {piece}".rstrip() for piece in pieces)
    return lines


def entry(key: str, value: Any, indent: int, note: str = "") -> list[str]:
    """`key: value`, nested mappings as blocks; a note inline if it fits, else above."""
    pad = " " * indent
    if isinstance(value, Mapping) and value:
        nested = [line for k, v in value.items() for line in entry(k, v, indent + 2)]
        return [*comment(note, indent), f"{pad}{scalar(key)}:", *nested]
    if isinstance(value, Mapping):
        line = f"{pad}{scalar(key)}: {{}}"
    elif isinstance(value, list | tuple):
        line = f"{pad}{scalar(key)}: [{', '.join(scalar(item, in_flow=True) for item in value)}]"
    else:
        line = f"{pad}{scalar(key)}: {scalar(value)}"
    if note and len(f"{line}  # {note}") <= WIDTH:
        return [f"{line}  # {note}"]
    return [*comment(note, indent), line]


def folded(key: str, text: str, indent: int) -> list[str]:
    """`key: >-` and the text wrapped below it (a folded scalar joins the lines with spaces)."""
    lines = textwrap.wrap(text, WIDTH - indent - 2, break_long_words=False, break_on_hyphens=False)
    block = [f"{' ' * indent}{key}: >-", *(" " * (indent + 2) + line for line in lines)]
    if not parses_to("\n".join(line[indent:] for line in block), {key: text}):
        raise ValueError(f"{key}: {text!r} does not survive folding (newlines or edge spaces?)")
    return block


def parameters_block(parameters: Iterable[Parameter], indent: int) -> list[str]:
    """`parameters:` and one entry per parameter, with its note."""
    parameters = list(parameters)
    if not parameters:
        return [f"{' ' * indent}parameters: {{}}"]
    lines = [f"{' ' * indent}parameters:"]
    for parameter in parameters:
        lines += entry(parameter.name, parameter.value, indent + 2, parameter.note)
    return lines


def steps_block(steps: Iterable[Step], indent: int) -> list[str]:
    """A list of build or pull steps, each `- function:` with its arguments below."""
    lines: list[str] = []
    for step in steps:
        lines += comment(step.note, indent)
        lines.append(f"{' ' * indent}- {step.function}:")
        for key, value in step.arguments.items():
            lines += entry(key, value, indent + 4)
    return lines


# --- deployments ---------------------------------------------------------------------------------


def schedules_block(schedules: Sequence[Schedule], indent: int) -> list[str]:
    """`schedules:` with one cron entry each, its reason as a comment."""
    lines = [f"{' ' * indent}schedules:"]
    for schedule in schedules:
        lines += comment(schedule.why, indent + 2)
        lines += [
            f"{' ' * (indent + 2)}- cron: {scalar(schedule.cron)}",
            *entry("timezone", schedule.timezone, indent + 4),
            *entry("active", schedule.active, indent + 4),
        ]
    return lines


def concurrency_block(limit: ConcurrencyLimit, indent: int) -> list[str]:
    """`concurrency_limit:` with the limit and the collision strategy."""
    value = {"limit": limit.limit, "collision_strategy": limit.collision_strategy}
    return entry("concurrency_limit", value, indent, limit.why)


def trigger_block(trigger: EventTrigger, indent: int) -> list[str]:
    """One `- type: event` trigger in the form `prefect deploy` validates."""
    inner = indent + 2
    lines = [
        f"{' ' * indent}- type: event",
        *entry("name", trigger.name, inner),
        *entry("description", trigger.description, inner),
        *entry("enabled", trigger.enabled, inner),
        f"{' ' * inner}expect:",
        f"{' ' * (inner + 2)}- {scalar(trigger.event)}",
        f"{' ' * inner}match:",
        *comment(trigger.resource_note, inner + 2),
        *entry("prefect.resource.id", trigger.resource_id, inner + 2),
        *related_block(trigger, inner),
        *entry("posture", trigger.posture, inner),
        *entry("threshold", trigger.threshold, inner),
        *entry("within", trigger.within_seconds, inner),
    ]
    # Trigger notes are long; they go above their parameter.
    return lines + parameters_block(trigger.parameters, inner)


def related_block(trigger: EventTrigger, indent: int) -> list[str]:
    """`match_related:` as a list of label sets (nothing when the trigger has none)."""
    if not trigger.match_related:
        return []
    lines = [f"{' ' * indent}match_related:", *comment(trigger.related_note, indent + 2)]
    for labels in trigger.match_related:
        first, *rest = labels.items()
        lines += [f"{' ' * (indent + 2)}- {scalar(first[0])}: {scalar(first[1])}"]
        lines += [f"{' ' * (indent + 4)}{scalar(key)}: {scalar(value)}" for key, value in rest]
    return lines


def deployment_block(deployment: Deployment, pool_anchor: str) -> list[str]:
    """One item of `deployments:`, its work pool an alias of the file's pool definition."""
    indent = 4
    lines = [
        f"  - name: {scalar(deployment.name)}",
        *entry("entrypoint", deployment.entrypoint, indent),
        *folded("description", deployment.description, indent),
        *entry("tags", deployment.tags, indent),
        *parameters_block(deployment.parameters, indent),
    ]
    if deployment.schedules:
        lines += schedules_block(deployment.schedules, indent)
    if deployment.concurrency:
        lines += concurrency_block(deployment.concurrency, indent)
    if deployment.triggers:
        lines.append(f"{' ' * indent}triggers:")
        for trigger in deployment.triggers:
            lines += trigger_block(trigger, indent + 2)
    return [*lines, f"{' ' * indent}work_pool: *{pool_anchor}"]


# --- files ---------------------------------------------------------------------------------------


def source_blocks(file: DeploymentFile) -> list[str]:
    """`build`, `push` and `pull`: how the code reaches a flow run, alternatives commented out."""
    if file.build:
        build = ["build:", *comment(file.build_note, 2), *steps_block(file.build, 2)]
    else:
        build = [*comment(file.build_note, 0), "build: null"]
    push = ["push:", *steps_block(file.push, 2)] if file.push else ["push: null"]
    pull = ["pull:", *steps_block(file.pull, 2)]
    for alternative in file.pull_alternatives:
        pull += comment(alternative.note, 2)
        pull += [f"  # {line[2:]}" for line in steps_block(alternative.steps, 2)]
    return [*build, *([""] if file.build else []), *push, "", *pull]


def definitions_block(file: DeploymentFile) -> list[str]:
    """The work pool, defined once under an anchor that every deployment refers to."""
    pool = file.work_pool
    return [
        "definitions:",
        f"  work_pool: &{pool.anchor}",
        *entry("name", pool.name, 4),
        *entry("work_queue_name", pool.work_queue_name, 4),
        *entry("job_variables", pool.job_variables, 4, pool.job_variables_note),
    ]


def render(file: DeploymentFile, deployments: Sequence[Deployment]) -> str:
    """The text of one deployment file: header, code source, pool, then the deployments."""
    lines = [
        *comment(GENERATED, 0),
        "#",
        *comment(file.header, 0, wrap=False),
        "",
        f"name: {PROJECT}",
        f"prefect-version: {PREFECT_VERSION}",
        "",
        *source_blocks(file),
        "",
        *definitions_block(file),
        "",
        "deployments:",
    ]
    for index, deployment in enumerate(deployments):
        if index:
            lines.append("")
        lines += deployment_block(deployment, file.work_pool.anchor)
    return "\n".join(lines) + "\n"


def rendered_files(root: Path = ROOT) -> dict[Path, str]:
    """Every generated file's path under `root` and the text it should hold."""
    deployments = declare()
    return {root / file.path: render(file, deployments) for file in DEPLOYMENT_FILES}


def stale_files(texts: Mapping[Path, str]) -> list[Path]:
    """The files that are missing or do not hold their rendered text."""
    return [
        path
        for path, text in texts.items()
        if not path.is_file() or path.read_text(encoding="utf-8") != text
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Write the stale files (or, with --check, name them and return 1)."""
    parser = argparse.ArgumentParser(prog="python -m deployments.render", description=__doc__)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    args = parser.parse_args(argv)
    texts = rendered_files(args.root)
    stale = stale_files(texts)
    for path in stale:
        where = path.relative_to(args.root)
        if args.check:
            print(f"{where} is stale: run `make deployments`", file=sys.stderr)
        else:
            path.write_text(texts[path], encoding="utf-8")
            print(f"wrote {where}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
