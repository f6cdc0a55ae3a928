"""Every link crimeflow writes for a person to open, built from the three public URLs.

Artifacts, event payloads, alert texts, MLflow tags and the API's answers all say where to find
a drift report (the API), an MLflow run or model version (the MLflow UI) and a Prefect flow run
(the Prefect UI). They build those links here, from `CRIMEFLOW_API_PUBLIC_URL`,
`CRIMEFLOW_MLFLOW_PUBLIC_URL` and `CRIMEFLOW_PREFECT_PUBLIC_URL` (each derived from where this
machine reaches the service when unset), never from a bind address or an in-cluster name.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from crimeflow.contract.settings import Settings


@dataclass(frozen=True)
class Links:
    """The three public base URLs and the pages below them; pure string building."""

    api: str
    mlflow: str
    prefect: str

    def __post_init__(self) -> None:
        # A trailing slash would give `//reports`; settings strip it, hand-made Links too.
        for name in ("api", "mlflow", "prefect"):
            object.__setattr__(self, name, getattr(self, name).rstrip("/"))

    @classmethod
    def from_settings(cls, settings: Settings) -> Links:
        """The links of the configured public URLs."""
        return cls(
            api=settings.api.public_url,
            mlflow=settings.mlflow.public_url,
            prefect=settings.prefect.public_url,
        )

    def reports(self) -> str:
        """The API's list of drift checks."""
        return f"{self.api}/reports"

    def report(self, report_id: str) -> str:
        """One drift report's HTML page, served by the API."""
        return f"{self.api}/reports/{report_id}"

    def analysis(self, month: str) -> str:
        """One month's analyst report, served by the API."""
        return f"{self.api}/analysis/{month}"

    def mlflow_run(self, experiment_id: str, run_id: str) -> str:
        """An MLflow run's page in the MLflow UI."""
        return f"{self.mlflow}/#/experiments/{experiment_id}/runs/{run_id}"

    def mlflow_artifact(self, run_id: str, path: str) -> str:
        """The raw file of a run's artifact, as the MLflow UI serves it (an image embeds)."""
        return f"{self.mlflow}/get-artifact?path={quote(path, safe='')}&run_uuid={run_id}"

    def model(self, model_name: str) -> str:
        """A registered model's page in the MLflow UI (all its versions and aliases)."""
        return f"{self.mlflow}/#/models/{quote(model_name, safe='')}"

    def model_version(self, model_name: str, version: str) -> str:
        """A registered model version's page in the MLflow UI."""
        return f"{self.mlflow}/#/models/{quote(model_name, safe='')}/versions/{version}"

    def flow_run(self, flow_run_id: str) -> str:
        """A flow run's page in the Prefect UI.

        The id is not escaped, so an automation's Jinja placeholder (`{{ flow_run.id }}`) can
        stand in for it and the Prefect server fills it in when it renders the alert.
        """
        return f"{self.prefect}/runs/flow-run/{flow_run_id}"

    def optional_run(self, experiment_id: str | None, run_id: str | None) -> str | None:
        """`mlflow_run`, or None when the run or its experiment is unknown."""
        return self.mlflow_run(experiment_id, run_id) if experiment_id and run_id else None

    def optional_flow_run(self, flow_run_id: str | None) -> str | None:
        """`flow_run`, or None outside a flow run (a function called by hand, a test)."""
        return self.flow_run(flow_run_id) if flow_run_id else None
