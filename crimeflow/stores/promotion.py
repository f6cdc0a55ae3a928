"""Moving the `champion` alias in the registry: promotion as one step, the gate's decision
recorded on the candidate, and rollback to the previous champion."""

from __future__ import annotations

from datetime import UTC, datetime

from mlflow.tracking import MlflowClient

from crimeflow.domain.retrain_run import GateOutcome, Urls, decision_tags
from crimeflow.stores.registry import CHAMPION, PREVIOUS_CHAMPION, set_alias, version_by_alias


def promote(client: MlflowClient, name: str, version: str, champion: str | None) -> None:
    """Move `champion` to `version` and `previous-champion` to the old one, as one step.

    Order matters: `previous-champion` first (the champion is untouched if that fails), then
    `champion`; if the second call fails, `previous-champion` is put back where it was, so a
    failure midway leaves both aliases as they were.
    """
    before = version_by_alias(client, name, PREVIOUS_CHAMPION)
    if champion is not None:
        set_alias(client, name, PREVIOUS_CHAMPION, champion)
    try:
        set_alias(client, name, CHAMPION, version)
    except Exception:
        if champion is not None:
            if before is None:
                client.delete_registered_model_alias(name, PREVIOUS_CHAMPION)
            else:
                set_alias(client, name, PREVIOUS_CHAMPION, str(before.version))
        raise


def record_decision(
    client: MlflowClient, name: str, outcome: GateOutcome, reason: str, urls: Urls | None = None
) -> bool:
    """Tag the candidate with the gate's decision (and its `urls`); promote it if it passed."""
    version = outcome.candidate_version
    for key, value in decision_tags(outcome, reason, urls).items():
        client.set_model_version_tag(name, version, key, value)
    passed = outcome.decision.passed
    if passed:
        promote(client, name, version, outcome.champion_version)
        client.set_model_version_tag(name, version, "promoted_by", f"gate ({reason})")
        client.set_model_version_tag(name, version, "promoted_at", datetime.now(UTC).isoformat())
    return passed


def roll_back_champion(client: MlflowClient, name: str, reason: str) -> dict[str, str]:
    """Point `champion` back at `previous-champion` (and `previous-champion` at the one left)."""
    previous = version_by_alias(client, name, PREVIOUS_CHAMPION)
    if previous is None:
        raise LookupError(f"{name!r} has no {PREVIOUS_CHAMPION!r} to roll back to")
    current = version_by_alias(client, name, CHAMPION)
    current_version = None if current is None else str(current.version)
    promote(client, name, str(previous.version), current_version)
    now = datetime.now(UTC).isoformat()
    if current_version is not None:
        client.set_model_version_tag(name, current_version, "rolled_back_at", now)
        client.set_model_version_tag(name, current_version, "rolled_back_reason", reason)
    client.set_model_version_tag(name, str(previous.version), "promoted_by", f"rollback ({reason})")
    client.set_model_version_tag(name, str(previous.version), "promoted_at", now)
    return {"champion": str(previous.version), "rolled_back": current_version or "none"}
