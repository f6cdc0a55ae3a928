"""Reports over HTTP: drift reports (list, one, latest), the latest performance per window
(GET /performance) and the analyst's monthly reports."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from litestar import Controller, MediaType, Response, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import Parameter

from api.auth import SCOPE_OPT, bearer
from crimeflow.contract.links import Links
from crimeflow.contract.months import check_month
from crimeflow.stores.analysis_reports import AnalysisReports
from crimeflow.stores.lake import Lake
from monitoring.report_store import ReportStore


def provide_report_store(state: State) -> ReportStore:
    """The report store of the configured lake (cheap: no I/O until a read)."""
    settings = state.settings
    return ReportStore(Lake.from_settings(settings), settings.evidently.workspace)


class ReportsScope(Controller):
    """What every report route shares: the OpenAPI tag and the `reports` scope."""

    tags: ClassVar[list[str]] = ["reports"]  # type: ignore[misc]
    opt: ClassVar[dict[str, Any]] = {SCOPE_OPT: "reports"}  # type: ignore[misc]
    security: ClassVar[list[Any]] = bearer("reports")  # type: ignore[misc]


class ReportsController(ReportsScope):
    """Drift reports written by the drift monitor."""

    path = "/reports"
    dependencies: ClassVar[dict[str, Provide]] = {  # type: ignore[misc]
        "store": Provide(provide_report_store, sync_to_thread=True)
    }

    @get("/", sync_to_thread=True, summary="Drift checks, newest first")
    def list_reports(self, store: ReportStore, state: State) -> list[dict[str, Any]]:
        """Every drift check: id, created_at, window, model version, verdict, drift share, and
        `url`, its report's page at the API's public URL."""
        links = Links.from_settings(state.settings)
        # The stored index has no URLs (the public URL may change): add them per answer.
        return [{**entry, "url": links.report(entry["id"])} for entry in store.list()]

    @get("/latest", sync_to_thread=True, media_type=MediaType.HTML, summary="Newest report")
    def latest_report(self, store: ReportStore) -> Response[bytes]:
        """The newest drift report as HTML (404 before the first check)."""
        latest = store.latest()
        if latest is None:
            raise NotFoundException("no drift report yet: run `crimeflow monitor`")
        return self._html(store, latest["id"])

    @get("/{report_id:str}", sync_to_thread=True, media_type=MediaType.HTML, summary="One report")
    def report(self, store: ReportStore, report_id: str) -> Response[bytes]:
        """One drift report's Evidently HTML."""
        return self._html(store, report_id)

    @staticmethod
    def _html(store: ReportStore, report_id: str) -> Response[bytes]:
        """The report's HTML, or a 404 naming the id."""
        page = store.html(report_id)
        if page is None:
            raise NotFoundException(f"no drift report {report_id!r}")
        return Response(page, media_type=MediaType.HTML)


def provide_analysis_reports(state: State) -> AnalysisReports:
    """The analyst reports of the configured lake (no I/O until a read)."""
    return AnalysisReports(Lake.from_settings(state.settings))


NO_ANALYSIS = "no analyst report yet: run `crimeflow analysis` (or the monthly-analysis flow)"


class AnalysisController(ReportsScope):
    """The analyst's monthly reports written by the monthly-analysis flow."""

    path = "/analysis"
    dependencies: ClassVar[dict[str, Provide]] = {  # type: ignore[misc]
        "reports": Provide(provide_analysis_reports, sync_to_thread=True)
    }

    @get("/latest", sync_to_thread=True, media_type=MediaType.HTML, summary="Newest analysis")
    def latest_page(self, reports: AnalysisReports) -> Response[bytes]:
        """The newest month's analyst report as HTML (404 before the first)."""
        return self._page(reports, self._latest(reports))

    @get("/latest.json", sync_to_thread=True, summary="Newest analysis, numbers")
    def latest_numbers(self, reports: AnalysisReports) -> dict[str, Any]:
        """Every number of the newest month's analyst report (rates, tests, trend) as JSON."""
        month = self._latest(reports)
        numbers = reports.numbers(month)
        if numbers is None:
            raise NotFoundException(f"no analyst report numbers for {month}")
        return numbers

    @get("/{month:str}", sync_to_thread=True, media_type=MediaType.HTML, summary="One month")
    def month_page(self, reports: AnalysisReports, month: str) -> Response[bytes]:
        """One month's analyst report as HTML (`month` as YYYY-MM)."""
        try:
            check_month(month)
        except ValueError as error:
            raise ValidationException(f"month: {error}") from None
        return self._page(reports, month)

    @staticmethod
    def _latest(reports: AnalysisReports) -> str:
        """The newest reported month, or a 404 saying how to make one."""
        month = reports.latest_month()
        if month is None:
            raise NotFoundException(NO_ANALYSIS)
        return month

    @staticmethod
    def _page(reports: AnalysisReports, month: str) -> Response[bytes]:
        """A month's page, or a 404 naming the month."""
        page = reports.html(month)
        if page is None:
            raise NotFoundException(f"no analyst report for {month}")
        return Response(page, media_type=MediaType.HTML)


# How many of the newest checks GET /performance looks through for one with a performance
# section (checks stored before the section existed have none).
PERFORMANCE_LOOKBACK_CHECKS = 20


def latest_performance(store: ReportStore) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The newest check that assessed performance: (its index entry, its performance section)."""
    for entry in store.list()[:PERFORMANCE_LOOKBACK_CHECKS]:
        result = store.result(entry["id"])
        if result is not None and result.outcome_performance is not None:
            return entry, result.outcome_performance
    return None


class PerformanceController(ReportsScope):
    """Realized and estimated performance per window, from the newest monitor check."""

    path = "/performance"
    dependencies: ClassVar[dict[str, Provide]] = {  # type: ignore[misc]
        "store": Provide(provide_report_store, sync_to_thread=True)
    }

    @get("/", sync_to_thread=True, summary="Latest performance, by window")
    def performance(
        self,
        store: ReportStore,
        state: State,
        window: Annotated[
            str | None,
            Parameter(
                pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$",
                description="One incident month, YYYY-MM; default every window.",
            ),
        ] = None,
    ) -> dict[str, Any]:
        """The champion's holdout baseline and, per incident month, realized (matured outcomes),
        estimated (CBPE) and feedback figures with the verdict; `?window=YYYY-MM` for one."""
        found = latest_performance(store)
        if found is None:
            raise NotFoundException("no performance assessed yet: run `crimeflow monitor`")
        entry, section = found
        answer = {
            "report_id": entry["id"],
            "report_url": Links.from_settings(state.settings).report(entry["id"]),
            "checked_at": entry.get("created_at"),
            **section,
        }
        if window is None:
            return answer
        chosen = [w for w in section.get("windows", []) if w.get("window") == window]
        if not chosen:
            known = ", ".join(w.get("window", "?") for w in section.get("windows", [])) or "none"
            raise NotFoundException(f"no performance for window {window!r}; known: {known}")
        return {**answer, "windows": chosen}
