"""A local stand-in for the Socrata SODA 2.x API, enough for sodapy and the monthly extract.

Serves `GET /resource/<dataset>.json` from in-memory frames (the crimes and police-stations
datasets) with `$select`, `$where` (comparisons joined by AND), `$order`, `$limit`, `$offset`;
`$$app_token` is accepted and ignored. Rows are rendered as SODA JSON does: every value a string
except booleans, nulls omitted. Anything else is answered like a Socrata query error: HTTP 400
with `{"error": true, "message": ...}`. Faults (5xx, 429, stalls) can be injected for tests.

Row identity: `:id` is the row's position in the served file (Socrata's `:id` is an internal
row identifier, not the crime `id`), so `$order=:id` pages through the file in file order.

`GET /resource/<dataset>.geojson` answers the two boundary layers (police districts, community
areas) whole: the real files when given a folder, else layers generated to cover the
generator's coordinates (`standins/boundaries.py`).
"""

from __future__ import annotations

import logging
import operator
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import msgspec
import numpy as np
import pandas as pd

from crimeflow.contract.schema import empty_canonical, to_canonical
from crimeflow.contract.settings import SocrataSettings
from crimeflow.stores.files import normalize_stations, read_incidents_file, read_stations_file

_log = logging.getLogger(__name__)

# Dataset ids default to the settings defaults so that a default client finds them.
DEFAULT_CRIMES_DATASET: str = SocrataSettings.model_fields["crimes_dataset"].default
DEFAULT_STATIONS_DATASET: str = SocrataSettings.model_fields["stations_dataset"].default
DEFAULT_DISTRICTS_DATASET: str = SocrataSettings.model_fields["districts_dataset"].default
DEFAULT_COMMUNITY_AREAS_DATASET: str = SocrataSettings.model_fields[
    "community_areas_dataset"
].default
DEFAULT_LIMIT = 1000  # Socrata's default page size when $limit is absent
ROW_ID = ":id"

Kind = Literal["text", "number", "datetime", "boolean"]
Scalar = str | float | bool

