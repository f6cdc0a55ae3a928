"""The Socrata client: month windows, SoQL filters and a paged, retrying SODA reader.

The pure helpers decide *what* to pull (a month, or the rows updated since a watermark);
`SodaSource` reads it page by page with sodapy. The Prefect tasks around it live in
`tasks/extract.py`, which logs progress to the run so the UI shows the pull moving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import pandas as pd
import requests
from sodapy import Socrata

from crimeflow.contract.months import month_bounds
from crimeflow.contract.schema import chicago
from crimeflow.contract.settings import SocrataSettings

_log = logging.getLogger(__name__)

# A server asking for a longer pause than this is treated as asking for this much.
MAX_RETRY_AFTER_S = 600.0
_RETRYABLE_ERRORS = (
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
)

Logger = logging.Logger | logging.LoggerAdapter[Any]
ProgressCallback = Callable[[int, int], None]


class SodaError(RuntimeError):
    """A SODA read failed for good (query rejected, or retries exhausted)."""


# --- month arithmetic and SoQL windows (pure) -----------------------------------------------


def soql_timestamp(moment: datetime) -> str:
    """A quoted SoQL floating-timestamp literal; aware datetimes are converted to Chicago time."""
    if moment.tzinfo is not None:
        # The dataset's timestamps are naive Chicago local time.
        moment = moment.astimezone(chicago()).replace(tzinfo=None)
    return f"'{moment.isoformat(timespec='milliseconds')}'"


def crimes_in_month_where(month: str) -> str:
    """SoQL `$where` selecting the crimes that occurred in a 'YYYY-MM' month."""
    start, end = month_bounds(month)
    return f"date >= {soql_timestamp(start)} AND date < {soql_timestamp(end)}"


def updated_since_where(watermark: datetime, start: datetime, end: datetime) -> str:
    """SoQL `$where` for rows updated after `watermark` whose `date` lies in [start, end).

    Late arrests update old rows; the date window keeps the re-pull to months the lake holds.
    """
    return (
        f"updated_on > {soql_timestamp(watermark)} "
        f"AND date >= {soql_timestamp(start)} AND date < {soql_timestamp(end)}"
    )


def retry_delay(attempt: int, backoff_s: float, retry_after: str | None = None) -> float:
    """Seconds to wait before retry number `attempt` (0-based): Retry-After, else exponential."""
    if retry_after:
        seconds: float | None
        try:
            seconds = float(retry_after)
        except ValueError:
            try:
                when = parsedate_to_datetime(retry_after)
                seconds = (when - datetime.now(UTC)).total_seconds()
            except (TypeError, ValueError):
                seconds = None  # unparseable header: fall back to our own backoff
        if seconds is not None:
            return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
    return backoff_s * (2**attempt)


def split_socrata_url(url: str) -> tuple[str, str]:
    """('https' | 'http', 'host[:port]') of a SODA base URL; a bare host means https."""
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError(f"socrata_url must be http(s)://host[:port], got {url!r}")
    if parts.path not in {"", "/"} or parts.query:
        raise ValueError(f"socrata_url must not carry a path or query, got {url!r}")
    return parts.scheme, parts.netloc


# --- the SODA reader --------------------------------------------------------------------------


def _server_message(response: requests.Response | None) -> str:
    """The `message` of a Socrata JSON error body, else the start of the body."""
    if response is None:
        return ""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return response.text[:300]


class SodaSource:
    """Reads SODA datasets page by page with sodapy, retrying transient failures per page."""

    def __init__(self, settings: SocrataSettings, logger: Logger | None = None) -> None:
        self.scheme, self.domain = split_socrata_url(settings.url)
        token = settings.app_token
        self._app_token = token.get_secret_value() if token is not None else None
        self.page_size = settings.page_size
        self.timeout_s = settings.timeout_s
        self.max_retries = settings.max_retries
        self.backoff_s = settings.backoff_s
        self.logger: Logger = logger if logger is not None else _log

    def _client(self) -> Socrata:
        """A sodapy client; plain http needs sodapy's session-adapter hook (https is default)."""
        adapter = None
        if self.scheme == "http":
            adapter = {"prefix": "http://", "adapter": requests.adapters.HTTPAdapter()}
        return Socrata(
            self.domain, self._app_token, session_adapter=adapter, timeout=self.timeout_s
        )

    def resource_url(self, dataset: str, params: dict[str, Any], content_type: str = "json") -> str:
        """The request URL for error messages (the app token travels in a header, never here)."""
        query = urlencode({f"${name}": value for name, value in params.items()})
        return f"{self.scheme}://{self.domain}/resource/{dataset}.{content_type}?{query}"

    def _page(
        self, client: Socrata, dataset: str, params: dict[str, Any], content_type: str = "json"
    ) -> Any:
        """One page, retried with backoff on timeouts, connection errors, 5xx and 429.

        `json` pages must be a JSON array of rows, `geojson` ones a FeatureCollection object.
        """
        expected = list if content_type == "json" else dict
        attempt = 0
        while True:
            status: int | None = None
            retry_after: str | None = None
            try:
                rows = client.get(dataset, content_type=content_type, **params)
            except requests.exceptions.HTTPError as error:
                response = error.response
                status = response.status_code if response is not None else None
                if status is None or not (status == 429 or status >= 500):
                    raise SodaError(
                        f"SODA rejected the request for dataset {dataset} at offset "
                        f"{params['offset']}: HTTP {status}: {_server_message(response)} "
                        f"({self.resource_url(dataset, params, content_type)})"
                    ) from None
                retry_after = response.headers.get("Retry-After") if response is not None else None
                problem = f"HTTP {status}: {_server_message(response)}"
            except _RETRYABLE_ERRORS as error:
                problem = f"{type(error).__name__}"
            else:
                if not isinstance(rows, expected):
                    raise SodaError(
                        f"SODA answered dataset {dataset} at offset {params['offset']} with "
                        f"{type(rows).__name__}, not a {content_type.upper()} "
                        f"{'array' if expected is list else 'object'} "
                        f"({self.resource_url(dataset, params, content_type)})"
                    )
                return rows
            if attempt >= self.max_retries:
                raise SodaError(
                    f"SODA read of dataset {dataset} failed at offset {params['offset']} after "
                    f"{attempt + 1} attempts; last: {problem} "
                    f"({self.resource_url(dataset, params, content_type)})"
                )
            delay = retry_delay(attempt, self.backoff_s, retry_after)
            self.logger.warning(
                "SODA %s offset %d: %s; retry %d/%d in %.1fs",
                dataset,
                params["offset"],
                problem,
                attempt + 1,
                self.max_retries,
                delay,
            )
            time.sleep(delay)
            attempt += 1

    def fetch(
        self,
        dataset: str,
        where: str | None,
        select: Sequence[str],
        on_progress: ProgressCallback | None = None,
    ) -> pd.DataFrame:
        """All rows of `dataset` matching `where`, as received (strings), columns = `select`."""
        columns = list(select)
        rows: list[dict[str, Any]] = []
        pages = 0
        with self._client() as client:
            while True:
                params: dict[str, Any] = {
                    "select": ",".join(columns),
                    "order": ":id",  # a stable order is what makes $offset paging exact
                    "limit": self.page_size,
                    "offset": pages * self.page_size,
                }
                if where:
                    params["where"] = where
                page = self._page(client, dataset, params)
                rows.extend(page)
                pages += 1
                if on_progress is not None:
                    on_progress(pages, len(rows))
                if len(page) < self.page_size:
                    break
        if not rows:
            return pd.DataFrame({name: pd.Series(dtype=object) for name in columns})
        return pd.DataFrame.from_records(rows, columns=columns)

    def fetch_geojson(self, dataset: str) -> dict[str, Any]:
        """A whole (small) dataset as a GeoJSON FeatureCollection: the boundary layers."""
        # Boundary sets hold tens of features: one page of `page_size` covers them; a full page
        # would mean the id points at something else, so that is refused rather than truncated.
        params: dict[str, Any] = {"limit": self.page_size, "offset": 0}
        with self._client() as client:
            collection = self._page(client, dataset, params, content_type="geojson")
        features = collection.get("features")
        if not isinstance(features, list) or not features:
            raise SodaError(
                f"SODA dataset {dataset} answered GeoJSON without features "
                f"({self.resource_url(dataset, params, 'geojson')})"
            )
        if len(features) >= self.page_size:
            raise SodaError(f"SODA dataset {dataset} has a full page of features: not boundaries")
        return collection
