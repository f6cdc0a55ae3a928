"""The model card of a registered version: a markdown page a person reads before using it.

`training_card` writes it from what the training run knows (logged as `model_card.md` in the
run); the staging gate later replaces its "Gate decision" section (`with_gate_decision`). Pure
string building: MLflow I/O lives in `crimeflow.stores.training_log`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Integral, Number
from typing import Any

import pandas as pd

from crimeflow.contract.links import MODEL_CARD_FILE
from crimeflow.contract.schema import LABEL
from crimeflow.domain.arrest_defined import ARREST_DEFINED_TYPES
from crimeflow.domain.model import TrainedModel

CARD_FILE = MODEL_CARD_FILE
GATE_HEADING = "## Gate decision"
NOT_STAGED = (
    "Not staged yet: the retraining loop's staging gate records its decision here when it "
    "judges this version (a version trained by hand stays unjudged until then)."
)
CARD_METRICS = (
    "n",
    "positive_rate",
    "mean_predicted",
    "calibration_gap",
    "roc_auc",
    "pr_auc",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "mcc",
    "brier",
    "log_loss",
)
AUDIT_TABLES = ("per_district", "per_community_area", "largest_gaps")
AUDIT_ROWS_SHOWN = 30

INTENDED_USE = """\
For **aggregate planning and research**: how arrest outcomes of reported incidents vary by
crime type, place and time; how that changes from month to month; what workload follow-up
might bring. Scores are read in aggregate (an area, a type, a month).

**Not for decisions about individuals**: not to decide whom to stop, search, arrest or charge,
not to rate a person, an address or a case, and not as evidence. A high score says that
incidents *like this one were recorded with an arrest* in the past, nothing about guilt."""

LIMITATIONS = """\
- **Arrest is a record of police action, not of crime.** The label says the police made an
  arrest, which depends on where officers patrol, what they prioritise and whom they stop, as
  much as on the incident. The model learns those patterns, including their biases.
- **Arrest-defined types inflate the headline.** For the types listed above the record exists
  because of an arrest or police action, so their arrest rate is near 100 % by construction;
  the metrics "excluding arrest-defined types" are the honest measure of skill.
- **Feedback loops.** If scores steered patrols or follow-up, the resulting arrests would be
  recorded, relabel those places and types as "high arrest" and feed the next retrain, which
  would then confirm itself. Keep the model out of deployment decisions; watch per-area drift.
- **Label delay.** An arrest can be recorded weeks after the incident: the newest months' labels
  are incomplete (arrest rates look low) until they mature (docs/monitoring-and-retraining.md,
  label maturity), so recent performance estimates are provisional.
- **Coverage.** Chicago incidents reported to and recorded by the CPD only; locations are
  blurred to the block; crimes nobody reports are absent. The model knows nothing of the people
  involved and must not be extended to do so."""


def metric_cell(value: Any) -> str:
    """A metric cell: counts with separators, rates with 4 decimals, undefined as a dash."""
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Markdown table lines (first column left-aligned, the others right-aligned)."""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _plain(value: Number) -> float | int | None:
    """A numpy or Python number as a Python int or float (NaN as None: undefined)."""
    if isinstance(value, Integral):
        return int(value)
    number = float(value)
    return None if math.isnan(number) else number


def frame_table(frame: pd.DataFrame, max_rows: int = AUDIT_ROWS_SHOWN) -> list[str]:
    """A DataFrame as markdown table lines (its first `max_rows` rows; floats to 4 decimals)."""
    shown = frame.head(max_rows)
    header = [str(c) for c in shown.columns]
    rows = [
        [metric_cell(_plain(v)) if isinstance(v, Number) else str(v) for v in record]
        for record in shown.itertuples(index=False)
    ]
    lines = _table(header, rows)
    if len(frame) > max_rows:
        lines.append(f"\n({len(frame) - max_rows:,} more rows in the run's audit artifacts)")
    return lines


def metrics_section(report: dict[str, Any]) -> list[str]:
    """Holdout metrics: overall and excluding the arrest-defined types, model and baseline."""
    excluding = report.get("excluding_arrest_defined") or {}
    columns = [
        report["model"],
        excluding.get("model", {}),
        report["baseline"],
        excluding.get("baseline", {}),
    ]
    header = ["metric", "overall", "excluding arrest-defined", "baseline overall"]
    header += ["baseline excluding"]
    rows = [[name] + [metric_cell(c.get(name)) for c in columns] for name in CARD_METRICS]
    types = ", ".join(excluding.get("types") or ARREST_DEFINED_TYPES)
    return [
        "## Metrics (holdout)",
        "",
        f"Decision threshold {report['threshold']:.4f}. The baseline predicts the training "
        f"arrest rate ({report['baseline_rate']:.4f}) for every incident.",
        "",
        *_table(header, rows),
        "",
        f"Excluded as arrest-defined ({excluding.get('excluded_rows', 0):,} holdout rows): "
        f'{types}. Why each: docs/model-and-data.md, "Arrest-defined crime types".',
    ]


def report_section(report: dict[str, Any]) -> list[str]:
    """sklearn's classification report at the decision threshold, and accuracy."""
    table = report.get("classification_report") or {}
    rows = [
        [label]
        + [metric_cell(scores.get(k)) for k in ("precision", "recall", "f1-score")]
        + [f"{int(scores.get('support', 0)):,}"]
        for label, scores in table.items()
        if isinstance(scores, dict)
    ]
    accuracy = table.get("accuracy", report["model"].get("accuracy"))
    return [
        f"## Classification report at threshold {report['threshold']:.4f}",
        "",
        *_table(["class", "precision", "recall", "f1", "support"], rows),
        "",
        f"Accuracy {metric_cell(accuracy)} (a model saying 'no arrest' every time scores "
        f"{metric_cell(1 - report['model']['positive_rate'])}).",
    ]


