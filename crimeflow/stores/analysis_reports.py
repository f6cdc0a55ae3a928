"""The analyst's monthly reports in the lake: one HTML page and its numbers per month.

Layout (keys relative to `Settings.lake_url`):

    reports/analysis/<YYYY-MM>/report.html    the self-contained report (plots inline)
    reports/analysis/<YYYY-MM>/analysis.json  every number the page shows, plus generated_at
    reports/analysis/index.json               {month: generated_at}, the months that have one

Each file is written atomically (the lake's temporary-key-then-rename), the index last, so it
never lists a month whose files are missing. Re-running a month replaces its report. "Latest"
is the newest month with a report, not the newest run: re-rendering an old month (a backfill)
does not hide the current one.
"""

from __future__ import annotations

from typing import Any

from crimeflow.contract.months import check_month
from crimeflow.stores.lake import Lake

ANALYSIS_PREFIX = "reports/analysis"
INDEX_KEY = f"{ANALYSIS_PREFIX}/index.json"
HTML_FILE = "report.html"
JSON_FILE = "analysis.json"


def html_key(month: str) -> str:
    """The lake key of a month's HTML report."""
    return f"{ANALYSIS_PREFIX}/{check_month(month)}/{HTML_FILE}"


def json_key(month: str) -> str:
    """The lake key of a month's numbers."""
    return f"{ANALYSIS_PREFIX}/{check_month(month)}/{JSON_FILE}"


class AnalysisReports:
    """Write and read the analyst reports of a lake."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def save(self, month: str, page: str, numbers: dict[str, Any], generated_at: str) -> str:
        """Store a month's page and numbers, then list it in the index; the page's URL."""
        self.lake.write_json(json_key(month), {**numbers, "generated_at": generated_at})
        self.lake.write_bytes(html_key(month), page.encode("utf-8"))
        index = {**self.index(), month: generated_at}
        self.lake.write_json(INDEX_KEY, dict(sorted(index.items())))
        return self.lake.url_for(html_key(month))

    def index(self) -> dict[str, str]:
        """{month: generated_at} of every stored report (empty before the first)."""
        stored = self.lake.read_json(INDEX_KEY)
        return dict(stored) if isinstance(stored, dict) else {}

    def latest_month(self) -> str | None:
        """The newest month that has a report, or None."""
        months = sorted(self.index())
        return months[-1] if months else None

    def html(self, month: str) -> bytes | None:
        """A month's HTML page, or None."""
        return self.lake.read_bytes(html_key(month))

    def numbers(self, month: str) -> dict[str, Any] | None:
        """A month's numbers, or None."""
        stored = self.lake.read_json(json_key(month))
        return stored if isinstance(stored, dict) else None
