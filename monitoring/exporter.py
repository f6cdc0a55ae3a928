"""The loop exporter: Prometheus metrics of the batch side (ETL, drift, gate, retrains).

A custom collector reads durable state on every scrape: the lake's ETL state and run manifests,
the drift report store's index, the MLflow registry and the newest `retrain` flow run in
Prefect. Nothing is kept in memory but a cache of run manifests (written once, never changed),
so a restarted exporter reports exactly what the one before it did. Why not a Pushgateway: the
batch jobs already leave their results in the lake and the registry, so pushing them again adds
a second copy that can disagree; a push lost while the gateway is down is never resent; and a
pushed series stays forever after its job is gone. Reading the state answers all three.

Each source is read in its own thread with a deadline. A source that fails or does not answer
in time adds one to `crimeflow_exporter_scrape_errors_total{source}` and is left out of that
scrape; the other sources still export. A source still busy from an earlier scrape (a hung
server) is not asked again until it answers. `serve` runs it as an HTTP server: that is
`crimeflow exporter`. Metric names and meanings: docs/monitoring-and-retraining.md ("Metrics").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crimeflow.contract.settings import Settings
from crimeflow.domain.etl_run import MANIFESTS_FOLDER
from crimeflow.domain.retrain_run import (
    GATE_DECIDED_AT_TAG,
    GATE_FAILED,
    GATE_PASSED,
    GATE_TAG,
    RETRAIN_SECONDS_TAG,
)
from crimeflow.stores.lake import STATE_KEY, Lake
from monitoring.report_store import ReportStore

logger = logging.getLogger(__name__)

Reader = Callable[[], list[Metric]]
SOURCES = ("etl", "drift", "registry", "prefect")
# Manifest fields of a month -> the zone label of crimeflow_etl_rows.
ZONES = {"raw": "raw", "clean": "clean", "quarantined": "quarantine"}
FAILED_STATES = {"FAILED", "CRASHED"}
FINISHED_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
# A scrape answers within Prometheus' default 10 s scrape timeout even if a source hangs.
SOURCE_TIMEOUT_S = 8.0


def _epoch(text: str | None) -> float | None:
    """Unix seconds of an ISO 8601 time (naive: UTC); None when absent or unreadable."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _gauge(name: str, documentation: str, value: float | None = None) -> GaugeMetricFamily:
    """An unlabelled gauge family (without a sample when `value` is None)."""
    family = GaugeMetricFamily(name, documentation)
    if value is not None:
        family.add_metric([], value)
    return family


# --- ETL: the lake's state and run manifests ----------------------------------------------------


class EtlReader:
    """The newest successful ETL run and the rows per month and zone of each month's newest run."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        # Manifests are written once under their run's id and never changed: read each once.
        self._manifests: dict[str, dict[str, Any]] = {}

    def __call__(self) -> list[Metric]:
        """The ETL families."""
        state = self.lake.read_json(STATE_KEY) or {}
        last = _gauge(
            "crimeflow_etl_last_success_timestamp_seconds",
            "Unix time of the newest successful ETL run (absent before the first one).",
            _epoch(state.get("last_success_at")),
        )
        rows = GaugeMetricFamily(
            "crimeflow_etl_rows",
            "Rows of each month's partitions as its newest ETL run wrote them, by zone.",
            labels=["month", "zone"],
        )
        for month, counts in sorted(self.newest_per_month().items()):
            for field, zone in ZONES.items():
                if isinstance(counts.get(field), int | float):
                    rows.add_metric([month, zone], float(counts[field]))
        return [last, rows]

    def newest_per_month(self) -> dict[str, dict[str, Any]]:
        """Each month's counts from the newest manifest that wrote it."""
        newest: dict[str, tuple[str, dict[str, Any]]] = {}
        for key in self.lake.keys(MANIFESTS_FOLDER, "*.json"):
            manifest = self._manifest(key)
            finished = str(manifest.get("finished_at") or "")
            for counts in manifest.get("months") or []:
                month = counts.get("month") if isinstance(counts, dict) else None
                if month and (month not in newest or finished >= newest[month][0]):
                    newest[month] = (finished, counts)
        return {month: counts for month, (_, counts) in newest.items()}

    def _manifest(self, key: str) -> dict[str, Any]:
        """A run manifest, from the cache after the first read."""
        if key not in self._manifests:
            data = self.lake.read_json(key)
            if not isinstance(data, dict):
                return {}  # vanished or foreign: not cached, read again next time
            self._manifests[key] = data
        return self._manifests[key]


