"""The staging gate's rules."""

from __future__ import annotations

import pytest

from crimeflow.contract.settings import Settings
from crimeflow.domain.gate import GateConfig, decide

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


def test_the_gate_config_is_the_gate_settings_group():
    settings = Settings(_env_file=None, gate_min_roc_auc=0.9)
    assert isinstance(settings.gate, GateConfig)
    assert [r.split(":")[0] for r in gate(config=settings.gate).reasons] == ["floor.roc_auc"]
