"""A settings error as one line that names the `CRIMEFLOW_*` variable to fix.

pydantic reports where a value failed by field location (`('gate', 'tolerance')`); the user set
`CRIMEFLOW_GATE_TOLERANCE`. The command line prints this line instead of a traceback.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from crimeflow.contract.settings import ENV_PREFIX, GROUPS, Settings

# pydantic-settings names the field it failed to parse: `... for field "gate" from source ...`;
# the unprefixed source names the variable itself: `... for "CRIMEFLOW_CORS_ALLOW_ORIGINS": ...`.
_PARSED_FIELD = re.compile(r'for (?:field )?"(?:CRIMEFLOW_)?(\w+)"', re.IGNORECASE)


def env_name(loc: tuple[Any, ...]) -> str:
    """The env variable of a pydantic error location (a group's wildcard for a group error)."""
    by_place = {place: flat for flat, place in Settings.places().items()}
    head = str(loc[0]) if loc else ""
    if head in GROUPS and len(loc) > 1 and (head, str(loc[1])) in by_place:
        return ENV_PREFIX + by_place[(head, str(loc[1]))].upper()
    if (None, head) in by_place:
        return ENV_PREFIX + head.upper()
    return f"{ENV_PREFIX}{head.upper()}_*" if head in GROUPS else f"{ENV_PREFIX}*"


def _is_secret(loc: tuple[Any, ...]) -> bool:
    """Whether the field at `loc` holds a secret (its value must not be printed)."""
    head = str(loc[0]) if loc else ""
    group = GROUPS.get(head)
    info = (
        group.model_fields.get(str(loc[1]))
        if group is not None and len(loc) > 1
        else Settings.model_fields.get(head)
    )
    return info is None or "SecretStr" in str(info.annotation)


def _short(value: object, limit: int = 60) -> str:
    """A value as the user wrote it, cut short (a JSON group can be long)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(error: ValidationError | SettingsError) -> str:
    """One line: every bad variable, its value (unless secret) and what is wrong with it."""
    if isinstance(error, SettingsError):
        found = _PARSED_FIELD.search(str(error))
        name = ENV_PREFIX + found.group(1).upper() if found else f"{ENV_PREFIX}*"
        cause = f": {error.__cause__}" if error.__cause__ else ""
        return f"bad setting {name}: cannot parse its value{cause}"
    problems = []
    for item in error.errors():
        loc = tuple(item["loc"])
        shown = "" if _is_secret(loc) else f"={_short(item['input'])}"
        problems.append(f"{env_name(loc)}{shown}: {item['msg']}")
    return "bad setting " + "; ".join(problems)
