"""Headline metrics on the real 2018 Chicago data, overall and excluding the arrest-defined types.

Split by time like `scripts/model_research.py`: train Jan-Jul, validate Aug (model choice,
calibration, threshold), hold out Sep-Oct. Prints the overall and the excluding-arrest-defined
metrics side by side, each arrest-defined type's share and arrest rate, and (with --card) writes
the model card the training run would log.

    .venv/bin/python scripts/honest_metrics.py
    .venv/bin/python scripts/honest_metrics.py --card /tmp/model_card.md --out /tmp/honest.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd

from crimeflow.contract.schema import LABEL, normalize_header, to_canonical
from crimeflow.domain.arrest_defined import ARREST_DEFINED_TYPES, arrest_defined_mask
from crimeflow.domain.evaluate import binary_metrics, evaluate
from crimeflow.domain.model import ModelConfig, time_split, train_model
from crimeflow.domain.model_card import training_card

REAL_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
CRIMES_2018 = REAL_DATA / "crimes_2018-01_to_2018-10_chicagocrimedata-datastore.csv.gz"
# Mostly arrests in 2018 but also reported by victims and witnesses: kept in the honest figures
# (docs/model-and-data.md says why), excluded here only to show how much they would move them.
BORDERLINE_TYPES = ("WEAPONS VIOLATION", "OBSCENITY", "PUBLIC PEACE VIOLATION", "CRIMINAL TRESPASS")
SHOWN = ("n", "positive_rate", "roc_auc", "pr_auc", "accuracy", "f1", "brier", "calibration_gap")


def type_rates(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Rows and arrest rate of every arrest-defined type in `frame`."""
    rates = {}
    for name in ARREST_DEFINED_TYPES:
        rows = frame[frame["primary_type"] == name]
        rate = float(rows[LABEL].astype(float).mean()) if len(rows) else None
        rates[name] = {"rows": len(rows), "arrest_rate": rate}
    return rates


def _cell(value: float | int | None) -> str:
    """A count with separators, a rate with 4 decimals, undefined as a dash."""
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:.4f}"


def borderline(holdout: pd.DataFrame, report: dict[str, Any], proba: Any) -> dict[str, Any]:
    """Sensitivity: the model's metrics when the borderline types are excluded as well."""
    drop = arrest_defined_mask(holdout["primary_type"]) | holdout["primary_type"].isin(
        BORDERLINE_TYPES
    ).to_numpy(dtype=bool)
    y = holdout[LABEL].astype(int).to_numpy()
    return binary_metrics(y[~drop], proba[~drop], report["threshold"])


def side_by_side(report: dict[str, Any]) -> str:
    """The overall and excluding-arrest-defined metrics of the model and the baseline."""
    excluding = report["excluding_arrest_defined"]
    lines = [f"{'metric':<16}{'overall':>10}{'excluding':>11}{'base all':>10}{'base excl':>11}"]
    for name in SHOWN:
        cells = [
            report["model"][name],
            excluding["model"][name],
            report["baseline"][name],
            excluding["baseline"][name],
        ]
        text = "".join(f"{_cell(v):>11}" for v in cells)
        lines.append(f"{name:<16}{text}")
    return "\n".join(lines)


def main() -> None:
    """Train on the real 2018 file and print the honest headline metrics."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=CRIMES_2018)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--card", type=Path, default=None, help="write the model card here")
    args = parser.parse_args()
    if not args.data.exists():
        # The real records live beside the checkout, not in it (../shared/data/real/SOURCES.md).
        print(f"skipped: {args.data} is absent (pass --data FILE with Chicago crime records)")
        return
    raw = pd.read_csv(args.data, dtype=str)
    frame = to_canonical(raw.rename(columns={c: normalize_header(c) for c in raw.columns}))
    train, valid, holdout = time_split(frame, valid_months=1, holdout_months=2)
    trained = train_model(train, valid, ModelConfig())
    report = evaluate(trained.estimator, holdout)
    print(f"{trained.classifier}, threshold {trained.threshold:.4f}; holdout Sep-Oct 2018")
    print(side_by_side(report))
    also = borderline(holdout, report, trained.estimator.predict_proba(holdout)[:, 1])
    print(
        f"also excluding {', '.join(BORDERLINE_TYPES)}: n {also['n']:,}, ROC-AUC "
        f"{also['roc_auc']:.4f}, PR-AUC {also['pr_auc']:.4f}, "
        f"arrest rate {also['positive_rate']:.4f}"
    )
    rates = type_rates(pd.concat([train, valid, holdout]))
    for name, row in rates.items():
        rate = "-" if row["arrest_rate"] is None else f"{row['arrest_rate']:.3f}"
        print(f"  {name:<36}{row['rows']:>7,} rows  arrest rate {rate}")
    if args.out:
        args.out.write_text(json.dumps({"report": report, "type_rates": rates}, default=float))
    if args.card:
        splits = {"train": train, "validation": valid, "holdout": holdout}
        title = f"{trained.classifier} on the real 2018 file (scripts/honest_metrics.py)"
        args.card.write_text(training_card(trained, report, splits, title=title))


if __name__ == "__main__":
    main()
