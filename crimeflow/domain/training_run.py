"""What a training run records, pure: the window, the reference sample, params, metrics,
version tags, evaluation figures and the summary a person reads. MLflow I/O lives in
`crimeflow.stores.training_log`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from crimeflow.contract.links import Links
from crimeflow.contract.months import newest_mature_month
from crimeflow.contract.schema import LABEL, SODA_COLUMNS
from crimeflow.domain.evaluate import flatten_metrics
from crimeflow.domain.features import MODEL_INPUT_COLUMNS
from crimeflow.domain.model import TrainedModel, candidate_key
from crimeflow.domain.plots import (
    calibration_figure,
    confusion_figure,
    importance_figure,
    permutation_importances,
    pr_figure,
    roc_figure,
)

PROBABILITY = "arrest_probability"
FIT_MONTHS_TAG = "fit_months"
HOLDOUT_MONTHS_TAG = "holdout_months"
IMPORTANCE_ROWS = 5_000


@dataclass
class TrainingWindow:
    """The labelled incidents of the window and where they came from."""

    frame: pd.DataFrame
    months: list[str]
    lineage: dict[str, Any]


@dataclass
class RegisteredModel:
    """What the registry now holds for this training run."""

    run_id: str
    version: str
    model_uri: str
    promoted: bool
    run_url: str
    version_url: str
    card_url: str | None = None


def newest_months(
    available: list[str], until: str | None, count: int, rows: Mapping[str, int] | None = None
) -> list[str]:
    """The newest `count` of the `available` months up to `until` (None: up to the newest) that
    have data: with `rows` (rows per month), months without rows do not count."""
    months = [m for m in available if until is None or m <= until]
    if rows is not None:
        months = [m for m in months if rows.get(m, 0) > 0]
    return months[-count:]


def training_until(until: str | None, today: date, maturity_days: int) -> str:
    """The newest month a model may learn or be judged on: `until`, capped at the newest month
    whose labels are mature."""
    mature = newest_mature_month(today, maturity_days)
    return mature if until is None else min(until, mature)


def reference_sample(frame: pd.DataFrame, proba: np.ndarray, rows: int, seed: int) -> pd.DataFrame:
    """Training-period incidents as the prediction log stores traffic, with the model's score.

    Sampled evenly per month (seeded) so the reference has the window's seasonality.
    """
    scored = frame[list(SODA_COLUMNS)].assign(**{PROBABILITY: proba})
    month = scored["date"].dt.strftime("%Y-%m")
    share = min(1.0, rows / max(len(scored), 1))
    sample = scored.groupby(month, group_keys=False).sample(frac=share, random_state=seed)
    return sample.sort_values("date").reset_index(drop=True)


def evaluation_figures(trained: TrainedModel, holdout: pd.DataFrame, seed: int) -> dict[str, Any]:
    """The run's plots: ROC, PR, calibration, confusion and permutation importance."""
    y = holdout[LABEL].astype(int).to_numpy()
    proba = trained.estimator.predict_proba(holdout)[:, 1]
    sample = holdout.sample(min(IMPORTANCE_ROWS, len(holdout)), random_state=seed)
    columns = [c for c in MODEL_INPUT_COLUMNS if sample[c].notna().any()]
    importances = permutation_importances(
        trained.estimator, sample, sample[LABEL].astype(int).to_numpy(), columns, seed
    )
    return {
        "roc": roc_figure(y, proba),
        "precision_recall": pr_figure(y, proba, trained.threshold),
        "calibration": calibration_figure(y, proba),
        "confusion_matrix": confusion_figure(y, proba, trained.threshold),
        "permutation_importance": importance_figure(importances),
    }


def span(frame: pd.DataFrame) -> str:
    """'2018-01..2018-07' for the months a frame covers."""
    months = frame["date"].dt.strftime("%Y-%m")
    return f"{months.min()}..{months.max()}"


