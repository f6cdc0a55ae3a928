"""The partitioned data lake: Parquet partitions and JSON documents on a local folder or S3.

Layout under `Settings.lake_url` (keys are relative to it):

    raw/crimes/month=YYYY-MM/data.parquet         what the source returned (after upsert)
    raw/stations/data.parquet
    clean/crimes/month=YYYY-MM/data.parquet       validated rows
    quarantine/crimes/month=YYYY-MM/data.parquet  rejected rows + `reason`
    features/month=YYYY-MM/data.parquet           clean rows + enrichment columns
    manifests/runs/<run_id>.json                  one per ETL run
    state/etl.json                                watermark, last run, months ingested
    window.json                                   the rolling training window
    reports/...                                   drift reports, plots

Every write is atomic (a temporary key under `_tmp/`, then one rename or one server-side copy,
so readers see the old object or the new one, never half of one) and idempotent (a partition
whose content hash is unchanged is not rewritten, so a re-run changes nothing, not even mtimes).
Query engines (pyarrow datasets, DuckDB, Spark) skip `_`-prefixed folders, so `_tmp/` never
leaks into a hive-partitioned scan of a zone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import PurePath
from typing import IO, Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from crimeflow.contract.months import check_month
from crimeflow.contract.settings import Settings

DATA_FILE = "data.parquet"
TMP_DIR = "_tmp"
# Parquet footer key holding `frame_hash` of the stored frame: the idempotency check reads only
# the footer instead of downloading and re-hashing the whole partition.
HASH_METADATA_KEY = b"crimeflow.content_sha256"

RAW_CRIMES = "raw/crimes"
RAW_STATIONS = "raw/stations"
CLEAN_CRIMES = "clean/crimes"
QUARANTINE_CRIMES = "quarantine/crimes"
FEATURES = "features"
STATE_KEY = "state/etl.json"
WINDOW_KEY = "window.json"

_MONTH_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.=-]*$")
_ZONE_SEGMENT_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_PARTITION_DIR_RE = re.compile(r"month=(\d{4}-\d{2})$")


@dataclass(frozen=True)
class WriteResult:
    """Outcome of one partition write: where, rows, content hash, and whether anything changed."""

    key: str
    url: str
    rows: int
    content_hash: str
    changed: bool


# --- pure functions ----------------------------------------------------------------------------


def month_of(values: pd.Series) -> pd.Series:
    """The 'YYYY-MM' month of each timestamp as a string Series (missing/unparseable -> <NA>)."""
    stamps = (
        values
        if pd.api.types.is_datetime64_any_dtype(values)
        else pd.to_datetime(values, errors="coerce")
    )
    codes = stamps.dt.year * 100 + stamps.dt.month
    # A month has ~25k incidents: format each distinct month once rather than every row.
    labels = {
        code: f"{int(code) // 100:04d}-{int(code) % 100:02d}" for code in codes.dropna().unique()
    }
    return codes.map(labels).astype("string")


def rolling_window(months: Iterable[str], n: int) -> list[str]:
    """The newest `n` distinct months, oldest first (fewer when fewer exist)."""
    if n < 1:
        raise ValueError(f"window size must be >= 1, got {n}")
    distinct = sorted({check_month(m) for m in months})
    return distinct[-n:]


def _column_bytes(values: pd.Series) -> Iterable[bytes]:
    """A canonical byte form of one column: its missing-mask, then values with missing zeroed."""
    mask = values.isna().to_numpy(dtype=bool)
    yield mask.tobytes()
    dtype = values.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        # Compare instants, not wall-clock renderings; the dtype (unit, tz) is hashed separately.
        ints = values.to_numpy().view("int64").copy()
        ints[mask] = 0
        yield ints.tobytes()
    elif pd.api.types.is_bool_dtype(dtype):
        yield values.to_numpy(dtype=bool, na_value=False).tobytes()
    elif pd.api.types.is_integer_dtype(dtype):
        yield values.to_numpy(dtype="int64", na_value=0).tobytes()
    elif pd.api.types.is_float_dtype(dtype):
        yield values.to_numpy(dtype="float64", na_value=0.0).tobytes()
    else:
        # Strings and anything else: character lengths plus the concatenated text is an
        # unambiguous encoding (no separator a value could contain).
        text = values.astype("string").fillna("")
        yield text.str.len().to_numpy(dtype="int64").tobytes()
        yield "".join(text.tolist()).encode("utf-8", "surrogatepass")


def frame_hash(frame: pd.DataFrame) -> str:
    """sha256 of a frame's content: column names, dtypes and values; not row/column order or index.

    Rows are ordered by `id` when present (ties and id-less frames by a hash of the whole row),
    so the same set of rows hashes the same whichever order a source returned them in.
    """
    columns = sorted(frame.columns, key=str)
    data = frame[columns].reset_index(drop=True)
    if len(data):
        has_id = "id" in data.columns
        sort_frame = pd.DataFrame({"id": data["id"].to_numpy()} if has_id else {})
        # Row hashes (the costliest step) are only needed to order rows that share an id.
        if not has_id or data["id"].duplicated().any():
            sort_frame["row"] = pd.util.hash_pandas_object(data, index=False).to_numpy()
        order = sort_frame.sort_values(list(sort_frame.columns), kind="stable").index
        data = data.take(order).reset_index(drop=True)
    digest = hashlib.sha256()
    digest.update(f"crimeflow.frame_hash.v1 rows={len(data)}\n".encode())
    for column in columns:
        digest.update(f"{column!s}\x00{data[column].dtype!s}\n".encode())
        for chunk in _column_bytes(data[column]):
            digest.update(len(chunk).to_bytes(8, "little"))
            digest.update(chunk)
    return digest.hexdigest()


def _json_default(value: Any) -> Any:
    """JSON encoding for the types manifests carry (timestamps, numpy scalars, paths)."""
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"cannot store {type(value).__name__} in a lake JSON document")


def _finite(value: Any) -> Any:
    """`value` with NaN/inf floats (anywhere in nested dicts/lists) replaced by None."""
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def dump_json(data: Any) -> bytes:
    """The stored form of a JSON document: sorted keys and fixed indentation, so it is stable."""
    # NaN is not JSON: a metric of an empty month is stored as null rather than crash a run.
    text = json.dumps(
        _finite(data), indent=2, sort_keys=True, default=_json_default, allow_nan=False
    )
    return (text + "\n").encode("utf-8")


def _check_key(key: str) -> str:
    """Return `key` if it is a safe relative key ('a/b/c.json'), else raise ValueError."""
    segments = key.split("/") if isinstance(key, str) else [""]
    if not all(_SEGMENT_RE.fullmatch(s) and s not in {".", ".."} for s in segments):
        raise ValueError(f"not a valid lake key: {key!r}")
    return key


def _check_zone(zone: str) -> str:
    """Return `zone` if it looks like 'features' or 'raw/crimes', else raise ValueError."""
    if not isinstance(zone, str) or not all(_ZONE_SEGMENT_RE.fullmatch(s) for s in zone.split("/")):
        raise ValueError(f"not a valid lake zone: {zone!r}")
    return zone


def _write_parquet(table: pa.Table, sink: IO[bytes]) -> None:
    """Serialize a table as Parquet into an open binary file (a seam the tests break on purpose)."""
    pq.write_table(table, sink, compression="zstd")


# --- the lake ----------------------------------------------------------------------------------


class Lake:
    """A data lake rooted at a local folder or an `s3://bucket/prefix` URL, through fsspec."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        if not url:
            raise ValueError("lake url is empty")
        self.storage_options: dict[str, Any] = dict(storage_options or {})
        fs, root = fsspec.core.url_to_fs(url, **self.storage_options)
        self.fs: fsspec.AbstractFileSystem = fs
        self.root: str = root.rstrip("/")
        self._local = isinstance(fs, LocalFileSystem)
        self.url: str = self.root if self._local else f"{self._protocol()}://{self.root}"

    @classmethod
    def from_settings(cls, settings: Settings) -> Lake:
        """The lake of the settings: the S3Bucket block when one is named, else the lake URL."""
        if settings.s3.bucket_block:
            from crimeflow.stores.lake_blocks import lake_location

            return cls(*lake_location(settings.s3.bucket_block))
        url = settings.lake_url
        remote = fsspec.utils.get_protocol(url) in {"s3", "s3a"}
        return cls(url, settings.s3.storage_options if remote else None)

    def __repr__(self) -> str:
        return f"Lake({self.url!r})"

    def _protocol(self) -> str:
        """The filesystem's primary protocol name ('s3', 'memory', ...)."""
        protocol = self.fs.protocol
        return protocol if isinstance(protocol, str) else protocol[0]

    # --- keys and paths ----------------------------------------------------------------------

    def partition_path(self, zone: str, month: str | None = None) -> str:
        """Key of a zone's data file, e.g. 'clean/crimes/month=2024-05/data.parquet'."""
        _check_zone(zone)
        if month is None:
            return f"{zone}/{DATA_FILE}"
        return f"{zone}/month={check_month(month)}/{DATA_FILE}"

    def url_for(self, key: str) -> str:
        """The absolute location of a key: a local path or an s3:// URL."""
        return f"{self.url}/{_check_key(key)}"

    def _path(self, key: str) -> str:
        """The filesystem path (protocol stripped) of a key."""
        return f"{self.root}/{_check_key(key)}"

    def _invalidate(self, path: str) -> None:
        """Forget cached listings for `path`: s3fs would otherwise answer from stale listings."""
        self.fs.invalidate_cache(path)

    # --- atomic byte-level primitives ------------------------------------------------------------

    def _atomic_put(self, key: str, tmp_prefix: str, fill: Callable[[IO[bytes]], None]) -> None:
        """Write `key` via a temporary key under `tmp_prefix/_tmp/`, then commit it in one step."""
        suffix = PurePath(key).suffix
        tmp = self._path(f"{tmp_prefix}/{TMP_DIR}/{uuid.uuid4().hex}{suffix}".lstrip("/"))
        final = self._path(key)
        try:
            if self._local:
                self._put_local(tmp, final, fill)
            else:
                # An s3fs file commits whatever was written when closed, even on an exception:
                # that is why the upload goes to a temporary key and only a finished object is
                # copied (one server-side CopyObject, atomic for readers) to the final key.
                with self.fs.open(tmp, "wb") as sink:
                    fill(sink)
                self.fs.copy(tmp, final)
        finally:
            self._discard(tmp)
            self._invalidate(final)

    def _put_local(self, tmp: str, final: str, fill: Callable[[IO[bytes]], None]) -> None:
        """Local commit: write and fsync the temp file, then os.replace (atomic on POSIX and NT)."""
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        with open(tmp, "wb") as sink:
            fill(sink)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(tmp, final)

    def _discard(self, path: str) -> None:
        """Remove a temporary object if it is still there."""
        if self._local:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        self._invalidate(path)
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(path)
        self._invalidate(path)

    def exists(self, key: str) -> bool:
        """Whether an object exists at `key`."""
        path = self._path(key)
        self._invalidate(path)
        return bool(self.fs.exists(path))

    def read_bytes(self, key: str) -> bytes | None:
        """The bytes stored at `key`, or None when there is nothing there."""
        path = self._path(key)
        self._invalidate(path)
        try:
            # One whole-object GET: a reader never mixes ranges of an old and a new version.
            return bytes(self.fs.cat_file(path))
        except FileNotFoundError:
            return None

    def write_bytes(self, key: str, data: bytes) -> bool:
        """Atomically store `data` at `key`; False (nothing touched) when it is already there."""
        if self.read_bytes(key) == data:
            return False
        parent = str(PurePath(key).parent)
        self._atomic_put(key, "" if parent == "." else parent, lambda sink: sink.write(data))
        return True

    def read_json(self, key: str) -> Any | None:
        """The JSON document at `key`, or None when there is none."""
        data = self.read_bytes(key)
        return None if data is None else json.loads(data)

    def write_json(self, key: str, data: Any) -> bool:
        """Atomically store a JSON document (datetimes as ISO text); False when unchanged."""
        return self.write_bytes(key, dump_json(data))

    def keys(self, folder: str, pattern: str = "*") -> list[str]:
        """Keys of the objects directly in `folder` whose names match `pattern`, sorted."""
        base = self._path(folder)
        self._invalidate(base)
        prefix = f"{self.root}/"
        return sorted(str(path).removeprefix(prefix) for path in self.fs.glob(f"{base}/{pattern}"))

    # --- partitions ----------------------------------------------------------------------------

    def read(self, zone: str, month: str | None = None) -> pd.DataFrame | None:
        """One partition as a DataFrame with its stored dtypes, or None when it does not exist."""
        data = self.read_bytes(self.partition_path(zone, month))
        if data is None:
            return None
        return pq.read_table(pa.BufferReader(data)).to_pandas()

    def content_hash(self, zone: str, month: str | None = None) -> str | None:
        """`frame_hash` of a stored partition, read from its Parquet footer; None when absent."""
        path = self._path(self.partition_path(zone, month))
        self._invalidate(path)
        try:
            with self.fs.open(path, "rb") as source:
                metadata = pq.read_schema(source).metadata or {}
        except FileNotFoundError:
            return None
        except pa.ArrowInvalid:
            return None  # not Parquet (a foreign or broken object): the next write replaces it
        stored = metadata.get(HASH_METADATA_KEY)
        if stored is not None:
            return stored.decode()
        # Written by something other than this class: hash the content the slow way.
        frame = self.read(zone, month)
        return None if frame is None else frame_hash(frame)

    def row_count(self, zone: str, month: str | None = None) -> int | None:
        """Rows of a stored partition, read from its Parquet footer; None when absent."""
        path = self._path(self.partition_path(zone, month))
        self._invalidate(path)
        try:
            with self.fs.open(path, "rb") as source:
                return int(pq.read_metadata(source).num_rows)
        except (FileNotFoundError, pa.ArrowInvalid):
            return None

    def write(self, zone: str, frame: pd.DataFrame, month: str | None = None) -> WriteResult:
        """Atomically store a partition; when its content hash is unchanged nothing is written."""
        key = self.partition_path(zone, month)
        digest = frame_hash(frame)
        result = WriteResult(key, self.url_for(key), len(frame), digest, changed=True)
        if self.content_hash(zone, month) == digest:
            return replace(result, changed=False)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), HASH_METADATA_KEY: digest.encode()}
        )
        self._atomic_put(key, zone, lambda sink: _write_parquet(table, sink))
        return result

    def months(self, zone: str) -> list[str]:
        """The months that have a data file in a zone, oldest first."""
        base = self._path(_check_zone(zone))
        self._invalidate(base)
        found = set()
        for path in self.fs.glob(f"{base}/month=*/{DATA_FILE}"):
            match = _PARTITION_DIR_RE.search(str(PurePath(path).parent))
            if match and _MONTH_RE.match(match.group(1)):
                found.add(match.group(1))
        return sorted(found)

    def read_months(self, zone: str, months: Iterable[str]) -> pd.DataFrame:
        """Several month partitions concatenated in the given order; a missing month is an error.

        With no months at all the result is an empty frame without columns.
        """
        frames = []
        for month in months:
            frame = self.read(zone, month)
            if frame is None:
                raise FileNotFoundError(f"{self.url_for(self.partition_path(zone, month))}")
            frames.append(frame)
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True)
