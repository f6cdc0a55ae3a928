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


# --- the per-district rule -------------------------------------------------------------------

CHAMPION = {**GOOD, "pr_auc": 0.55, "roc_auc": 0.83}
# The champion: about 0.55 PR-AUC everywhere. The candidate below is better overall (0.60 vs
# 0.55) and in four districts, but in district 009 it is clearly worse (0.40 vs 0.56).
CHAMPION_DISTRICTS = {
    "001": {"rows": 2400, "pr_auc": 0.54},
    "002": {"rows": 2100, "pr_auc": 0.55},
    "009": {"rows": 1800, "pr_auc": 0.56},
    "011": {"rows": 1500, "pr_auc": 0.53},
    "031": {"rows": 60, "pr_auc": 0.70},
}
CANDIDATE_DISTRICTS = {
    "001": {"rows": 2400, "pr_auc": 0.64},
    "002": {"rows": 2100, "pr_auc": 0.66},
    "009": {"rows": 1800, "pr_auc": 0.40},
    "011": {"rows": 1500, "pr_auc": 0.63},
    "031": {"rows": 60, "pr_auc": 0.30},  # too few rows to judge: ignored
}


def district_gate(candidate_districts, champion_districts=CHAMPION_DISTRICTS, config=CONFIG):
    return decide(
        GOOD,
        CHAMPION,
        p99_ms=10.0,
        shadow_failures=[],
        behaviour_failures=[],
        config=config,
        candidate_districts=candidate_districts,
        champion_districts=champion_districts,
    )


def test_better_overall_but_clearly_worse_in_one_district_is_rejected():
    decision = district_gate(CANDIDATE_DISTRICTS)
    assert not decision.passed
    assert [r.split(":")[0] for r in decision.reasons] == ["district.pr_auc"]
    reason = decision.reasons[0]
    assert "district 009 PR-AUC 0.4000 vs champion 0.5600" in reason
    assert "031" not in reason and "001" not in reason
    # Every overall comparison with the champion passed: only the district rule caught it.
    overall = {c.name: c.passed for c in decision.checks if c.name.startswith(("vs_", "impr"))}
    assert overall and all(overall.values())


def test_a_drop_within_the_setting_passes_and_the_largest_is_reported():
    within = {**CANDIDATE_DISTRICTS, "009": {"rows": 1800, "pr_auc": 0.52}}
    decision = district_gate(within)
    assert decision.passed
    [check] = [c for c in decision.checks if c.name == "district.pr_auc"]
    assert "4 districts compared" in check.detail and "+0.0400 (district 009)" in check.detail
    looser = district_gate(CANDIDATE_DISTRICTS, config=GateConfig(max_district_drop=0.2))
    assert looser.passed


def test_the_row_minimum_decides_which_districts_count():
    strict = GateConfig(min_improvement=0.005, district_min_rows=50)
    decision = district_gate(CANDIDATE_DISTRICTS, config=strict)
    assert "district 031" in decision.reasons[0] and "district 009" in decision.reasons[0]
    few = GateConfig(district_min_rows=5000)
    [check] = [
        c for c in district_gate(CANDIDATE_DISTRICTS, config=few).checks if "district" in c.name
    ]
    assert check.passed and "no district has ≥ 5000 staging rows" in check.detail


def test_no_champion_or_an_undefined_candidate_pr_auc():
    assert district_gate(CANDIDATE_DISTRICTS, champion_districts=None).passed
    undefined = {**CANDIDATE_DISTRICTS, "009": {"rows": 1800, "pr_auc": None}}
    decision = district_gate(undefined)
    assert not decision.passed and "district 009 PR-AUC undefined" in decision.reasons[0]