def calibration_section(report: dict[str, Any]) -> list[str]:
    """The reliability table by predicted decile and the overall calibration gap."""
    rows = [
        [
            str(row["decile"]),
            f"{row['n']:,}",
            f"{row['min_predicted']:.3f}–{row['max_predicted']:.3f}",
            metric_cell(row["mean_predicted"]),
            metric_cell(row["observed_rate"]),
        ]
        for row in report.get("calibration_deciles") or []
    ]
    header = ["decile", "incidents", "predicted range", "mean predicted", "observed rate"]
    model = report["model"]
    return [
        "## Calibration",
        "",
        f"Mean predicted {metric_cell(model['mean_predicted'])} vs observed arrest rate "
        f"{metric_cell(model['positive_rate'])} (gap {metric_cell(model['calibration_gap'])}); "
        f"Brier {metric_cell(model['brier'])}. Holdout rows by predicted probability, ten equal "
        "groups:",
        "",
        *(_table(header, rows) if rows else ["(no calibration table in this report)"]),
    ]


def area_section(audit_tables: Mapping[str, pd.DataFrame] | None) -> list[str]:
    """The per-area audit tables, or a plain statement that they were not computed."""
    lines = ["## Metrics per area", ""]
    if not audit_tables:
        return [*lines, "Not computed for this version (no per-area audit was run)."]
    for name in [*AUDIT_TABLES, *(k for k in audit_tables if k not in AUDIT_TABLES)]:
        frame = audit_tables.get(name)
        if frame is None:
            continue
        lines += [f"### {name.replace('_', ' ').capitalize()}", "", *frame_table(frame), ""]
    return lines


def type_section(report: dict[str, Any]) -> list[str]:
    """The most frequent crime types: count, arrest rate, ROC-AUC and PR-AUC of the model."""
    rows = []
    for name, result in report.get("per_type", {}).items():
        model = result["model"]
        flag = " (arrest-defined)" if name in ARREST_DEFINED_TYPES else ""
        rows.append(
            [
                f"{name}{flag}",
                f"{model['n']:,}",
                metric_cell(model["positive_rate"]),
                metric_cell(model["roc_auc"]),
                metric_cell(model["pr_auc"]),
            ]
        )
    header = ["crime type", "incidents", "arrest rate", "ROC-AUC", "PR-AUC"]
    return ["## Metrics per crime type (most frequent)", "", *_table(header, rows)]


def data_section(splits: Mapping[str, pd.DataFrame], lineage: Mapping[str, Any] | None) -> list:
    """The training window by split and where the rows came from."""
    rows = []
    for name, frame in splits.items():
        months = frame["date"].dt.strftime("%Y-%m") if len(frame) else pd.Series([], dtype=str)
        window = f"{months.min()}..{months.max()}" if len(frame) else "–"
        rate = metric_cell(float(frame[LABEL].astype(float).mean())) if len(frame) else "–"
        rows.append([name, window, f"{len(frame):,}", rate])
    lines = [
        "## Training window and data sources",
        "",
        *_table(["split", "months", "incidents", "arrest rate"], rows),
        "",
        'Source: City of Chicago Data Portal, "Crimes - 2001 to Present" (Socrata `ijzp-q8t2`),'
        " one record per reported incident, cleaned and enriched by the ETL flow (police "
        "stations, districts and community areas).",
    ]
    if lineage:
        lines += [
            "",
            f"Lake: `{lineage.get('lake_url')}` zone `{lineage.get('zone')}`, ETL run "
            f"`{lineage.get('etl_run_id')}`; per-month content hashes in the run's "
            "`lineage.json`.",
        ]
    return lines


def training_card(
    trained: TrainedModel,
    report: dict[str, Any],
    splits: Mapping[str, pd.DataFrame],
    *,
    title: str,
    lineage: Mapping[str, Any] | None = None,
    links: Mapping[str, str | None] | None = None,
    audit_tables: Mapping[str, pd.DataFrame] | None = None,
) -> str:
    """The model card of a freshly trained version, its gate decision still to come."""
    link_line = " · ".join(f"[{label}]({url})" for label, url in (links or {}).items() if url)
    model_lines = [
        "## Model",
        "",
        f"{trained.classifier}, calibrated ({trained.config.calibration}), threshold "
        f"{trained.threshold:.4f} chosen on the validation month for "
        f"{trained.threshold_metric}; {len(trained.selected_features)} selected features. "
        "Input: the SODA fields of one incident; output: the probability that the incident "
        "is recorded with an arrest.",
    ]
    sections = [
        [f"# Model card — {title}", "", link_line] if link_line else [f"# Model card — {title}"],
        ["## Intended use", "", INTENDED_USE],
        model_lines,
        data_section(splits, lineage),
        metrics_section(report),
        report_section(report),
        calibration_section(report),
        area_section(audit_tables),
        type_section(report),
        ["## Known limitations", "", LIMITATIONS],
        [GATE_HEADING, "", NOT_STAGED],
    ]
    return "\n\n".join("\n".join(lines).rstrip() for lines in sections) + "\n"


def with_gate_decision(card: str, section: str) -> str:
    """The card with its gate section replaced by `section` (appended when it has none)."""
    head, found, tail = card.partition(GATE_HEADING)
    if not found:
        return card.rstrip() + f"\n\n{GATE_HEADING}\n\n{section.strip()}\n"
    rest = tail.split("\n## ", 1)
    after = f"\n## {rest[1].rstrip()}\n" if len(rest) == 2 else ""
    return f"{head}{GATE_HEADING}\n\n{section.strip()}\n{after}"
