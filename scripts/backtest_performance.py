"""Back-test of the label-free performance estimate (CBPE) and the label-maturity measurement.

On the real records of ../shared/data/real (SOURCES.md): a champion is trained on Jan-Jun 2018
(fitted on Jan-May, calibrated and chosen on Jun) and scores Jul, Aug, Sep and Oct 2018, the
September 2024 month and the Oct-Nov 2025 records. For each window it prints the CBPE estimate
of ROC-AUC, PR-AUC and the arrest rate (with 95 % intervals) next to the realized values (with
bootstrap intervals) and the absolute error. Before that, the label-maturity profile of the
2018 file (monitoring/maturity.py) and the maturity it implies.

    PYTHONPATH=. .venv/bin/python scripts/backtest_performance.py [--data-dir DIR] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from crimeflow.contract.schema import LABEL
from crimeflow.domain.model import ArrestModel, ModelConfig, model_input, time_split, train_model
from crimeflow.stores.files import read_incidents_file
from monitoring.maturity import late_update_profile, maturity_days
from monitoring.performance import estimate_performance, realized_performance

REAL_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
FILE_2018 = "crimes_2018-01_to_2018-10_chicagocrimedata-datastore.csv.gz"
# The Sep 2024 Parquet's renamed columns are mapped to SODA names by the loader
# (crimeflow.stores.files.PARQUET_ALIASES, the mapping of SOURCES.md section 2).
FILE_2024_09 = "crimes_2024-09_ntropy86_sanitized.parquet"
FILE_2025 = "crimes_2025-10-18_to_2025-11-03_api_jean-carlos-l.csv"
CHAMPION_MONTHS = ("2018-01", "2018-06")
BACKTEST_MONTHS_2018 = ("2018-07", "2018-08", "2018-09", "2018-10")
# One candidate keeps the back-test cheap; it is what "auto" picks on 2018 (model-and-data.md).
# One thread: on a shared 2-core host two OpenMP threads fit several times slower.
BACKTEST_CONFIG = ModelConfig(classifier="hist_gradient_boosting", n_jobs=1)
METRICS = (("pr_auc", "PR-AUC"), ("roc_auc", "ROC-AUC"), ("positive_rate", "rate"))


def months_of(frame: pd.DataFrame) -> pd.Series:
    """Calendar month (YYYY-MM) of each incident."""
    return frame["date"].dt.strftime("%Y-%m")


def train_champion(
    frame_2018: pd.DataFrame, config: ModelConfig = BACKTEST_CONFIG, fit_sample: int | None = None
) -> ArrestModel:
    """The champion of the back-test: fitted on Jan-May 2018, calibrated on Jun 2018.

    `fit_sample` fits on that many Jan-May rows (seeded) instead of all, for a cheap test.
    """
    month = months_of(frame_2018)
    window = frame_2018[(month >= CHAMPION_MONTHS[0]) & (month <= CHAMPION_MONTHS[1])]
    fit_rows, calibration_rows, _ = time_split(window, valid_months=1)
    if fit_sample is not None and fit_sample < len(fit_rows):
        fit_rows = fit_rows.sample(fit_sample, random_state=config.random_state)
    return train_model(fit_rows, calibration_rows, config).estimator


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows with an arrest flag (a window's scoring set)."""
    return frame[frame[LABEL].notna()]


