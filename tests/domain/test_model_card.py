"""The model card: every section from a real evaluation report, the gate section replaced."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from crimeflow.domain.evaluate import evaluate
from crimeflow.domain.model import ModelConfig
from crimeflow.domain.model_card import (
    GATE_HEADING,
    NOT_STAGED,
    frame_table,
    training_card,
    with_gate_decision,
)
from crimeflow.standins.generate import generate_incidents


class _Scores:
    """A stand-in estimator: arrests score high, others low, with noise (seeded)."""

    decision_threshold_ = 0.4
    prior_ = 0.2

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        rng = np.random.default_rng(0)
        y = frame["arrest"].astype(float).to_numpy()
        p = np.clip(0.15 + 0.6 * y + rng.normal(0, 0.2, len(y)), 0.01, 0.99)
        return np.column_stack([1 - p, p])


@pytest.fixture(scope="module")
def splits() -> dict[str, pd.DataFrame]:
    frame = generate_incidents("2024-01", "2024-04", rows_per_month=400, seed=7)
    month = frame["date"].dt.strftime("%Y-%m")
    return {
        "train": frame[month <= "2024-02"],
        "validation": frame[month == "2024-03"],
        "holdout": frame[month == "2024-04"],
    }


@pytest.fixture(scope="module")
def report(splits: dict[str, pd.DataFrame]) -> dict:
    return evaluate(_Scores(), splits["holdout"])


TRAINED = SimpleNamespace(
    classifier="hist_gradient_boosting",
    threshold=0.4,
    threshold_metric="f1",
    selected_features=["a", "b", "c"],
    config=ModelConfig(),
)


def card_of(report: dict, splits: dict, **extra: object) -> str:
    return training_card(TRAINED, report, splits, title="chicago-arrest v3", **extra)  # type: ignore[arg-type]


def section(card: str, heading: str) -> str:
    """The text of one `## heading` section."""
    return card.split(f"\n## {heading}", 1)[1].split("\n## ", 1)[0]


def test_the_card_has_every_section_in_order(report, splits):
    card = card_of(report, splits)
    headings = [line[3:] for line in card.splitlines() if line.startswith("## ")]
    assert headings == [
        "Intended use",
        "Model",
        "Training window and data sources",
        "Metrics (holdout)",
        "Classification report at threshold 0.4000",
        "Calibration",
        "Metrics per area",
        "Metrics per crime type (most frequent)",
        "Known limitations",
        "Gate decision",
    ]
    assert card.startswith("# Model card — chicago-arrest v3\n")
    assert "**Not for decisions about individuals**" in section(card, "Intended use")
    limits = section(card, "Known limitations")
    for topic in ("record of police action", "Feedback loops", "Label delay"):
        assert topic in limits
    assert NOT_STAGED in section(card, "Gate decision")


def test_the_metrics_table_puts_the_excluding_figures_next_to_the_overall_ones(report, splits):
    metrics = section(card_of(report, splits), "Metrics (holdout)")
    excluding = report["excluding_arrest_defined"]["model"]
    overall = report["model"]
    row = f"| roc_auc | {overall['roc_auc']:.4f} | {excluding['roc_auc']:.4f} | 0.5000 | 0.5000 |"
    assert row in metrics
    assert f"| n | {overall['n']:,} | {excluding['n']:,} |" in metrics
    assert excluding["n"] < overall["n"]  # the generator makes NARCOTICS incidents too
    assert "NARCOTICS" in metrics and "PROSTITUTION" in metrics


def test_the_window_report_and_calibration_sections_hold_the_numbers(report, splits):
    card = card_of(report, splits, lineage={"lake_url": "file:///lake", "zone": "clean"})
    window = section(card, "Training window and data sources")
    assert f"| holdout | 2024-04..2024-04 | {len(splits['holdout']):,} |" in window
    assert "`file:///lake`" in window and "ijzp-q8t2" in window
    table = report["classification_report"]
    arrest = table["arrest"]
    assert (
        f"| arrest | {arrest['precision']:.4f} | {arrest['recall']:.4f} "
        f"| {arrest['f1-score']:.4f} | {int(arrest['support']):,} |"
    ) in section(card, "Classification report at threshold 0.4000")
    calibration = section(card, "Calibration")
    top = report["calibration_deciles"][-1]
    assert f"| 10 | {top['n']:,} |" in calibration
    assert f"{top['observed_rate']:.4f} |" in calibration


def test_per_area_tables_are_rendered_when_given_and_said_missing_otherwise(report, splits):
    assert "Not computed" in section(card_of(report, splits), "Metrics per area")
    districts = pd.DataFrame(
        {"district": ["001", "002"], "n": np.array([120, 80]), "roc_auc": [0.91, np.nan]}
    )
    card = card_of(report, splits, audit_tables={"per_district": districts})
    areas = section(card, "Metrics per area")
    assert "### Per district" in areas and "Not computed" not in areas
    assert "| 001 | 120 | 0.9100 |" in areas and "| 002 | 80 | – |" in areas


def test_a_long_audit_table_is_cut_and_says_how_many_rows_are_left():
    lines = frame_table(pd.DataFrame({"area": range(40)}), max_rows=30)
    assert len([line for line in lines if line.startswith("| ")]) == 31  # header + 30 rows
    assert "10 more rows" in lines[-1]


def test_the_links_head_the_card(report, splits):
    links = {"MLflow run": "https://m/#/runs/r", "Prefect flow run": None}
    card = card_of(report, splits, links=links)
    assert card.splitlines()[2] == "[MLflow run](https://m/#/runs/r)"


def test_the_gate_decision_replaces_the_placeholder_once(report, splits):
    card = card_of(report, splits)
    decided = with_gate_decision(card, "**Promoted** to champion.")
    assert NOT_STAGED not in decided and "**Promoted** to champion." in decided
    assert decided.count(GATE_HEADING) == 1
    assert decided.split(GATE_HEADING)[0] == card.split(GATE_HEADING)[0]
    again = with_gate_decision(decided, "**Rejected** (not served).")
    assert "Promoted" not in again and again.count(GATE_HEADING) == 1


def test_a_gate_section_in_the_middle_keeps_what_follows():
    card = "# Card\n\n## Gate decision\n\nold\n\n## Appendix\n\nkept\n"
    assert with_gate_decision(card, "new") == (
        "# Card\n\n## Gate decision\n\nnew\n\n## Appendix\n\nkept\n"
    )
    assert with_gate_decision("# Card\n", "new") == "# Card\n\n## Gate decision\n\nnew\n"
