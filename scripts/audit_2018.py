"""Per-area audit on the real 2018 records: the model the training flow would build on Jan-Aug
2018 (fitted on Jan-Jul, calibrated and thresholded on Aug), audited on the Sep-Oct holdout.

Prints the per-district table, the largest gaps of both layers, how district PR-AUC follows the
district's arrest rate, and the audit's own cost; writes the community-area and district PR-AUC
maps (docs/img/ by default). Needs ../shared/data/real (SOURCES.md); skips without it.

    PYTHONPATH=. .venv/bin/python scripts/audit_2018.py [--data-dir DIR] [--out-dir docs/img]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from crimeflow.contract.schema import LABEL
from crimeflow.domain.audit import audit_tables
from crimeflow.domain.geography import LAYERS, boundaries_from_geojson
from crimeflow.domain.model import ModelConfig, TrainedModel, time_split, train_model
from crimeflow.domain.plots import area_map_figure
from crimeflow.stores.files import read_incidents_file

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = ROOT / ".." / "shared" / "data" / "real"
FILE_2018 = "crimes_2018-01_to_2018-10_chicagocrimedata-datastore.csv.gz"
WINDOW = ("2018-01", "2018-10")
HOLDOUT_MONTHS = 2
# What "auto" picks on 2018 (docs/model-and-data.md); one thread on a shared 2-core host.
AUDIT_CONFIG = ModelConfig(classifier="hist_gradient_boosting", n_jobs=1)
DISTRICT_COLUMNS = ("rows", "positive_rate", "roc_auc", "pr_auc", "calibration_gap", "fpr", "fnr")


def split_2018(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Fit (Jan-Jul), calibration (Aug) and holdout (Sep-Oct) rows of the 2018 file."""
    month = frame["date"].dt.strftime("%Y-%m")
    window = frame[(month >= WINDOW[0]) & (month <= WINDOW[1])]
    return time_split(window, valid_months=1, holdout_months=HOLDOUT_MONTHS)


def fit_2018(
    fit_rows: pd.DataFrame,
    valid_rows: pd.DataFrame,
    config: ModelConfig = AUDIT_CONFIG,
    fit_sample: int | None = None,
) -> TrainedModel:
    """The model of the audit; `fit_sample` fits on that many rows (seeded) for a cheap test."""
    if fit_sample is not None and fit_sample < len(fit_rows):
        fit_rows = fit_rows.sample(fit_sample, random_state=config.random_state)
    return train_model(fit_rows, valid_rows, config)


def audit_holdout_2018(
    trained: TrainedModel, holdout: pd.DataFrame
) -> tuple[dict[str, pd.DataFrame], float]:
    """The audit tables of the holdout and the seconds the audit itself took (scoring apart)."""
    y = holdout[LABEL].astype("int64").to_numpy()
    proba = trained.estimator.predict_proba(holdout)[:, 1]
    tick = time.perf_counter()
    tables = audit_tables(holdout.reset_index(drop=True), y, proba, trained.threshold)
    return tables, time.perf_counter() - tick


def rate_correlation(per_district: pd.DataFrame) -> float:
    """Pearson correlation, over districts audited on their own, of PR-AUC and arrest rate."""
    own = per_district[~per_district["pooled"]]
    return float(np.corrcoef(own["pr_auc"], own["positive_rate"])[0, 1])


def pr_auc_lift_spread(per_district: pd.DataFrame) -> tuple[float, float]:
    """Lowest and highest PR-AUC / arrest rate (the lift over a constant) among districts."""
    own = per_district[~per_district["pooled"]]
    lift = own["pr_auc"] / own["positive_rate"]
    return float(lift.min()), float(lift.max())


def _ci(row: pd.Series, metric: str) -> str:
    """'0.532 [0.498, 0.566]' for one metric of a table row."""
    return f"{row[metric]:.3f} [{row[f'{metric}_low']:.3f}, {row[f'{metric}_high']:.3f}]"


def format_districts(per_district: pd.DataFrame) -> str:
    """The per-district table as Markdown, by district number, with 95 % intervals."""
    lines = [
        "| district | rows | arrest rate | ROC-AUC [95 % CI] | PR-AUC [95 % CI] "
        "| calibration gap | FPR | FNR |",
        "|---|---:|---:|---|---|---:|---:|---:|",
    ]
    for _, row in per_district.sort_values("area").iterrows():
        lines.append(
            f"| {row['area']} | {row['rows']:,} | {row['positive_rate']:.3f} "
            f"| {_ci(row, 'roc_auc')} | {_ci(row, 'pr_auc')} | {row['calibration_gap']:+.3f} "
            f"| {row['fpr']:.3f} | {row['fnr']:.3f} |"
        )
    return "\n".join(lines)


def format_gaps(gaps: pd.DataFrame) -> str:
    """The worst area per layer and metric, as Markdown."""
    lines = [
        "| by | metric | worst area [95 % CI] | rows | best area | gap | CIs apart |",
        "|---|---|---|---:|---|---:|---|",
    ]
    for row in gaps[gaps["rank"] == 1].itertuples():
        lines.append(
            f"| {row.by} | {row.metric} | {row.area}: {row.value:.3f} [{row.low:.3f}, "
            f"{row.high:.3f}] | {row.rows:,} | {row.best_area}: {row.best_value:.3f} "
            f"| {row.gap_to_best:.3f} | {'yes' if row.intervals_apart else 'no'} |"
        )
    return "\n".join(lines)


def write_maps(tables: dict[str, pd.DataFrame], geo_dir: Path, out_dir: Path) -> list[Path]:
    """The PR-AUC maps of both layers as PNGs in `out_dir`."""
    written = []
    for name, layer in LAYERS.items():
        boundaries = boundaries_from_geojson((geo_dir / f"{name}.geojson").read_bytes(), layer)
        table = tables["per_district" if layer.id_column == "district" else "per_community_area"]
        title = f"Sep-Oct 2018 holdout PR-AUC by {layer.id_column.replace('_', ' ')}"
        figure = area_map_figure(table, boundaries, "pr_auc", title)
        path = out_dir / f"audit_2018_{layer.id_column}_pr_auc.png"
        figure.savefig(path)
        written.append(path)
    return written


def main() -> None:
    """Train, audit, print the tables and numbers, write the maps."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REAL_DATA)
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    if not (args.data_dir / FILE_2018).exists():
        print(f"skipped: {args.data_dir / FILE_2018} is absent (see SOURCES.md)")
        return
    fit_rows, valid_rows, holdout = split_2018(read_incidents_file(args.data_dir / FILE_2018))
    tick = time.perf_counter()
    trained = fit_2018(fit_rows, valid_rows)
    print(f"trained {trained.classifier} in {time.perf_counter() - tick:.0f} s; ", end="")
    tables, seconds = audit_holdout_2018(trained, holdout)
    print(f"audit of {len(holdout):,} holdout rows took {seconds:.2f} s\n")
    print("## Per district (Sep-Oct 2018 holdout)\n")
    print(format_districts(tables["per_district"]))
    print("\n## Largest gaps\n")
    print(format_gaps(tables["largest_gaps"]))
    low, high = pr_auc_lift_spread(tables["per_district"])
    correlation = rate_correlation(tables["per_district"])
    print(
        f"\nPR-AUC vs district arrest rate: Pearson r = {correlation:.2f}; "
        f"PR-AUC / arrest rate from {low:.2f} to {high:.2f}"
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for path in write_maps(tables, args.data_dir / "geo", args.out_dir):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
