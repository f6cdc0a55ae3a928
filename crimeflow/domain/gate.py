"""The staging gate's decision: pure logic over both models' staging metrics and the candidate's
serving checks, so every rule is unit-tested and the reasons are recorded word for word.

A candidate passes when every check passes:
- floors: ROC-AUC ≥ `min_roc_auc`; PR-AUC ≥ `min_pr_auc_lift` × the staging arrest rate (a
  constant predictor's PR-AUC equals that rate, so this is "clearly better than guessing");
- calibration: |mean predicted − observed rate| ≤ `max_calibration_gap`;
- against the champion (when one is loaded and scored): PR-AUC and ROC-AUC not worse by more
  than `tolerance`, and the primary metric better by at least `min_improvement`;
- per district (against the champion): in every police district with at least
  `district_min_rows` staging rows, PR-AUC not below the champion's by more than
  `max_district_drop` (a model better overall may still fail one part of the city);
- serving: p99 single-row latency within budget, no failure scoring recent logged requests,
  every behavioural check passed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from crimeflow.contract.settings import COMPARED_METRICS, GateSettings

# The gate's thresholds are the `CRIMEFLOW_GATE_*` settings group itself: one definition.
GateConfig = GateSettings


@dataclass(frozen=True)
class Check:
    """One rule of the gate and how the candidate fared."""

    name: str
    passed: bool
    detail: str


@dataclass
class GateDecision:
    """Every check; the candidate passes only if all did."""

    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every check passed."""
        return all(check.passed for check in self.checks)

    @property
    def reasons(self) -> list[str]:
        """Why it failed (empty when it passed)."""
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: passed, reasons and every check."""
        return {
            "passed": self.passed,
            "reasons": self.reasons,
            "checks": [asdict(c) for c in self.checks],
        }


def _fmt(value: float | None) -> str:
    """A metric in a reason; undefined shows as 'undefined'."""
    return "undefined" if value is None else f"{value:.4f}"


def floor_checks(candidate: dict[str, Any], config: GateConfig) -> list[Check]:
    """Absolute floors and the calibration bound on the candidate's staging metrics."""
    roc, pr, rate = candidate.get("roc_auc"), candidate.get("pr_auc"), candidate["positive_rate"]
    gap = candidate.get("calibration_gap")
    pr_floor = config.min_pr_auc_lift * rate
    return [
        Check(
            "floor.roc_auc",
            roc is not None and roc >= config.min_roc_auc,
            f"ROC-AUC {_fmt(roc)} (floor {config.min_roc_auc:.2f})",
        ),
        Check(
            "floor.pr_auc",
            pr is not None and pr >= pr_floor,
            f"PR-AUC {_fmt(pr)} (floor {pr_floor:.4f} = {config.min_pr_auc_lift:g} × "
            f"arrest rate {rate:.4f})",
        ),
        Check(
            "calibration",
            gap is not None and abs(gap) <= config.max_calibration_gap,
            f"mean predicted − observed = {_fmt(gap)} (bound ±{config.max_calibration_gap:g})",
        ),
    ]


def champion_checks(
    candidate: dict[str, Any], champion: dict[str, Any] | None, config: GateConfig
) -> list[Check]:
    """Not worse than the champion beyond the tolerance; better on the primary metric."""
    if champion is None:
        return [Check("vs_champion", True, "no champion to compare with")]
    checks = []
    for name in COMPARED_METRICS:
        ours, theirs = candidate.get(name), champion.get(name)
        ok = ours is not None and (theirs is None or ours >= theirs - config.tolerance)
        checks.append(
            Check(
                f"vs_champion.{name}",
                ok,
                f"{_fmt(ours)} vs champion {_fmt(theirs)} (tolerance {config.tolerance:g})",
            )
        )
    name = config.primary_metric
    ours, theirs = candidate.get(name), champion.get(name)
    delta = None if ours is None or theirs is None else ours - theirs
    checks.append(
        Check(
            f"improvement.{name}",
            ours is not None and (theirs is None or delta >= config.min_improvement),
            f"{name} {_fmt(ours)} − champion {_fmt(theirs)} = {_fmt(delta)} "
            f"(needs ≥ {config.min_improvement:g})",
        )
    )
    return checks


# Per-area staging metrics: area -> {"rows": ..., "pr_auc": ...} (rows of an `audit_by` table).
AreaMetrics = dict[str, dict[str, Any]]


def _largest_drop_first(item: tuple[str, tuple]) -> float:
    """Sort key: the largest drop first, an undefined candidate PR-AUC before all."""
    drop = item[1][2]
    return -math.inf if drop is None else -drop


def district_checks(
    candidate: AreaMetrics | None, champion: AreaMetrics | None, config: GateConfig
) -> list[Check]:
    """No district with enough staging rows loses more PR-AUC than allowed against the champion."""
    name = "district.pr_auc"
    if champion is None or candidate is None:
        return [Check(name, True, "no champion to compare with per district")]
    enough = {
        area: ours
        for area, ours in candidate.items()
        if ours.get("rows", 0) >= config.district_min_rows and area in champion
    }
    if not enough:
        return [Check(name, True, f"no district has ≥ {config.district_min_rows} staging rows")]
    drops = {}
    for area, ours in enough.items():
        mine, theirs = ours.get("pr_auc"), champion[area].get("pr_auc")
        if theirs is not None:
            drops[area] = (mine, theirs, None if mine is None else theirs - mine)
    worse = {
        area: d for area, d in drops.items() if d[2] is None or d[2] > config.max_district_drop
    }
    rule = f"(≥ {config.district_min_rows} rows; allowed drop {config.max_district_drop:g})"
    if worse:
        named = "; ".join(
            f"district {area} PR-AUC {_fmt(mine)} vs champion {_fmt(theirs)}"
            for area, (mine, theirs, _) in sorted(worse.items(), key=_largest_drop_first)
        )
        return [Check(name, False, f"{named} {rule}")]
    largest = max(drops.items(), key=lambda item: item[1][2], default=None)
    detail = f"{len(enough)} districts compared {rule}"
    if largest is not None:
        detail += f"; largest drop {largest[1][2]:+.4f} (district {largest[0]})"
    return [Check(name, True, detail)]


def serving_checks(
    p99_ms: float, shadow_failures: list[str], behaviour_failures: list[str], config: GateConfig
) -> list[Check]:
    """Latency budget, shadow scoring of logged requests, behavioural checks."""
    return [
        Check(
            "latency.p99",
            p99_ms <= config.max_p99_ms,
            f"p99 single-row {p99_ms:.1f} ms (budget {config.max_p99_ms:g} ms)",
        ),
        Check(
            "shadow",
            not shadow_failures,
            "; ".join(shadow_failures) or "scored the recent logged requests",
        ),
        Check(
            "behaviour",
            not behaviour_failures,
            "; ".join(behaviour_failures) or "invariance, minimum functionality, direction",
        ),
    ]


def decide(
    candidate: dict[str, Any],
    champion: dict[str, Any] | None,
    *,
    p99_ms: float,
    shadow_failures: list[str],
    behaviour_failures: list[str],
    config: GateConfig,
    candidate_districts: AreaMetrics | None = None,
    champion_districts: AreaMetrics | None = None,
) -> GateDecision:
    """The gate's decision from the staging metrics (`binary_metrics`), the per-district
    PR-AUC of both models on the same rows, and the serving checks."""
    return GateDecision(
        floor_checks(candidate, config)
        + champion_checks(candidate, champion, config)
        + district_checks(candidate_districts, champion_districts, config)
        + serving_checks(p99_ms, shadow_failures, behaviour_failures, config)
    )