def run_params(trained: TrainedModel, splits: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Run params: the model config, the chosen candidate (classifier, balance mode) and the
    split months."""
    params = {f"config.{k}": v for k, v in asdict(trained.config).items()}
    params |= {"classifier": trained.classifier, "threshold_metric": trained.threshold_metric}
    # Whether balancing won this run's search (none, smote or class_weight), and the candidate.
    params |= {
        "balance": trained.balance,
        "candidate": candidate_key(trained.classifier, trained.balance),
    }
    params |= {f"split.{name}": span(frame) for name, frame in splits.items()}
    params |= {f"rows.{name}": len(frame) for name, frame in splits.items()}
    return params


def run_metrics(trained: TrainedModel, report: dict[str, Any]) -> dict[str, float]:
    """Holdout metrics, validation scores of every candidate, and timings."""
    metrics = {f"holdout.{k}": v for k, v in flatten_metrics(report).items()}
    metrics |= {f"validation.{k}": v for k, v in trained.validation.items()}
    for name, score in trained.candidates.items():
        metrics |= {
            f"candidate.{name}.pr_auc": score.pr_auc,
            f"candidate.{name}.roc_auc": score.roc_auc,
            f"candidate.{name}.fit_seconds": score.fit_seconds,
            f"candidate.{name}.one_row_ms": score.one_row_ms,
        }
    metrics |= {f"seconds.{k}": v for k, v in trained.timings.items()}
    return {k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)}


def month_list(frame: pd.DataFrame) -> str:
    """'2018-01,2018-02' for the months a frame covers (comma-joined: a tag is a string)."""
    return ",".join(sorted(frame["date"].dt.strftime("%Y-%m").unique()))


def version_tags(
    trained: TrainedModel,
    report: dict[str, Any],
    window: TrainingWindow,
    splits: dict[str, pd.DataFrame],
) -> dict[str, str]:
    """Tags a person (and the promotion gate) reads on the model version."""
    model = report["model"]
    fitted = pd.concat([splits["train"], splits["validation"]])
    return {
        "classifier": trained.classifier,
        "balance": trained.balance,
        "decision_threshold": f"{trained.threshold:.4f}",
        "training_months": f"{window.months[0]}..{window.months[-1]}",
        # The months the model learnt from (fit + calibration): the gate stages neither model
        # on these.
        FIT_MONTHS_TAG: month_list(fitted),
        HOLDOUT_MONTHS_TAG: month_list(splits["holdout"]),
        "holdout.roc_auc": f"{model['roc_auc']:.4f}",
        "holdout.pr_auc": f"{model['pr_auc']:.4f}",
        "holdout.calibration_gap": f"{model['calibration_gap']:.4f}",
        **_excluding_tags(report),
    }


def _excluding_tags(report: dict[str, Any]) -> dict[str, str]:
    """The honest ROC-AUC and PR-AUC (arrest-defined types left out) as version tags."""
    model = (report.get("excluding_arrest_defined") or {}).get("model", {})
    names = [n for n in ("roc_auc", "pr_auc") if model.get(n) is not None]
    return {f"holdout.excluding_arrest_defined.{n}": f"{model[n]:.4f}" for n in names}


FLOW_RUN_URL_TAG = "prefect.flow_run_url"
# Version tag linking to the model card in the training run (the gate updates the card).
MODEL_CARD_URL_TAG = "model_card_url"


def flow_run_tags(links: Links, flow_run_id: str | None) -> dict[str, str]:
    """The Prefect flow run that trained the model, as an MLflow tag ({} outside a flow run)."""
    url = links.optional_flow_run(flow_run_id)
    return {} if url is None else {FLOW_RUN_URL_TAG: url}


def summary_markdown(
    trained: TrainedModel, report: dict[str, Any], registered: RegisteredModel
) -> str:
    """The Prefect artifact: holdout metrics vs baseline, candidates, registry outcome."""
    names = ("roc_auc", "pr_auc", "accuracy", "mcc", "f1", "precision", "recall", "brier")
    names += ("log_loss",)
    model, baseline = report["model"], report["baseline"]
    excluding = report.get("excluding_arrest_defined") or {}
    honest = excluding.get("model", {})
    card = f" · [model card]({registered.card_url})" if registered.card_url else ""
    lines = [
        f"# Training — {candidate_key(trained.classifier, trained.balance)}, registered as "
        f"version {registered.version}",
        "",
        f"[MLflow run]({registered.run_url}) · "
        f"[model version {registered.version}]({registered.version_url}){card} · alias "
        "`challenger`" + (" and `champion` (first model)" if registered.promoted else ""),
        "",
        f"Holdout: {model['n']:,} incidents, observed arrest rate {model['positive_rate']:.3f}, "
        f"mean predicted {model['mean_predicted']:.3f}, threshold {report['threshold']:.3f}. "
        f"'Excluding arrest-defined' leaves out {excluding.get('excluded_rows', 0):,} incidents "
        "of the types recorded because of an arrest (NARCOTICS, PROSTITUTION, ...): the honest "
        "measure of skill.",
        "",
        "| metric | model | model excluding arrest-defined | prior-rate baseline |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {n} | {_fmt(model.get(n))} | {_fmt(honest.get(n))} | {_fmt(baseline.get(n))} |"
        for n in names
    ]
    lines += ["", "| candidate | balance | validation PR-AUC | ROC-AUC | fit s | 1-row ms |"]
    lines += ["|---|---|---:|---:|---:|---:|"]
    lines += [
        f"| {c.key} | {c.balance} | {c.pr_auc:.4f} | {c.roc_auc:.4f} | {c.fit_seconds:.1f} "
        f"| {c.one_row_ms:.2f} |"
        for c in trained.candidates.values()
    ]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    """A metric for a table; undefined shows as a dash."""
    return "–" if value is None else f"{value:.4f}"