def backtest_windows(data_dir: Path, frame_2018: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The scored windows: Jul-Oct 2018 one by one, Sep 2024, Oct 19-Nov 2 2025."""
    month = months_of(frame_2018)
    windows = {m: labelled(frame_2018[month == m]) for m in BACKTEST_MONTHS_2018}
    windows["2024-09"] = labelled(read_incidents_file(data_dir / FILE_2024_09))
    windows["2025-10/11"] = labelled(read_incidents_file(data_dir / FILE_2025))
    return windows


def shift_to_rate(proba: np.ndarray, rate: float) -> tuple[np.ndarray, float]:
    """Probabilities moved by one log-odds offset so their mean is `rate`, and the odds ratio.

    A diagnostic that needs the realized rate (a label): it asks whether a uniform change of
    arrest odds explains a window's gap between estimate and realized value.
    """
    clipped = np.clip(proba, 1e-9, 1 - 1e-9)
    logit = np.log(clipped / (1 - clipped))
    low, high = -10.0, 10.0
    for _ in range(60):  # bisection: the mean is increasing in the offset
        mid = (low + high) / 2
        low, high = (mid, high) if np.mean(1 / (1 + np.exp(-(logit + mid)))) < rate else (low, mid)
    offset = (low + high) / 2
    return 1 / (1 + np.exp(-(logit + offset))), float(np.exp(offset))


def backtest_row(name: str, model: ArrestModel, frame: pd.DataFrame, seed: int = 0) -> dict:
    """Estimate and realized figures of one window, flat for a table."""
    proba = model.predict_proba(model_input(frame))[:, 1]
    y = frame[LABEL].astype("int64").to_numpy()
    est = estimate_performance(proba, seed=seed)
    real = realized_performance(y, proba, seed=seed)
    row: dict = {"window": name, "rows": len(frame)}
    for metric in ("roc_auc", "pr_auc", "positive_rate"):
        e, r = getattr(est, metric), getattr(real, metric)
        row[f"{metric}_est"], row[f"{metric}_est_low"], row[f"{metric}_est_high"] = (
            e.value,
            e.low,
            e.high,
        )
        row[f"{metric}_real"] = r.value
        row[f"{metric}_real_low"], row[f"{metric}_real_high"] = r.low, r.high
        row[f"{metric}_abs_err"] = abs(e.value - r.value)
        row[f"{metric}_covered"] = e.low <= r.value <= e.high
    row["calibration_gap"] = real.calibration_gap.value
    shifted, row["odds_ratio"] = shift_to_rate(proba, real.positive_rate.value)
    after_shift = estimate_performance(shifted, simulations=2, seed=seed)
    row["pr_auc_est_shifted"] = after_shift.pr_auc.value
    row["roc_auc_est_shifted"] = after_shift.roc_auc.value
    return row


def _cell(row: dict, metric: str, kind: str) -> str:
    """'value [low, high]' for a table cell."""
    value, low = row[f"{metric}_{kind}"], row[f"{metric}_{kind}_low"]
    high = row[f"{metric}_{kind}_high"]
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def format_backtest(rows: list[dict]) -> str:
    """The back-test as a Markdown table (estimate, realized, |error| per metric)."""
    lines = [
        "| window | rows | metric | CBPE estimate [95 % CI] | realized [95 % CI] | abs error |"
        " inside CI |",
        "|---|---:|---|---|---|---:|---|",
    ]
    for row in rows:
        for metric, label in METRICS:
            lines.append(
                f"| {row['window']} | {row['rows']:,} | {label} | {_cell(row, metric, 'est')} "
                f"| {_cell(row, metric, 'real')} | {row[f'{metric}_abs_err']:.3f} "
                f"| {'yes' if row[f'{metric}_covered'] else 'no'} |"
            )
    return "\n".join(lines)


def format_gap(rows: list[dict]) -> str:
    """Why estimate and realized differ: the same CBPE after matching the realized arrest rate."""
    lines = [
        "| window | calibration gap | odds ratio to match the rate | PR-AUC est / shifted / real |"
        " ROC-AUC est / shifted / real |",
        "|---|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['window']} | {r['calibration_gap']:+.3f} | {r['odds_ratio']:.2f} "
            f"| {r['pr_auc_est']:.3f} / {r['pr_auc_est_shifted']:.3f} / {r['pr_auc_real']:.3f} "
            f"| {r['roc_auc_est']:.3f} / {r['roc_auc_est_shifted']:.3f} / {r['roc_auc_real']:.3f} |"
        )
    return "\n".join(lines)


def format_maturity(profile: pd.DataFrame, cohort: dict) -> str:
    """The late-update profile as a Markdown table with its cohort."""
    lines = [
        f"cohort: {cohort['rows']:,} incidents {cohort['first_incident']:%Y-%m-%d} to "
        f"{cohort['last_incident']:%Y-%m-%d}, arrest rate {cohort['arrest_rate']:.3f}; "
        f"snapshot {cohort['snapshot']:%Y-%m-%d %H:%M}; bulk updates {cohort['bulk_update_days']};"
        f" first publication {cohort['first_update_lag_days']:.1f} days after the incident",
        "",
        "| L (days) | arrests updated after L | non-arrests updated after L | excess |"
        " arrest rate at risk (pp) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in profile.itertuples():
        lines.append(
            f"| {r.lag_days} | {r.arrests_updated_later:.1%} | {r.others_updated_later:.1%} "
            f"| {r.excess:+.1%} | {r.rate_at_risk_pp:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Print the maturity profile and the back-test table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REAL_DATA)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (args.data_dir / FILE_2018).exists():
        print(f"skipped: {args.data_dir / FILE_2018} is absent (see SOURCES.md)")
        return
    frame_2018 = read_incidents_file(args.data_dir / FILE_2018)
    profile, cohort = late_update_profile(frame_2018)
    print("## Label maturity (2018 file)\n")
    print(format_maturity(profile, cohort))
    print(f"\nmaturity (at most 5 % of arrests updated later): {maturity_days(profile)} days\n")

    tick = time.perf_counter()
    model = train_champion(frame_2018)
    print(f"## Back-test (champion Jan-Jun 2018, trained in {time.perf_counter() - tick:.0f} s)\n")
    windows = backtest_windows(args.data_dir, frame_2018)
    rows = [backtest_row(name, model, frame, args.seed) for name, frame in windows.items()]
    print(format_backtest(rows))
    print("\n## The gap: CBPE again after one change of arrest odds matching the realized rate\n")
    print(format_gap(rows))


if __name__ == "__main__":
    main()