# --- drift: the report store's newest check -----------------------------------------------------


def drift_metrics(store: ReportStore) -> list[Metric]:
    """The newest drift check: when, its share, verdict and drifted-column count."""
    latest = store.latest()
    if latest is None:
        return []
    share = latest.get("drift_share")
    return [
        _gauge(
            "crimeflow_drift_check_timestamp_seconds",
            "Unix time of the newest drift check.",
            _epoch(latest.get("created_at")),
        ),
        _gauge(
            "crimeflow_drift_share",
            "Share of drifted columns in the newest drift check (absent with too little data).",
            None if share is None else float(share),
        ),
        _gauge(
            "crimeflow_drift_detected",
            "1 when the newest drift check found drift, else 0.",
            1.0 if latest.get("drift_detected") else 0.0,
        ),
        _gauge(
            "crimeflow_drifted_columns",
            "Columns that drifted in the newest drift check.",
            float(len(latest.get("drifted_columns") or [])),
        ),
    ]


# --- the registry: gate decisions, champion, retrain duration -----------------------------------


def registry_metrics(settings: Settings) -> list[Metric]:
    """Gate decisions by outcome, the champion and when it changed, the last retrain's length."""
    from crimeflow.stores.registry import CHAMPION, mlflow_client, version_by_alias

    name = settings.model_name
    client = mlflow_client(settings)
    versions = list(client.search_model_versions(f"name = '{name}'"))
    gate = GaugeMetricFamily(
        "crimeflow_gate_decisions",
        "Model versions the staging gate decided on, by outcome (promoted or rejected).",
        labels=["outcome"],
    )
    for outcome, tag in (("promoted", GATE_PASSED), ("rejected", GATE_FAILED)):
        gate.add_metric([outcome], float(sum(v.tags.get(GATE_TAG) == tag for v in versions)))
    champion = version_by_alias(client, name, CHAMPION)
    version = GaugeMetricFamily(
        "crimeflow_champion_version", "Registry version of the champion.", labels=["model"]
    )
    changed = GaugeMetricFamily(
        "crimeflow_champion_changed_timestamp_seconds",
        "Unix time the champion was promoted.",
        labels=["model"],
    )
    if champion is not None:
        version.add_metric([name], float(champion.version))
        promoted = _epoch(champion.tags.get("promoted_at"))
        changed.add_metric([name], promoted or champion.creation_timestamp / 1000.0)
    return [gate, version, changed, _retrain_seconds(versions)]


def _retrain_seconds(versions: Iterable[Any]) -> GaugeMetricFamily:
    """Seconds of the newest retrain: the version decided last that carries its length."""
    timed = [v for v in versions if RETRAIN_SECONDS_TAG in v.tags]
    newest = max(timed, key=lambda v: v.tags.get(GATE_DECIDED_AT_TAG, ""), default=None)
    return _gauge(
        "crimeflow_retrain_duration_seconds",
        "Seconds the newest retrain took (refresh, train, staging gate).",
        None if newest is None else float(newest.tags[RETRAIN_SECONDS_TAG]),
    )


# --- Prefect: did the newest retrain fail ---------------------------------------------------------