_ALLOWED_PARAMS = frozenset(
    {"$select", "$where", "$order", "$limit", "$offset", "$$app_token", "$$exclude_system_fields"}
)
_RESOURCE_PATH = re.compile(r"^/resource/(?P<dataset>[^/]+)\.(?P<format>json|geojson)$")
_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<>": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<op>>=|<=|!=|<>|=|>|<)
      | (?P<lparen>\()
      | (?P<rparen>\))
      | (?P<comma>,)
      | (?P<word>:?[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_INT64_MAX = np.iinfo(np.int64).max
_JSON_HEADERS = {"Content-Type": "application/json;charset=utf-8"}
_GEOJSON_HEADERS = {"Content-Type": "application/vnd.geo+json;charset=utf-8"}


class SoqlError(ValueError):
    """A query the stand-in cannot run; answered with HTTP 400 and this message."""


@dataclass(frozen=True)
class Comparison:
    """One `column <op> literal` term of a `$where`."""

    column: str
    op: str
    literal: Scalar


@dataclass(frozen=True)
class Query:
    """A parsed SODA request: selected columns, filter terms, sort keys and the page window."""

    select: tuple[str, ...]
    where: tuple[Comparison, ...]
    order: tuple[tuple[str, bool], ...]  # (column or ':id', descending)
    limit: int
    offset: int


# --- parsing (pure) -------------------------------------------------------------------------


def _tokens(text: str) -> list[tuple[str, str]]:
    """Split a `$where` into (kind, text) tokens; unknown characters are a query error."""
    out: list[tuple[str, str]] = []
    text = text.rstrip()  # the token pattern skips leading blanks only
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:
            raise SoqlError(f"Could not parse $where at character {position + 1}: {text!r}")
        out.append((match.lastgroup, match.group(match.lastgroup)))
        position = match.end()
    return out


def parse_where(text: str, columns: tuple[str, ...]) -> tuple[Comparison, ...]:
    """Parse `col op literal [AND ...]` (parentheses optional) into comparisons."""
    tokens = _tokens(text)
    if not tokens:
        raise SoqlError("$where is empty")
    return _WhereParser(text, tokens, columns).parse()


class _WhereParser:
    """Recursive descent over `$where` tokens: ANDed comparisons, in parentheses or not."""

    _UNSUPPORTED_WORDS = frozenset({"OR", "NOT", "IS", "LIKE", "IN", "BETWEEN", "NULL"})
    _UNSUPPORTED_OPERATORS = frozenset({"IN", "IS", "LIKE", "BETWEEN", "NOT"})

    def __init__(self, text: str, tokens: list[tuple[str, str]], columns: tuple[str, ...]) -> None:
        self.text = text
        self.tokens = tokens
        self.columns = columns
        self.position = 0

    def parse(self) -> tuple[Comparison, ...]:
        """Every comparison of the text; SoqlError when tokens are left over."""
        terms = self._conjunction()
        if (extra := self._peek()) is not None:
            raise SoqlError(f"Unexpected {extra[1]!r} in $where: {self.text!r}")
        return tuple(terms)

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        token = self._peek()
        if token is None:
            raise SoqlError(f"Unexpected end of $where: {self.text!r}")
        self.position += 1
        return token

    def _conjunction(self) -> list[Comparison]:
        terms = self._comparison()
        while (token := self._peek()) is not None and token[0] == "word":
            if token[1].upper() != "AND":
                raise SoqlError(f"{token[1].upper()} is not supported by the SODA stand-in")
            self._take()
            terms.extend(self._comparison())
        return terms

    def _comparison(self) -> list[Comparison]:
        kind, value = self._take()
        if kind == "lparen":
            inner = self._conjunction()
            if self._take()[0] != "rparen":
                raise SoqlError(f"Expected ')' in $where: {self.text!r}")
            return inner
        column = self._column(kind, value)
        op = self._operator(column)
        return [Comparison(column, op, self._literal(column, op))]

    def _column(self, kind: str, value: str) -> str:
        if kind != "word":
            raise SoqlError(f"Expected a column name, found {value!r} in $where: {self.text!r}")
        if value.upper() in self._UNSUPPORTED_WORDS:
            raise SoqlError(f"{value.upper()} is not supported by the SODA stand-in")
        if value not in self.columns:
            raise SoqlError(f"No such column: {value}")
        return value

    def _operator(self, column: str) -> str:
        kind, op = self._take()
        if kind == "word" and op.upper() in self._UNSUPPORTED_OPERATORS:
            raise SoqlError(f"{op.upper()} is not supported by the SODA stand-in")
        if kind != "op":
            raise SoqlError(f"Expected a comparison operator after {column}, found {op!r}")
        return op

    def _literal(self, column: str, op: str) -> Scalar:
        kind, text = self._take()
        if kind == "string":
            return text[1:-1].replace("''", "'")
        if kind == "number":
            return float(text)
        if kind == "word" and text.lower() in {"true", "false"}:
            return text.lower() == "true"
        raise SoqlError(f"Expected a literal after '{column} {op}', found {text!r}")


def parse_select(text: str | None, columns: tuple[str, ...]) -> tuple[str, ...]:
    """Parse a comma-separated `$select` (`*` or absent = every column)."""
    if text is None or text.strip() == "*":
        return columns
    names = tuple(name.strip() for name in text.split(","))
    for name in names:
        if name == "*":
            continue
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise SoqlError(f"$select supports plain column names only, not {name!r}")
        if name not in columns:
            raise SoqlError(f"No such column: {name}")
    expanded: list[str] = []
    for name in names:
        expanded.extend(columns if name == "*" else (name,))
    return tuple(dict.fromkeys(expanded))


def parse_order(text: str | None, columns: tuple[str, ...]) -> tuple[tuple[str, bool], ...]:
    """Parse `$order` items `column [ASC|DESC]` (comma-separated; `:id` = row id)."""
    if text is None:
        return ()
    keys: list[tuple[str, bool]] = []
    for item in text.split(","):
        parts = item.split()
        if not parts or len(parts) > 2:
            raise SoqlError(f"Could not parse $order item {item.strip()!r}")
        name = parts[0]
        if name != ROW_ID and name not in columns:
            raise SoqlError(f"No such column: {name}")
        direction = parts[1].upper() if len(parts) == 2 else "ASC"
        if direction not in {"ASC", "DESC"}:
            raise SoqlError(f"Expected ASC or DESC after {name} in $order, found {parts[1]!r}")
        keys.append((name, direction == "DESC"))
    return tuple(keys)


def parse_count(name: str, text: str | None, default: int) -> int:
    """Parse a non-negative integer parameter such as `$limit` or `$offset`."""
    if text is None:
        return default
    if not re.fullmatch(r"\s*\d+\s*", text):
        raise SoqlError(f"{name} must be a non-negative integer, not {text!r}")
    return int(text)


def parse_query(params: Mapping[str, list[str]], columns: tuple[str, ...]) -> Query:
    """Validate the query parameters of one request and parse them into a `Query`."""
    for name, values in params.items():
        if name not in _ALLOWED_PARAMS:
            raise SoqlError(
                f"Unsupported parameter {name!r} (the SODA stand-in understands "
                f"{', '.join(sorted(_ALLOWED_PARAMS))})"
            )
        if len(values) != 1:
            raise SoqlError(f"Parameter {name} given {len(values)} times")
    single = {name: values[0] for name, values in params.items()}
    where = single.get("$where")
    return Query(
        select=parse_select(single.get("$select"), columns),
        where=parse_where(where, columns) if where is not None else (),
        order=parse_order(single.get("$order"), columns),
        limit=parse_count("$limit", single.get("$limit"), DEFAULT_LIMIT),
        offset=parse_count("$offset", single.get("$offset"), 0),
    )


# --- the served data -----------------------------------------------------------------------


def _kind(series: pd.Series) -> Kind:
    """The SODA-ish type of a column, which decides literal parsing and rendering."""
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    if pd.api.types.is_numeric_dtype(series):
        return "number"
    return "text"


def _render_number(value: float) -> str:
    """A number the way SODA prints it: whole values without a decimal point."""
    return str(int(value)) if value.is_integer() else repr(value)


@dataclass
class _Column:
    """One column: comparable values, a validity mask and the JSON-ready rendered values."""

    kind: Kind
    values: np.ndarray
    valid: np.ndarray
    rendered: list[Any]
    _sort_key: np.ndarray | None = None

    def sort_key(self) -> np.ndarray:
        """Integer/float keys that sort like the values, nulls largest (last in ASC)."""
        if self._sort_key is None:
            if self.kind == "text":
                # Ranks let DESC be a negation, which strings do not support.
                _, ranks = np.unique(self.values, return_inverse=True)
                key: np.ndarray = ranks.astype(np.int64)
                key[~self.valid] = _INT64_MAX
            elif self.kind == "datetime":
                key = self.values.view(np.int64).copy()
                key[~self.valid] = _INT64_MAX
            else:
                key = self.values.astype(np.float64)
                key[~self.valid] = np.inf
            self._sort_key = key
        return self._sort_key


def _column(series: pd.Series) -> _Column:
    """Prepare one column for filtering, ordering and rendering."""
    kind = _kind(series)
    valid = series.notna().to_numpy(dtype=bool)
    if kind == "datetime":
        values = series.to_numpy(dtype="datetime64[ns]")
        text = np.datetime_as_string(values.astype("datetime64[ms]"), unit="ms")
        rendered = [t if ok else None for t, ok in zip(text.tolist(), valid.tolist(), strict=True)]
    elif kind == "boolean":
        values = series.fillna(False).to_numpy(dtype=bool)
        rendered = [bool(v) if ok else None for v, ok in zip(values, valid.tolist(), strict=True)]
    elif kind == "number":
        values = series.astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
        rendered = [
            _render_number(v) if ok else None
            for v, ok in zip(values.tolist(), valid.tolist(), strict=True)
        ]
    else:
        values = series.astype("string").fillna("").to_numpy(dtype=object)
        rendered = [
            v if ok else None for v, ok in zip(values.tolist(), valid.tolist(), strict=True)
        ]
    return _Column(kind=kind, values=values, valid=valid, rendered=rendered)


class SodaTable:
    """One dataset in memory: typed columns for `$where`/`$order`, rows pre-rendered as JSON."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.columns: tuple[str, ...] = tuple(str(c) for c in frame.columns)
        self.n_rows = len(frame)
        self._data = {name: _column(frame[name]) for name in self.columns}
        # Rendering whole rows once makes a full-width page a byte join instead of 50k dicts.
        encode = msgspec.json.Encoder().encode
        rendered = [self._data[name].rendered for name in self.columns]
        self._row_json: list[bytes] = [
            encode({n: v for n, v in zip(self.columns, values, strict=True) if v is not None})
            for values in zip(*rendered, strict=True)
        ]

    def _mask(self, term: Comparison) -> np.ndarray:
        """Rows where one comparison holds (SQL semantics: null never matches)."""
        column = self._data[term.column]
        compare = _OPERATORS[term.op]
        literal: Any
        if column.kind == "datetime":
            literal = self._timestamp_literal(term)
        elif column.kind == "number":
            literal = self._number_literal(term)
        elif column.kind == "boolean":
            literal = self._boolean_literal(term)
        else:
            if not isinstance(term.literal, str):
                raise SoqlError(
                    f"Type mismatch: text column {term.column} compared with {term.literal!r}; "
                    "quote the value"
                )
            literal = term.literal
        return np.asarray(compare(column.values, literal), dtype=bool) & column.valid

    @staticmethod
    def _timestamp_literal(term: Comparison) -> np.datetime64:
        """A floating-timestamp literal ('2018-03-01T00:00:00[.000]') as datetime64[ns]."""
        if not isinstance(term.literal, str):
            raise SoqlError(f"Type mismatch: {term.column} is a timestamp; quote the value")
        try:
            moment = datetime.fromisoformat(term.literal)
        except ValueError:
            raise SoqlError(f"Could not parse timestamp {term.literal!r}") from None
        if moment.tzinfo is not None:
            raise SoqlError(f"{term.column} is a floating timestamp; drop the offset")
        return np.datetime64(moment, "ns")

    @staticmethod
    def _number_literal(term: Comparison) -> float:
        """A number literal, quoted or not."""
        if isinstance(term.literal, bool):
            raise SoqlError(f"Type mismatch: {term.column} is a number, not a boolean")
        try:
            return float(term.literal)
        except ValueError:
            message = f"Type mismatch: {term.column} is a number, not {term.literal!r}"
            raise SoqlError(message) from None

    @staticmethod
    def _boolean_literal(term: Comparison) -> bool:
        """A boolean literal (true/false, quoted or not); only = and != apply."""
        if term.op not in {"=", "!=", "<>"}:
            raise SoqlError(f"Operator {term.op} does not apply to boolean {term.column}")
        if isinstance(term.literal, bool):
            return term.literal
        if isinstance(term.literal, str) and term.literal.lower() in {"true", "false"}:
            return term.literal.lower() == "true"
        raise SoqlError(f"Type mismatch: {term.column} is a boolean, not {term.literal!r}")

    def rows(self, query: Query) -> np.ndarray:
        """Positions of the rows a query returns, in order, limited to its page."""
        mask = np.ones(self.n_rows, dtype=bool)
        for term in query.where:
            mask &= self._mask(term)
        positions = np.flatnonzero(mask)
        # Positions are already in :id order; sort only for other keys.
        if query.order and query.order != ((ROW_ID, False),):
            keys = []
            for name, descending in reversed(query.order):
                key = positions if name == ROW_ID else self._data[name].sort_key()[positions]
                keys.append(-key if descending else key)
            positions = positions[np.lexsort(keys)]
        return positions[query.offset : query.offset + query.limit]

    def render(self, positions: np.ndarray, select: tuple[str, ...]) -> bytes:
        """The JSON array of the given rows with the selected fields (nulls omitted)."""
        if set(select) == set(self.columns):
            return b"[" + b",".join([self._row_json[i] for i in positions.tolist()]) + b"]"
        picked = [[self._data[name].rendered[i] for i in positions.tolist()] for name in select]
        records = [
            {n: v for n, v in zip(select, values, strict=True) if v is not None}
            for values in zip(*picked, strict=True)
        ]
        return msgspec.json.encode(records)

    def query(self, params: Mapping[str, list[str]]) -> bytes:
        """Answer one request's query parameters with a JSON body (raises `SoqlError`)."""
        query = parse_query(params, self.columns)
        return self.render(self.rows(query), query.select)


# --- HTTP -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Fault:
    """An injected answer: an error status, or a stall before answering normally."""

    status: int | None = None
    retry_after: float | None = None
    stall_s: float = 0.0


def _error_body(code: str, message: str) -> bytes:
    """A Socrata-style JSON error body."""
    return msgspec.json.encode({"code": code, "error": True, "message": message})


class _Handler(BaseHTTPRequestHandler):
    """Routes GET requests to the owning `StandinServer`."""

    protocol_version = "HTTP/1.1"  # keep-alive: sodapy's session reuses one connection
    disable_nagle_algorithm = True  # headers and body go out as separate writes; no 40 ms stall
    server: _HTTPServer

    def do_GET(self) -> None:
        """Answer one GET."""
        status, headers, body = self.server.standin.respond(self.path)
        try:
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a stalled request outlived its timeout): nothing to answer.
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Send access logs to `logging` instead of stderr."""
        _log.debug("%s - %s", self.address_string(), format % args)


class _HTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that knows its `StandinServer`."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], standin: StandinServer) -> None:
        super().__init__(address, _Handler)
        self.standin = standin

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log dropped connections quietly (tests abandon stalled requests on purpose)."""
        _log.debug("connection from %s ended with an error", client_address, exc_info=True)


def _as_crimes(crimes: pd.DataFrame | str | Path) -> pd.DataFrame:
    """A crimes file path or frame as the canonical typed frame."""
    if isinstance(crimes, pd.DataFrame):
        # Coercing an already canonical frame again costs seconds on a 222k-row file.
        if crimes.dtypes.equals(empty_canonical().dtypes):
            return crimes
        return to_canonical(crimes)
    return read_incidents_file(crimes)


def _as_stations(stations: pd.DataFrame | str | Path | None) -> pd.DataFrame:
    """A stations file path, frame or None (packaged file) as the SODA-named stations frame."""
    if isinstance(stations, pd.DataFrame):
        return normalize_stations(stations)
    return read_stations_file(stations)


class StandinServer:
    """The SODA stand-in: `start()` serves in a background thread, `stop()` ends it."""

    def __init__(
        self,
        crimes: pd.DataFrame | str | Path,
        stations: pd.DataFrame | str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        crimes_dataset: str = DEFAULT_CRIMES_DATASET,
        stations_dataset: str = DEFAULT_STATIONS_DATASET,
        boundaries: Mapping[str, bytes] | None = None,
        districts_dataset: str = DEFAULT_DISTRICTS_DATASET,
        community_areas_dataset: str = DEFAULT_COMMUNITY_AREAS_DATASET,
    ) -> None:
        self.host = host
        self.port = port
        self.tables: dict[str, SodaTable] = {
            crimes_dataset: SodaTable(_as_crimes(crimes)),
            stations_dataset: SodaTable(_as_stations(stations)),
        }
        # GeoJSON by layer name; None: generated on the first boundary request (it needs
        # geopandas and ~0.2 s, which most tests of the stand-in never ask for).
        self._boundaries = dict(boundaries) if boundaries is not None else None
        self.boundary_datasets = {
            districts_dataset: "police_districts",
            community_areas_dataset: "community_areas",
        }
        self._lock = threading.Lock()
        self._faults: deque[_Fault] = deque()
        self._requests = 0
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- test controls ---------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 500, retry_after: float | None = None) -> None:
        """Answer the next `n` requests with `status` (e.g. 503, 429), optional Retry-After."""
        if not 400 <= status <= 599:
            raise ValueError(f"fault status must be 4xx or 5xx, not {status}")
        with self._lock:
            self._faults.extend(_Fault(status=status, retry_after=retry_after) for _ in range(n))

    def stall_next(self, n: int, seconds: float) -> None:
        """Delay the next `n` answers by `seconds` (to trip client timeouts)."""
        with self._lock:
            self._faults.extend(_Fault(stall_s=seconds) for _ in range(n))

    @property
    def requests_served(self) -> int:
        """How many requests the server has answered so far (faults included)."""
        with self._lock:
            return self._requests

    # -- serving ---------------------------------------------------------------------------

    def respond(self, target: str) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body for one GET request target (path and query string)."""
        with self._lock:
            self._requests += 1
            fault = self._faults.popleft() if self._faults else None
        if fault is not None and fault.status is not None:
            headers = dict(_JSON_HEADERS)
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            return fault.status, headers, _error_body("injected", f"injected {fault.status}")
        if fault is not None:
            time.sleep(fault.stall_s)
        url = urlsplit(target)
        match = _RESOURCE_PATH.match(url.path)
        if match is None:
            return 404, _JSON_HEADERS, _error_body("not_found", f"No resource at {url.path}")
        if match["format"] == "geojson":
            return self._geojson(match["dataset"])
        table = self.tables.get(match["dataset"])
        if table is None:
            message = f"Dataset {match['dataset']} not found"
            return 404, _JSON_HEADERS, _error_body("not_found", message)
        try:
            body = table.query(parse_qs(url.query, keep_blank_values=True))
        except SoqlError as error:
            return 400, _JSON_HEADERS, _error_body("query.compiler.malformed", str(error))
        return 200, _JSON_HEADERS, body

    def _geojson(self, dataset: str) -> tuple[int, dict[str, str], bytes]:
        """A boundary layer's GeoJSON (the whole layer: it has tens of features)."""
        layer = self.boundary_datasets.get(dataset)
        if layer is None:
            return 404, _JSON_HEADERS, _error_body("not_found", f"Dataset {dataset} not found")
        with self._lock:
            if self._boundaries is None:
                from crimeflow.standins.boundaries import generated_boundaries

                self._boundaries = generated_boundaries()
            body = self._boundaries[layer]
        return 200, _GEOJSON_HEADERS, body

    @property
    def url(self) -> str:
        """Base URL of the running server (`http://host:port`)."""
        if self._server is None:
            raise RuntimeError("the SODA stand-in is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> str:
        """Bind (port 0 = a free port), serve in a daemon thread and return the base URL."""
        if self._server is not None:
            raise RuntimeError("the SODA stand-in is already running")
        self._server = _HTTPServer((self.host, self.port), self)
        self._thread = threading.Thread(
            # A short poll interval makes stop() quick; the cost is a few idle wake-ups.
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="soda-standin",
            daemon=True,
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> StandinServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def describe(self) -> str:
        """One line naming the URL and the row count of every dataset."""
        counts = ", ".join(f"{name}: {t.n_rows:,} rows" for name, t in self.tables.items())
        return f"SODA stand-in at {self.url} ({counts})"


def serve_forever(
    crimes_path: str | Path,
    stations_path: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    crimes_dataset: str = DEFAULT_CRIMES_DATASET,
    stations_dataset: str = DEFAULT_STATIONS_DATASET,
    boundaries_dir: str | Path | None = None,
    until: threading.Event | None = None,
) -> None:
    """Serve the given files until Ctrl-C or `until` is set (the `crimeflow soda serve` command).

    `boundaries_dir` holds police_districts.geojson and community_areas.geojson (the real ones);
    without it the boundary layers are generated to cover the generator's coordinates.
    """
    if not logging.getLogger().handlers:
        # A CLI entry point: make sure the one start-up line is visible.
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    server = StandinServer(
        crimes_path,
        stations_path,
        host=host,
        port=port,
        crimes_dataset=crimes_dataset,
        stations_dataset=stations_dataset,
        boundaries=_boundaries_in(boundaries_dir),
    )
    server.start()
    _log.info(server.describe())
    stop = until if until is not None else threading.Event()
    try:
        # Short waits keep Ctrl-C responsive on every platform.
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def _boundaries_in(folder: str | Path | None) -> dict[str, bytes] | None:
    """The real boundary files of `folder` by layer name; None (generated) without a folder."""
    if folder is None:
        return None
    from crimeflow.standins.boundaries import boundaries_from_folder

    return boundaries_from_folder(folder)
