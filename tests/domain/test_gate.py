"""The staging gate's rules, promotion as one step, and the retrain helpers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from crimeflow.domain.gate import GateConfig, decide
from crimeflow.stores.registry import CHAMPION, PREVIOUS_CHAMPION, mlflow_client, set_alias
from tasks.retrain_steps import missing_months, promote, staging_months
from tests.conftest import register_model

GOOD = {"positive_rate": 0.2, "roc_auc": 0.85, "pr_auc": 0.60, "calibration_gap": 0.01}
CONFIG = GateConfig(min_improvement=0.005, tolerance=0.01)


def gate(candidate=GOOD, champion=None, p99=10.0, shadow=(), behaviour=(), config=CONFIG):
    return decide(
        candidate,
        champion,
        p99_ms=p99,
        shadow_failures=list(shadow),
        behaviour_failures=list(behaviour),
        config=config,
    )


def test_a_good_candidate_without_a_champion_passes():
    decision = gate()
    assert decision.passed and decision.reasons == []
    assert {c.name for c in decision.checks} >= {"floor.roc_auc", "calibration", "vs_champion"}


@pytest.mark.parametrize(
    ("change", "failed"),
    [
        ({"roc_auc": 0.65}, "floor.roc_auc"),
        ({"pr_auc": 0.29}, "floor.pr_auc"),  # below 1.5 × the 0.2 arrest rate
        ({"pr_auc": None}, "floor.pr_auc"),
        ({"calibration_gap": -0.08}, "calibration"),
    ],
)
def test_floors_and_calibration(change, failed):
    decision = gate({**GOOD, **change})
    assert not decision.passed
    assert [r.split(":")[0] for r in decision.reasons] == [failed]


def test_against_the_champion_tolerance_and_improvement():
    assert gate(champion={**GOOD, "pr_auc": 0.594}).passed  # better by 0.006
    same = gate(champion=GOOD)
    assert not same.passed and same.reasons[0].startswith("improvement.pr_auc")
    worse_roc = gate(champion={**GOOD, "pr_auc": 0.5, "roc_auc": 0.87})
    assert [r.split(":")[0] for r in worse_roc.reasons] == ["vs_champion.roc_auc"]


def test_serving_checks_fail_with_their_reasons():
    decision = gate(p99=80.0, shadow=["boom"], behaviour=["direction: 40%"])
    assert [r.split(":")[0] for r in decision.reasons] == ["latency.p99", "shadow", "behaviour"]
    assert "boom" in decision.reasons[1] and "40%" in decision.reasons[2]


def test_config_rejects_an_unknown_primary_metric():
    with pytest.raises(ValueError, match="primary metric"):
        GateConfig(primary_metric="accuracy")


def test_missing_months_and_staging_months():
    assert missing_months(["2024-01", "2024-02"], "2024-05") == ["2024-03", "2024-04", "2024-05"]
    assert missing_months(["2024-05"], "2024-05") == []
    candidate = SimpleNamespace(tags={"holdout_months": "2024-05,2024-06"})
    champion = SimpleNamespace(tags={"fit_months": "2024-01,2024-02,2024-05"})
    assert staging_months(candidate, champion) == ["2024-06"]
    assert staging_months(candidate, None) == ["2024-05", "2024-06"]


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
