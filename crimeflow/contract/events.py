"""crimeflow's Prefect custom events: names, the model resource, and how they are emitted.

Automations match on `event` and `prefect.resource.id`; deployment triggers template the payload
into flow parameters. Templates render to strings unless marked `__prefect_kind: json`, so every
payload value a trigger passes on is a plain string or number here; lists are also given joined.
"""

from __future__ import annotations

from typing import Any

DRIFT_DETECTED = "crimeflow.drift.detected"
DRIFT_CHECKED = "crimeflow.drift.checked"
MODEL_PROMOTED = "crimeflow.model.promoted"
MODEL_REJECTED = "crimeflow.model.rejected"
MODEL_ROLLED_BACK = "crimeflow.model.rolled-back"
PERFORMANCE_DEGRADED = "crimeflow.performance.degraded"


def model_resource(model_name: str) -> dict[str, str]:
    """The resource every crimeflow model event is about: `crimeflow.model.<name>`."""
    return {
        "prefect.resource.id": f"crimeflow.model.{model_name}",
        "prefect.resource.name": model_name,
    }


def version_resource(model_name: str, version: str | None) -> list[dict[str, str]]:
    """The related model version, when there is one."""
    if version is None:
        return []
    return [
        {
            "prefect.resource.id": f"crimeflow.model-version.{model_name}.{version}",
            "prefect.resource.role": "model-version",
            "prefect.resource.name": f"{model_name} v{version}",
        }
    ]


def emit(event: str, model_name: str, version: str | None, payload: dict[str, Any]) -> Any:
    """Emit one crimeflow event through Prefect's events client (the configured API)."""
    from prefect.events import emit_event

    return emit_event(
        event=event,
        resource=model_resource(model_name),
        related=version_resource(model_name, version),
        payload=payload,
    )
