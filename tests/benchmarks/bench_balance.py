"""Does balancing help? The default search with and without balanced variants, on real 2018 data.

    python tests/benchmarks/bench_balance.py [--data FILE] [--n-jobs 2] [--skip-search]

Split as the model tests do: fit on Jan-Jul 2018, validate (pick, calibrate, threshold) on Aug,
holdout Sep-Oct. Prints:

- the default candidate search (`ModelConfig()`): every candidate's validation PR-AUC and fit
  seconds, the pick, and the search's fit time with and without the balanced variants;
- for hist_gradient_boosting unbalanced, with class weights and with SMOTE + undersampling, each
  calibrated on Aug: holdout PR-AUC, ROC-AUC, Brier, calibration gap (calibrated and raw).

Needs the real data file (skips with exit 0 when it is absent).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from crimeflow.contract.schema import normalize_header, to_canonical
from crimeflow.domain.evaluate import binary_metrics
from crimeflow.domain.model import (
    ModelConfig,
    candidate_key,
    labels_of,
    model_input,
    time_split,
    train_model,
)

DATA = (
    Path(__file__).resolve().parents[2]
    / ".."
    / "shared"
    / "data"
    / "real"
    / "crimes_2018-01_to_2018-10_chicagocrimedata-datastore.csv.gz"
)


def load(path: Path) -> pd.DataFrame:
    """The 2018 file as the canonical frame."""
    raw = pd.read_csv(path, dtype=str)
    return to_canonical(raw.rename(columns={c: normalize_header(c) for c in raw.columns}))


def search(train: pd.DataFrame, valid: pd.DataFrame, n_jobs: int) -> None:
    """The default search: candidates, pick, fit seconds with and without balanced variants."""
    trained = train_model(train, valid, ModelConfig(n_jobs=n_jobs))
    print("default search (validation Aug 2018):")
    for key, score in trained.candidates.items():
        print(
            f"  {key:38s} PR-AUC {score.pr_auc:.4f}  ROC-AUC {score.roc_auc:.4f}  "
            f"fit {score.fit_seconds:6.1f} s  1-row {score.one_row_ms:.2f} ms"
        )
    plain = sum(s.fit_seconds for s in trained.candidates.values() if s.balance == "none")
    every = sum(s.fit_seconds for s in trained.candidates.values())
    print(f"  picked {trained.classifier} (balance {trained.balance})")
    print(f"  fit seconds: plain candidates {plain:.1f}, with balanced variants {every:.1f}")
    print(f"  ratio {every / plain:.2f}x; whole train_model {trained.timings['total_s']:.1f} s")


def variants(train: pd.DataFrame, valid: pd.DataFrame, holdout: pd.DataFrame, n_jobs: int) -> None:
    """HGB plain / class weights / SMOTE, each calibrated on Aug, scored on Sep-Oct."""
    y = labels_of(holdout)
    print("hist_gradient_boosting on the Sep-Oct holdout (calibrated on Aug):")
    for mode in ("none", "class_weight", "smote"):
        config = replace(
            ModelConfig(n_jobs=n_jobs), classifier="hist_gradient_boosting", balance_mode=mode
        )
        tick = time.perf_counter()
        trained = train_model(train, valid, config)
        key = candidate_key("hist_gradient_boosting", mode)
        seconds = time.perf_counter() - tick
        proba = trained.estimator.predict_proba(holdout)[:, 1]
        raw = trained.estimator.pipeline.predict_proba(model_input(holdout))[:, 1]
        cal = binary_metrics(y, proba, trained.threshold)
        unc = binary_metrics(y, raw, 0.5)
        print(
            f"  {mode:13s} PR-AUC {cal['pr_auc']:.4f}  ROC-AUC {cal['roc_auc']:.4f}  "
            f"Brier {cal['brier']:.4f}  gap {cal['calibration_gap']:+.4f}  "
            f"MCC {cal['mcc']:.4f}  | raw gap {unc['calibration_gap']:+.4f} "
            f"raw Brier {unc['brier']:.4f}  | fit {trained.timings[f'fit_{key}_s']:.1f} s, "
            f"train_model {seconds:.1f} s"
        )


def main() -> int:
    """Run both measurements; exit 0 with a note when the data is absent."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    # 1 on a busy host: OpenMP threads spinning against other processes cost HGB 10x or more.
    parser.add_argument("--n-jobs", type=int, default=ModelConfig().n_jobs)
    parser.add_argument("--skip-search", action="store_true", help="only the HGB variants")
    args = parser.parse_args()
    if not args.data.is_file():
        print(f"skipped: {args.data} is absent")
        return 0
    frame = load(args.data)
    train, valid, holdout = time_split(frame, valid_months=1, holdout_months=2)
    print(f"rows: train {len(train):,}, validation {len(valid):,}, holdout {len(holdout):,}")
    if not args.skip_search:
        search(train, valid, args.n_jobs)
    variants(train, valid, holdout, args.n_jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
