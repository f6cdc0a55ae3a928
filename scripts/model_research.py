"""Reproducible model research on the real 2018 Chicago data (Jan-Oct, 222k incidents).

Split by time: train Jan-Jul, validate Aug (model choice, calibration, threshold), hold out
Sep-Oct. The holdout is scored from the raw CSV strings, as a SODA client would send them.

    .venv/bin/python scripts/model_research.py                      # the default config
    .venv/bin/python scripts/model_research.py --classifier hist_gradient_boosting --balance
    .venv/bin/python scripts/model_research.py --reference --out /tmp/research.json

Prints one JSON report: candidates' validation scores, holdout metrics vs the prior-rate
baseline (overall and per crime type), calibration gap, fit time on all ten months, latency of
the skops-loaded artifact (1 row p50, 10k rows) and, with --reference, a plain
HistGradientBoosting with native categoricals for comparison.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, roc_auc_score

from crimeflow.contract.schema import LABEL, normalize_header, to_canonical
from crimeflow.domain.evaluate import binary_metrics, evaluate
from crimeflow.domain.model import (
    CLASSIFIERS,
    MODEL_INPUT_COLUMNS,
    SKOPS_TRUSTED_TYPES,
    ModelConfig,
    fit_pipeline,
    labels_of,
    model_input,
    time_split,
    train_model,
)

REAL_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
CRIMES_2018 = REAL_DATA / "crimes_2018-01_to_2018-10_chicagocrimedata-datastore.csv.gz"


def load_raw(path: Path) -> pd.DataFrame:
    """The CSV as strings with SODA field names (what a SODA JSON page holds)."""
    raw = pd.read_csv(path, dtype=str)
    return raw.rename(columns={c: normalize_header(c) for c in raw.columns})


def latency(model: Any, one_row: pd.DataFrame, batch: pd.DataFrame, repeats: int) -> dict:
    """p50/p95 of 1-row predict_proba and the time of one batch call, in milliseconds."""
    for _ in range(10):  # warm caches (KD-tree build, thread pools)
        model.predict_proba(one_row)
    times = []
    for _ in range(repeats):
        tick = time.perf_counter()
        model.predict_proba(one_row)
        times.append(time.perf_counter() - tick)
    batch_times = []
    for _ in range(3):
        tick = time.perf_counter()
        model.predict_proba(batch)
        batch_times.append(time.perf_counter() - tick)
    return {
        "one_row_p50_ms": 1000 * float(np.median(times)),
        "one_row_p95_ms": 1000 * float(np.quantile(times, 0.95)),
        f"batch_{len(batch)}_ms": 1000 * float(np.median(batch_times)),
    }


def reference_hgb(train: pd.DataFrame, holdout: pd.DataFrame, seed: int) -> dict[str, float]:
    """The issue's yardstick: HGB with native categoricals on the raw fields (no calibration)."""
    columns = ["iucr", "primary_type", "description", "location_description", "beat"]
    columns += ["district", "fbi_code", "ward", "community_area"]

    def frame(df: pd.DataFrame, vocab: dict[str, list[str]]) -> pd.DataFrame:
        out = pd.DataFrame(index=df.index)
        for c in columns:
            text = df[c].astype("string").fillna("NA")
            out[c] = pd.Categorical(text.where(text.isin(vocab[c]), "other"), [*vocab[c], "other"])
        out["domestic"] = df["domestic"].astype("float64")
        out["hour"] = df["date"].dt.hour
        out["weekday"] = df["date"].dt.weekday
        out["x"] = df["x_coordinate"]
        out["y"] = df["y_coordinate"]
        return out

    # Native categoricals take at most 255 levels: keep the 250 most frequent in training.
    vocab = {
        c: list(train[c].astype("string").fillna("NA").value_counts().index[:250]) for c in columns
    }
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed)
    tick = time.perf_counter()
    model.fit(frame(train, vocab), labels_of(train))
    fit_s = time.perf_counter() - tick
    proba = model.predict_proba(frame(holdout, vocab))[:, 1]
    y = labels_of(holdout)
    return {
        "roc_auc": float(roc_auc_score(y, proba)),
        "pr_auc": float(average_precision_score(y, proba)),
        "mean_predicted": float(proba.mean()),
        "fit_s": fit_s,
    }


