"""Moving the champion alias: promotion as one step, recorded decisions, rollback."""

from __future__ import annotations

import pytest

from crimeflow.domain.gate import Check, GateDecision
from crimeflow.domain.retrain_run import GateOutcome
from crimeflow.stores.promotion import promote, record_decision, roll_back_champion
from crimeflow.stores.registry import CHAMPION, PREVIOUS_CHAMPION, mlflow_client, set_alias
from tests.conftest import register_model


def test_promotion_moves_both_aliases(registry_settings):
    settings = registry_settings
    new = register_model(settings, seed=6)
    client = mlflow_client(settings)
    promote(client, settings.model_name, new, "1")
    model = client.get_registered_model(settings.model_name)
    assert str(model.aliases[CHAMPION]) == new
    assert str(model.aliases[PREVIOUS_CHAMPION]) == "1"


def test_a_failure_midway_leaves_both_aliases_unchanged(registry_settings, monkeypatch):
    settings = registry_settings
    new = register_model(settings, seed=6)
    client = mlflow_client(settings)
    set_alias(client, settings.model_name, PREVIOUS_CHAMPION, new)  # an older rollback target
    real = client.set_registered_model_alias

    def failing(name, alias, version):
        if alias == CHAMPION:
            raise RuntimeError("registry unavailable")
        return real(name, alias, version)

    monkeypatch.setattr(client, "set_registered_model_alias", failing)
    with pytest.raises(RuntimeError, match="registry unavailable"):
        promote(client, settings.model_name, new, "1")
    aliases = mlflow_client(settings).get_registered_model(settings.model_name)
    assert {k: str(v) for k, v in aliases.aliases.items() if k != "challenger"} == {
        CHAMPION: "1",
        PREVIOUS_CHAMPION: new,
    }


def gate_outcome(version: str, passed: bool) -> GateOutcome:
    checks = [Check("floor.roc_auc", passed, "ROC-AUC 0.8 (floor 0.70)")]
    return GateOutcome(GateDecision(checks), version, "1", None, {"pr_auc": 0.5}, None, 2.0, 0, "s")


def test_a_passed_gate_is_recorded_and_promotes(registry_settings):
    settings = registry_settings
    new = register_model(settings, seed=6)
    client = mlflow_client(settings)
    assert record_decision(client, settings.model_name, gate_outcome(new, True), "drift")
    tags = client.get_model_version(settings.model_name, new).tags
    assert tags["gate"] == "passed" and tags["promoted_by"] == "gate (drift)"
    assert str(client.get_registered_model(settings.model_name).aliases[CHAMPION]) == new


def test_a_failed_gate_is_recorded_and_the_champion_stays(registry_settings):
    settings = registry_settings
    new = register_model(settings, seed=6)
    client = mlflow_client(settings)
    assert not record_decision(client, settings.model_name, gate_outcome(new, False), "manual")
    tags = client.get_model_version(settings.model_name, new).tags
    assert tags["gate"] == "failed" and "promoted_by" not in tags
    assert str(client.get_registered_model(settings.model_name).aliases[CHAMPION]) == "1"


def test_roll_back_swaps_champion_and_previous_champion(registry_settings):
    settings = registry_settings
    client = mlflow_client(settings)
    with pytest.raises(LookupError, match="no 'previous-champion'"):
        roll_back_champion(client, settings.model_name, "nothing to go back to")
    new = register_model(settings, seed=6)
    promote(client, settings.model_name, new, "1")
    result = roll_back_champion(client, settings.model_name, "bad model")
    assert result == {"champion": "1", "rolled_back": new}
    aliases = client.get_registered_model(settings.model_name).aliases
    assert (str(aliases[CHAMPION]), str(aliases[PREVIOUS_CHAMPION])) == ("1", new)
    assert (
        client.get_model_version(settings.model_name, new).tags["rolled_back_reason"] == "bad model"
    )
