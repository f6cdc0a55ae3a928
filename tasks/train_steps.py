"""Prefect tasks of the training flow: read the window, fit, evaluate, log and register."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact

from crimeflow.contract.schema import LABEL, SODA_COLUMNS
from crimeflow.contract.settings import Settings
from crimeflow.domain.evaluate import evaluate, flatten_metrics
from crimeflow.domain.features import MODEL_INPUT_COLUMNS
from crimeflow.domain.model import SKOPS_TRUSTED_TYPES, ModelConfig, TrainedModel, train_model
from crimeflow.domain.plots import (
    calibration_figure,
    confusion_figure,
    importance_figure,
    permutation_importances,
    pr_figure,
    roc_figure,
)
from crimeflow.stores.files import read_stations_file
from crimeflow.stores.lake import CLEAN_CRIMES, RAW_STATIONS, STATE_KEY, Lake
from crimeflow.stores.registry import (
    CHALLENGER,
    ensure_experiment,
    mlflow_client,
    promote_if_no_champion,
    set_alias,
)
from tasks import step

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


@step
def load_training_window(lake: Lake, until: str | None, window_months: int) -> TrainingWindow:
    """Read the newest `window_months` clean months up to `until` from the lake, with lineage."""
    months = [m for m in lake.months(CLEAN_CRIMES) if until is None or m <= until]
    months = months[-window_months:]
    if not months:
        raise ValueError(f"no clean months in {lake.url} up to {until}: run the ETL first")
    frame = lake.read_months(CLEAN_CRIMES, months)
    state = lake.read_json(STATE_KEY) or {}
    lineage = {
        "lake_url": lake.url,
        "zone": CLEAN_CRIMES,
        "months": months,
        "clean_sha256": {m: lake.content_hash(CLEAN_CRIMES, m) for m in months},
        "etl_run_id": state.get("last_run_id"),
        "rows": len(frame),
    }
    get_run_logger().info("training window %s..%s: %s rows", months[0], months[-1], len(frame))
    return TrainingWindow(frame, months, lineage)


@step
def load_stations(lake: Lake) -> pd.DataFrame:
    """The stations snapshot the ETL used (the packaged copy when the lake has none)."""
    stations = lake.read(RAW_STATIONS)
    return stations if stations is not None else read_stations_file()


@step
def fit_model(
    train: pd.DataFrame, valid: pd.DataFrame, config: ModelConfig, stations: pd.DataFrame
) -> TrainedModel:
    """Fit every candidate, pick and calibrate the best on the validation month."""
    trained = train_model(train, valid, config, stations)
    get_run_logger().info(
        "chose %s (validation PR-AUC %.3f); threshold %.3f",
        trained.classifier,
        trained.validation["pr_auc"],
        trained.threshold,
    )
    return trained


@step
def evaluate_holdout(trained: TrainedModel, holdout: pd.DataFrame) -> dict[str, Any]:
    """All holdout metrics of the calibrated model next to the prior-rate baseline."""
    return evaluate(trained.estimator, holdout)


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


def _dataset(frame: pd.DataFrame, name: str, lineage: dict[str, Any]) -> Any:
    """An `mlflow.data` dataset for a slice of the window, sourced from the lake."""
    return mlflow.data.from_pandas(
        frame, source=f"{lineage['lake_url']}/{lineage['zone']}", name=name, targets=LABEL
    )


@step
def log_and_register(
    settings: Settings,
    window: TrainingWindow,
    splits: dict[str, pd.DataFrame],
    trained: TrainedModel,
    report: dict[str, Any],
    promote_if_none: bool,
) -> RegisteredModel:
    """Log params, metrics, lineage, plots, the reference sample and the model; register it."""
    client = mlflow_client(settings)
    experiment_id = ensure_experiment(client, settings)
    train_and_valid = pd.concat([splits["train"], splits["validation"]], ignore_index=True)
    reference = reference_sample(
        train_and_valid,
        trained.estimator.predict_proba(train_and_valid)[:, 1],
        settings.mlflow.reference_sample_rows,
        trained.config.random_state,
    )
    example = splits["holdout"].head(5)[list(MODEL_INPUT_COLUMNS)]
    with (
        _quiet_mlflow_hints(),
        mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{window.months[-1]}") as run,
    ):
        signature = infer_signature(example, trained.estimator.predict_proba(example))
        mlflow.log_params(_params(trained, splits))
        mlflow.log_metrics(_metrics(trained, report))
        for context, frame in splits.items():
            mlflow.log_input(_dataset(frame, f"{context}-{_span(frame)}", window.lineage), context)
        mlflow.log_dict(window.lineage, "lineage.json")
        mlflow.log_dict(report, "holdout_report.json")
        for name, figure in evaluation_figures(trained, splits["holdout"], 0).items():
            mlflow.log_figure(figure, f"plots/{name}.png")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "reference.parquet"
            reference.to_parquet(path, index=False)
            mlflow.log_artifact(str(path), "reference")
        info = mlflow.sklearn.log_model(
            trained.estimator,
            name="model",
            serialization_format="skops",
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
            signature=signature,
            input_example=example,
            pyfunc_predict_fn="predict_proba",
            registered_model_name=settings.model_name,
            metadata={"decision_threshold": trained.threshold, "classifier": trained.classifier},
        )
    version = str(info.registered_model_version)
    set_alias(client, settings.model_name, CHALLENGER, version)
    for key, value in _version_tags(trained, report, window, splits).items():
        client.set_model_version_tag(settings.model_name, version, key, value)
    promoted = promote_if_none and promote_if_no_champion(client, settings.model_name, version)
    return RegisteredModel(
        run.info.run_id,
        version,
        f"models:/{settings.model_name}/{version}",
        promoted,
        _run_url(settings, experiment_id, run.info.run_id),
    )


@contextmanager
def _quiet_mlflow_hints() -> Iterator[None]:
    """Silence two MLflow hints that do not apply here and bury real warnings in logs."""
    with warnings.catch_warnings():
        # Integer columns: the API scores with our loader, which takes nullable Int64 as is.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        # A lake path reads as two equivalent local dataset sources.
        warnings.filterwarnings("ignore", message="The specified dataset source can be")
        yield


def _span(frame: pd.DataFrame) -> str:
    """'2018-01..2018-07' for the months a frame covers."""
    months = frame["date"].dt.strftime("%Y-%m")
    return f"{months.min()}..{months.max()}"


def _params(trained: TrainedModel, splits: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Run params: the model config, the chosen classifier and the split months."""
    params = {f"config.{k}": v for k, v in asdict(trained.config).items()}
    params |= {"classifier": trained.classifier, "threshold_metric": trained.threshold_metric}
    params |= {f"split.{name}": _span(frame) for name, frame in splits.items()}
    params |= {f"rows.{name}": len(frame) for name, frame in splits.items()}
    return params