def prefect_metrics(settings: Settings, timeout_s: float = SOURCE_TIMEOUT_S) -> list[Metric]:
    """1 when the newest finished `retrain` flow run ended Failed or Crashed, else 0."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    finished = FlowRunFilterState(
        type=FlowRunFilterStateType(any_=[StateType(s) for s in FINISHED_STATES])
    )
    with SyncPrefectClient(settings.prefect.api_url, httpx_settings={"timeout": timeout_s}) as c:
        runs = c.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["retrain"])),
            flow_run_filter=FlowRunFilter(state=finished),
            sort=FlowRunSort.END_TIME_DESC,
            limit=1,
        )
    failed = (
        bool(runs)
        and runs[0].state_type is not None
        and runs[0].state_type.value in (FAILED_STATES)
    )
    return [
        _gauge(
            "crimeflow_retrain_last_failed",
            "1 when the newest finished retrain flow run ended Failed or Crashed, else 0.",
            1.0 if failed else 0.0,
        )
    ]


# --- the collector --------------------------------------------------------------------------------


def default_readers(settings: Settings) -> dict[str, Reader]:
    """The four sources of `settings`."""
    lake = Lake.from_settings(settings)
    store = ReportStore(lake, settings.evidently.workspace or settings.home / "evidently")
    return {
        "etl": EtlReader(lake),
        "drift": lambda: drift_metrics(store),
        "registry": lambda: registry_metrics(settings),
        "prefect": lambda: prefect_metrics(settings),
    }


class LoopCollector(Collector):
    """Reads every source on each scrape; a failed source is counted, the others still export."""

    def __init__(
        self,
        readers: dict[str, Reader],
        errors: Counter,
        timeout_s: float = SOURCE_TIMEOUT_S,
    ) -> None:
        self.readers = readers
        self.errors = errors
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=len(readers), thread_name_prefix="exporter")
        self._busy: dict[str, Future[list[Metric]]] = {}
        self._lock = threading.Lock()  # two scrapes at once share the busy table
        for source in readers:
            errors.labels(source=source)  # every source has a series from the start, at 0

    def describe(self) -> list[Metric]:
        """Nothing: registering must not read the sources."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Every source's families, read now, in parallel, each within the deadline."""
        with self._lock:
            started: dict[str, Future[list[Metric]]] = {}
            for source, reader in self.readers.items():
                if source in self._busy and not self._busy[source].done():
                    self._failed(source, "still busy with an earlier scrape")
                    continue
                started[source] = self._busy[source] = self._pool.submit(reader)
        wait(started.values(), timeout=self.timeout_s)
        for source, future in started.items():
            if not future.done():
                self._failed(source, f"no answer within {self.timeout_s:g} s")
            elif future.exception() is not None:
                self._failed(source, repr(future.exception()))
            else:
                yield from future.result()

    def _failed(self, source: str, why: str) -> None:
        """Count a source that could not be read."""
        self.errors.labels(source=source).inc()
        logger.warning("exporter: source %s failed: %s", source, why)

    def close(self) -> None:
        """Stop the reader threads (a hung one is left to end on its own)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def loop_registry(
    readers: dict[str, Reader], timeout_s: float = SOURCE_TIMEOUT_S
) -> tuple[CollectorRegistry, LoopCollector]:
    """A registry with the loop collector and its scrape-error counter."""
    registry = CollectorRegistry()
    errors = Counter(
        "crimeflow_exporter_scrape_errors",
        "Scrapes in which a source (etl, drift, registry, prefect) could not be read.",
        ["source"],
        registry=None,
    )
    collector = LoopCollector(readers, errors, timeout_s)
    # The collector first: a scrape then reports the errors of that very scrape.
    registry.register(collector)
    registry.register(errors)
    return registry, collector


def serve(settings: Settings, host: str, port: int, stop: threading.Event) -> None:
    """Serve /metrics on host:port until `stop` is set."""
    from prometheus_client import start_http_server

    registry, collector = loop_registry(default_readers(settings))
    server, thread = start_http_server(port, addr=host, registry=registry)
    logger.info("loop exporter on http://%s:%d/metrics", host, port)
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        collector.close()
