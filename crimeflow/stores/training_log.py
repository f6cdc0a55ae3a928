"""A training run in MLflow: params, metrics, lineage, plots, the reference sample and the
model, registered as the `challenger` (and the first `champion` when asked)."""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Metric
from mlflow.models import infer_signature

from crimeflow.contract.links import Links
from crimeflow.contract.schema import LABEL
from crimeflow.contract.settings import Settings
from crimeflow.domain.audit_report import AUDIT_DIR, MAP_ARTIFACT, HoldoutAudit, audit_metrics
from crimeflow.domain.features import MODEL_INPUT_COLUMNS
from crimeflow.domain.model import SKOPS_TRUSTED_TYPES, TrainedModel
from crimeflow.domain.training_run import (
    RegisteredModel,
    TrainingWindow,
    evaluation_figures,
    flow_run_tags,
    reference_sample,
    run_metrics,
    run_params,
    span,
    version_tags,
)
from crimeflow.stores.registry import (
    CHALLENGER,
    ensure_experiment,
    mlflow_client,
    promote_if_no_champion,
    record_content_hash,
    set_alias,
)


@contextmanager
def quiet_mlflow_hints() -> Iterator[None]:
    """Silence two MLflow hints that do not apply here and bury real warnings in logs."""
    with warnings.catch_warnings():
        # Integer columns: the API scores with our loader, which takes nullable Int64 as is.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        # A lake path reads as two equivalent local dataset sources.
        warnings.filterwarnings("ignore", message="The specified dataset source can be")
        yield


def _dataset(frame: pd.DataFrame, name: str, lineage: dict[str, Any]) -> Any:
    """An `mlflow.data` dataset for a slice of the window, sourced from the lake."""
    return mlflow.data.from_pandas(
        frame, source=f"{lineage['lake_url']}/{lineage['zone']}", name=name, targets=LABEL
    )


def log_training_run(
    settings: Settings,
    window: TrainingWindow,
    splits: dict[str, pd.DataFrame],
    trained: TrainedModel,
    report: dict[str, Any],
    promote_if_none: bool,
    flow_run_id: str | None = None,
) -> RegisteredModel:
    """Log params, metrics, lineage, plots, the reference sample and the model; register it.

    `flow_run_id` is the Prefect flow run training it: the run and the version link back to it.
    """
    client = mlflow_client(settings)
    links = Links.from_settings(settings)
    provenance = flow_run_tags(links, flow_run_id)
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
        quiet_mlflow_hints(),
        mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{window.months[-1]}") as run,
    ):
        signature = infer_signature(example, trained.estimator.predict_proba(example))
        mlflow.log_params(run_params(trained, splits))
        mlflow.set_tags(provenance)
        mlflow.log_metrics(run_metrics(trained, report))
        for context, frame in splits.items():
            mlflow.log_input(_dataset(frame, f"{context}-{span(frame)}", window.lineage), context)
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
    # Before any alias points at it: every loader can verify the files from the start.
    record_content_hash(client, settings, version)
    set_alias(client, settings.model_name, CHALLENGER, version)
    tags = version_tags(trained, report, window, splits) | provenance
    for key, value in tags.items():
        client.set_model_version_tag(settings.model_name, version, key, value)
    promoted = promote_if_none and promote_if_no_champion(client, settings.model_name, version)
    return RegisteredModel(
        run.info.run_id,
        version,
        f"models:/{settings.model_name}/{version}",
        promoted,
        run_url=links.mlflow_run(experiment_id, run.info.run_id),
        version_url=links.model_version(settings.model_name, version),
    )


def log_audit(settings: Settings, run_id: str, audit: HoldoutAudit) -> None:
    """Log the holdout audit into the training run: one CSV per table, the map, worst values."""
    client = mlflow_client(settings)
    for name, table in audit.tables.items():
        client.log_text(run_id, table.to_csv(index=False), f"{AUDIT_DIR}/{name}.csv")
    if audit.map_figure is not None:
        client.log_figure(run_id, audit.map_figure, MAP_ARTIFACT)
    metrics = audit_metrics(audit)
    if metrics:
        stamp = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, v, stamp, 0) for k, v in metrics.items()])