def _metrics(trained: TrainedModel, report: dict[str, Any]) -> dict[str, float]:
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


def _month_list(frame: pd.DataFrame) -> str:
    """'2018-01,2018-02' for the months a frame covers (comma-joined: a tag is a string)."""
    return ",".join(sorted(frame["date"].dt.strftime("%Y-%m").unique()))


def _version_tags(
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
        "decision_threshold": f"{trained.threshold:.4f}",
        "training_months": f"{window.months[0]}..{window.months[-1]}",
        # The months the model learnt from (fit + calibration): the gate stages neither model
        # on these.
        FIT_MONTHS_TAG: _month_list(fitted),
        HOLDOUT_MONTHS_TAG: _month_list(splits["holdout"]),
        "holdout.roc_auc": f"{model['roc_auc']:.4f}",
        "holdout.pr_auc": f"{model['pr_auc']:.4f}",
        "holdout.calibration_gap": f"{model['calibration_gap']:.4f}",
    }


def _run_url(settings: Settings, experiment_id: str, run_id: str) -> str:
    """Where a person opens the run in the MLflow UI."""
    base = settings.mlflow.tracking_uri
    if not base.startswith(("http://", "https://")):
        base = f"http://127.0.0.1:{settings.mlflow.port}"
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def summary_markdown(
    trained: TrainedModel, report: dict[str, Any], registered: RegisteredModel
) -> str:
    """The Prefect artifact: holdout metrics vs baseline, candidates, registry outcome."""
    names = ("roc_auc", "pr_auc", "mcc", "f1", "precision", "recall", "brier", "log_loss")
    model, baseline = report["model"], report["baseline"]
    lines = [
        f"# Training — {trained.classifier}, registered as version {registered.version}",
        "",
        f"[MLflow run]({registered.run_url}) · alias `challenger`"
        + (" and `champion` (first model)" if registered.promoted else ""),
        "",
        f"Holdout: {model['n']:,} incidents, observed arrest rate {model['positive_rate']:.3f}, "
        f"mean predicted {model['mean_predicted']:.3f}, threshold {report['threshold']:.3f}.",
        "",
        "| metric | model | prior-rate baseline |",
        "|---|---:|---:|",
    ]
    lines += [f"| {n} | {_fmt(model[n])} | {_fmt(baseline[n])} |" for n in names]
    lines += ["", "| candidate | validation PR-AUC | ROC-AUC | fit s | 1-row ms |"]
    lines += ["|---|---:|---:|---:|---:|"]
    lines += [
        f"| {c.classifier} | {c.pr_auc:.4f} | {c.roc_auc:.4f} | {c.fit_seconds:.1f} "
        f"| {c.one_row_ms:.2f} |"
        for c in trained.candidates.values()
    ]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    """A metric for a table; undefined shows as a dash."""
    return "–" if value is None else f"{value:.4f}"


@step
def publish_training_summary(
    trained: TrainedModel, report: dict[str, Any], registered: RegisteredModel
) -> None:
    """Publish the metrics table and the MLflow link as a Prefect markdown artifact."""
    create_markdown_artifact(
        key="training-summary",
        markdown=summary_markdown(trained, report, registered),
        description="Holdout metrics and registry outcome",
    )
