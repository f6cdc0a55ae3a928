"""The benchmark's baseline: the same champion served the way typical MLflow-based services do.

The pattern (seen in many course and team projects, e.g. CEIA-22Co2025-Grupo4/MLOPS
`src/api/app.py`): FastAPI; the model loaded once at startup with
`mlflow.pyfunc.load_model("models:/<name>@champion")`; a pydantic body; per request a pandas
DataFrame built from the body and `model.predict(df)`; a plain `def` handler, which FastAPI
runs in its thread pool; no prediction log. Nothing here is slowed down on purpose: it is the
typical code, run under uvicorn with one worker (`bench_api.py` starts it):

    MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true CRIMEFLOW_HOME=... \\
        python -m uvicorn tests.benchmarks.baseline_server:create_app --factory --port 8001

MLflow 3.17 refuses to load any model without MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true; the
model was logged with `pyfunc_predict_fn="predict_proba"`, so `predict` returns probabilities,
and the pyfunc wrapper enforces the logged signature on every call (as in those services).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from crimeflow.contract.settings import Settings, get_settings

MAX_BATCH_ROWS = 10_000


class Incident(BaseModel):
    """The model's input fields by SODA name; pydantic coerces the feed's strings to these types.

    Like the typical services, it declares exactly the model signature's columns (other fields
    of the body, such as `id`, are ignored).
    """

    case_number: str | None = None
    date: datetime
    block: str | None = None
    iucr: str
    primary_type: str
    description: str | None = None
    location_description: str | None = None
    domestic: bool | None = None
    beat: str | None = None
    district: str | None = None
    ward: int | None = None
    community_area: int | None = None
    fbi_code: str | None = None
    x_coordinate: float | None = None
    y_coordinate: float | None = None
    year: int | None = None
    latitude: float | None = None
    longitude: float | None = None


class BatchRequest(BaseModel):
    """A batch of incidents."""

    instances: list[Incident] = Field(..., max_length=MAX_BATCH_ROWS)


class Prediction(BaseModel):
    """One prediction."""

    prediction: bool
    probability: float
    model_version: str
    timestamp: str


class BatchPrediction(BaseModel):
    """The predictions of a batch."""

    predictions: list[dict[str, Any]]
    count: int
    model_version: str
    timestamp: str


def _arrest_probability(output: Any) -> np.ndarray:
    """The arrest column of a pyfunc output ((n, 2) probabilities or n scores)."""
    values = np.asarray(output, dtype="float64")
    return values[:, 1] if values.ndim == 2 else values


def create_app(settings: Settings | None = None) -> FastAPI:
    """The baseline FastAPI app; the champion is loaded in the lifespan."""
    settings = settings or get_settings()
    state: dict[str, Any] = {"model": None, "version": None}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        import mlflow

        mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
        alias = "champion"
        state["model"] = mlflow.pyfunc.load_model(f"models:/{settings.model_name}@{alias}")
        client = mlflow.tracking.MlflowClient()
        state["version"] = client.get_model_version_by_alias(settings.model_name, alias).version
        yield

    app = FastAPI(title="baseline arrest prediction", lifespan=lifespan)

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Whether the model is loaded."""
        return {"status": "ok", "model_loaded": state["model"] is not None}

    @app.post("/predict", response_model=Prediction)
    def predict(incident: Incident) -> Prediction:
        """Score one incident."""
        if state["model"] is None:
            raise HTTPException(status_code=503, detail="model not loaded")
        df = pd.DataFrame([incident.model_dump()])
        probability = float(_arrest_probability(state["model"].predict(df))[0])
        return Prediction(
            prediction=probability >= 0.5,
            probability=round(probability, 4),
            model_version=str(state["version"]),
            timestamp=datetime.now(UTC).isoformat(),
        )

    @app.post("/predict/batch", response_model=BatchPrediction)
    def predict_batch(request: BatchRequest) -> BatchPrediction:
        """Score a batch of incidents."""
        if state["model"] is None:
            raise HTTPException(status_code=503, detail="model not loaded")
        df = pd.DataFrame([incident.model_dump() for incident in request.instances])
        probabilities = _arrest_probability(state["model"].predict(df))
        results = [
            {"prediction": bool(p >= 0.5), "probability": round(float(p), 4)} for p in probabilities
        ]
        return BatchPrediction(
            predictions=results,
            count=len(results),
            model_version=str(state["version"]),
            timestamp=datetime.now(UTC).isoformat(),
        )

    return app
