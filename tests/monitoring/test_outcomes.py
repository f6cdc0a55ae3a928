"""The outcome join and per-window performance: realized on matured outcomes, CBPE otherwise."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from monitoring.outcomes import (
    ESTIMATED,
    REALIZED,
    Baseline,
    PerformanceCheck,
    assess_performance,
    degraded_payload,
    join_outcomes,
    latest_flags,
    performance_html,
    performance_markdown,
    with_section,
)

AS_OF = pd.Timestamp("2024-09-01")


def logged(rows: int, month: str, seed: int, first_id: int = 1) -> tuple[pd.DataFrame, np.ndarray]:
    """Logged predictions of one incident month, and outcomes drawn from their probabilities."""
    rng = np.random.default_rng(seed)
    proba = rng.beta(1.0, 3.5, rows)
    frame = pd.DataFrame(
        {
            "id": pd.array(range(first_id, first_id + rows), dtype="Int64"),
            "date": pd.Timestamp(f"{month}-10") + pd.to_timedelta(rng.integers(0, 15, rows), "D"),
            "probability": proba,
            "feedback_arrest": pd.array([pd.NA] * rows, dtype="boolean"),
        }
    )
    return frame, rng.random(rows) < proba


def lake_of(frame: pd.DataFrame, outcomes: np.ndarray) -> pd.DataFrame:
    """Lake rows carrying the outcomes for the logged ids."""
    return pd.DataFrame(
        {"id": frame["id"].astype("int64"), "arrest": outcomes, "updated_on": frame["date"]}
    )


def test_latest_flags_keep_the_newest_update_per_id():
    rows = pd.DataFrame(
        {
            "id": [7, 7, 8],
            "arrest": [False, True, False],
            "updated_on": pd.to_datetime(["2024-01-02", "2024-02-01", "2024-01-05"]),
        }
    )
    flags = latest_flags(rows.iloc[[1, 0, 2]])  # the later update first in the file
    assert flags.to_dict() == {7: True, 8: False}
    with pytest.raises(ValueError, match="arrest"):
        latest_flags(rows.drop(columns=["arrest"]))


def test_join_matches_by_id_and_masks_immature_incidents():
    frame = pd.DataFrame(
        {
            "id": pd.array([1, 2, 3, None], dtype="Int64"),
            "date": pd.to_datetime(["2024-05-01", "2024-08-30", "2024-05-02", "2024-05-03"]),
            "probability": [0.2, 0.4, 0.6, 0.8],
        }
    )
    flags = pd.Series([True, False], index=[1, 2])
    joined = join_outcomes(frame, flags, AS_OF, maturity_days=60)
    assert joined["outcome"].tolist() == [True, False, pd.NA, pd.NA]
    assert joined["mature"].tolist() == [True, False, True, True]
    assert joined["window"].tolist() == ["2024-05", "2024-08", "2024-05", "2024-05"]
    with pytest.raises(ValueError, match="probability"):
        join_outcomes(frame.drop(columns=["probability"]), flags, AS_OF, 60)


def test_matured_outcomes_that_follow_the_probabilities_are_not_degraded():
    frame, outcomes = logged(1500, "2024-05", seed=1)
    joined = join_outcomes(frame, latest_flags(lake_of(frame, outcomes)), AS_OF, 60)
    (window,) = _assess(joined, None).windows
    assert window.basis == REALIZED and window.mature == 1500
    assert window.drop is None and not window.degraded  # no baseline, no verdict
    # With every label final the estimate covers all rows, next to the realized figure.
    assert abs(window.realized["pr_auc"]["value"] - window.estimated["pr_auc"]["value"]) < 0.06
    expected = _assess(joined, window.realized["pr_auc"]["value"] + 0.01)
    assert not expected.windows[0].degraded


def test_a_changed_concept_shows_in_realized_but_not_in_the_estimate():
    frame, outcomes = logged(1500, "2024-05", seed=2)
    # The same incidents, arrests at other rates: the ranking no longer matches the outcomes.
    shuffled = np.random.default_rng(0).permutation(outcomes)
    joined = join_outcomes(frame, latest_flags(lake_of(frame, shuffled)), AS_OF, 60)
    honest = join_outcomes(frame, latest_flags(lake_of(frame, outcomes)), AS_OF, 60)
    baseline = _assess(honest, 0.0).windows[0].realized["pr_auc"]["value"]
    check = _assess(joined, baseline)
    (window,) = check.windows
    assert window.basis == REALIZED
    assert window.degraded and window.drop > 0.05
    # CBPE cannot tell: its estimate stays at the baseline.
    assert abs(window.estimated["pr_auc"]["value"] - baseline) < 0.06
    payload = degraded_payload(check, window, "rid", "http://x/reports/rid")
    assert payload["metric"] == "pr_auc" and payload["basis"] == "realized"
    assert payload["window"] == "2024-05" and payload["champion_baseline"] == baseline
    assert all(isinstance(v, str | int | float) for v in payload.values())


def test_young_windows_use_the_estimate_and_feedback_stays_apart():
    old, old_outcomes = logged(400, "2024-05", seed=3)
    young, _ = logged(400, "2024-08", seed=4, first_id=10_000)
    young["feedback_arrest"] = pd.array(np.arange(400) % 3 == 0, dtype="boolean")
    frame = pd.concat([old, young], ignore_index=True)
    # The lake already knows young outcomes too, but they are not final yet.
    flags = latest_flags(lake_of(old, old_outcomes))
    joined = join_outcomes(frame, flags, AS_OF, 60)
    check = _assess(joined, 0.9)
    by_window = {w.window: w for w in check.windows}
    assert by_window["2024-05"].basis == REALIZED
    assert by_window["2024-08"].basis == ESTIMATED and by_window["2024-08"].realized is None
    assert by_window["2024-08"].feedback is not None and by_window["2024-05"].feedback is None
    assert by_window["2024-08"].pr_auc == by_window["2024-08"].estimated["pr_auc"]["value"]
    assert {w.window for w in check.degraded} == {"2024-05", "2024-08"}  # 0.9 is out of reach


def test_too_few_rows_give_no_figure_and_no_verdict():
    frame, outcomes = logged(50, "2024-05", seed=5)
    joined = join_outcomes(frame, latest_flags(lake_of(frame, outcomes)), AS_OF, 60)
    (window,) = _assess(joined, 0.5).windows
    assert (window.realized, window.estimated, window.basis, window.degraded) == (
        None,
        None,
        None,
        False,
    )


def test_the_check_round_trips_and_renders_with_the_caveat():
    frame, outcomes = logged(300, "2024-05", seed=6)
    joined = join_outcomes(frame, latest_flags(lake_of(frame, outcomes)), AS_OF, 60)
    check = _assess(joined, 0.3)
    assert PerformanceCheck.from_dict(check.as_dict()) == check
    markdown = performance_markdown(check)
    assert "| 2024-05 |" in markdown and "cannot see concept drift" in markdown
    page = with_section("<html><body><p>x</p></body></html>", performance_html(check))
    assert page.index("crimeflow-performance") < page.index("</body>")
    assert with_section("<p>no body</p>", "<s/>") == "<p>no body</p><s/>"


def test_baseline_reads_the_holdout_tags():
    baseline = Baseline.from_tags("3", {"holdout.pr_auc": "0.4123", "holdout.roc_auc": "bad"})
    assert (baseline.model_version, baseline.pr_auc, baseline.roc_auc) == ("3", 0.4123, None)


def _assess(joined: pd.DataFrame, baseline_pr_auc: float | None) -> PerformanceCheck:
    """The windows of `joined` against a champion with this holdout PR-AUC (drop limit 0.05)."""
    return assess_performance(
        joined,
        Baseline("1", baseline_pr_auc),
        max_drop=0.05,
        min_rows=200,
        maturity_days=60,
        as_of=datetime(2024, 9, 1, tzinfo=UTC),
    )


def test_an_estimate_marks_a_window_only_when_its_whole_interval_is_below_the_line():
    young, _ = logged(400, "2024-08", seed=4, first_id=10_000)
    joined = join_outcomes(young, latest_flags(lake_of(young.head(0), np.array([]))), AS_OF, 60)
    (estimated,) = _assess(joined, None).windows
    figure = estimated.estimated["pr_auc"]
    assert figure["low"] < figure["value"] < figure["high"]
    # Just past the drop limit, but inside the estimate's own error: not degraded.
    inside = figure["value"] + 0.05 + (figure["high"] - figure["value"]) / 2
    (window,) = _assess(joined, inside).windows
    assert window.basis == ESTIMATED and window.drop > 0.05 and not window.degraded
    # The whole interval below the line: degraded.
    (window,) = _assess(joined, figure["high"] + 0.051).windows
    assert window.degraded