def parse_args() -> argparse.Namespace:
    """Command line: data path and the ModelConfig knobs worth exploring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=CRIMES_2018)
    parser.add_argument("--classifier", default="auto", choices=["auto", *CLASSIFIERS])
    parser.add_argument("--balance", action="store_true", help="SMOTE + undersampling")
    parser.add_argument("--smote-ratio", type=float, default=None)
    parser.add_argument("--undersample-ratio", type=float, default=None)
    parser.add_argument("--select-k", type=int, default=None)
    parser.add_argument("--calibration", choices=["isotonic", "sigmoid"], default=None)
    parser.add_argument("--threshold-metric", choices=["f1", "mcc"], default=None)
    parser.add_argument("--seasonal", action="store_true", help="add month/season features")
    parser.add_argument("--no-crosses", action="store_true", help="drop crossed categories")
    parser.add_argument("--hgb-max-iter", type=int, default=None)
    parser.add_argument("--hgb-learning-rate", type=float, default=None)
    parser.add_argument("--hgb-max-leaf-nodes", type=int, default=None)
    parser.add_argument("--n-jobs", type=int, default=None)
    parser.add_argument("--reference", action="store_true", help="also fit the plain HGB")
    parser.add_argument("--skip-full-fit", action="store_true", help="no 10-month timing fit")
    parser.add_argument("--repeats", type=int, default=300, help="1-row latency samples")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    return parser.parse_args()


def config_from(args: argparse.Namespace) -> ModelConfig:
    """ModelConfig defaults, overridden by the flags that were given."""
    changes: dict[str, Any] = {"classifier": args.classifier, "balance": args.balance}
    optional = {
        "smote_ratio": args.smote_ratio,
        "undersample_ratio": args.undersample_ratio,
        "select_k": args.select_k,
        "calibration": args.calibration,
        "threshold_metric": args.threshold_metric,
        "hgb_max_iter": args.hgb_max_iter,
        "hgb_learning_rate": args.hgb_learning_rate,
        "hgb_max_leaf_nodes": args.hgb_max_leaf_nodes,
        "n_jobs": args.n_jobs,
    }
    changes.update({k: v for k, v in optional.items() if v is not None})
    if args.seasonal:
        changes["seasonal_features"] = True
    if args.no_crosses:
        changes["crosses"] = ()
    return replace(ModelConfig(), **changes)


def main() -> None:
    """Run the study and print the report."""
    args = parse_args()
    if not Path(args.data).exists():
        # The real records live beside the checkout, not in it (../shared/data/real/SOURCES.md).
        print(f"skipped: {args.data} is absent (pass --data FILE with Chicago crime records)")
        return
    config = config_from(args)
    report: dict[str, Any] = {"config": asdict(config)}

    tick = time.perf_counter()
    raw = load_raw(args.data)
    frame = to_canonical(raw)
    report["load_s"] = time.perf_counter() - tick
    train, valid, holdout = time_split(frame, valid_months=1, holdout_months=2)
    report["rows"] = {"train": len(train), "valid": len(valid), "holdout": len(holdout)}
    report["arrest_rate"] = {
        "train": float(train[LABEL].mean()),
        "valid": float(valid[LABEL].mean()),
        "holdout": float(holdout[LABEL].mean()),
    }

    trained = train_model(train, valid, config)
    report["chosen"] = trained.classifier
    report["candidates"] = {name: asdict(score) for name, score in trained.candidates.items()}
    report["validation_calibrated"] = trained.validation
    report["threshold"] = trained.threshold
    report["timings"] = trained.timings
    report["selected_features"] = trained.selected_features

    # The holdout as a SODA client sends it: strings, no label, no bookkeeping fields.
    model = trained.estimator
    client_rows = raw.loc[holdout.index].reindex(columns=list(MODEL_INPUT_COLUMNS))
    y_holdout = labels_of(holdout)
    client_proba = model.predict_proba(client_rows)[:, 1]
    canonical_proba = model.predict_proba(model_input(holdout))[:, 1]
    report["holdout_client_rows"] = binary_metrics(y_holdout, client_proba, trained.threshold)
    report["client_vs_canonical_max_abs_diff"] = float(
        np.max(np.abs(client_proba - canonical_proba))
    )
    report["holdout"] = evaluate(model, holdout)

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.skops"
        sio.dump(model, path)
        report["artifact_bytes"] = path.stat().st_size
        tick = time.perf_counter()
        loaded = sio.load(path, trusted=SKOPS_TRUSTED_TYPES)
        report["artifact_load_s"] = time.perf_counter() - tick
    report["latency_canonical"] = latency(
        loaded, model_input(holdout.iloc[[123]]), model_input(holdout.iloc[:10_000]), args.repeats
    )
    report["latency_client_strings"] = latency(
        loaded, client_rows.iloc[[123]], client_rows.iloc[:10_000], max(args.repeats // 3, 20)
    )

    if not args.skip_full_fit:
        # The benchmark target: the chosen pipeline fitted on all ten months.
        everything = pd.concat([train, valid, holdout])
        tick = time.perf_counter()
        fit_pipeline(everything, replace(config, classifier=trained.classifier))
        report["full_fit"] = {"rows": len(everything), "seconds": time.perf_counter() - tick}

    if args.reference:
        report["reference_hgb_native"] = reference_hgb(
            pd.concat([train, valid]), holdout, config.random_state
        )

    text = json.dumps(report, indent=2, default=float)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
