"""Readers for crimes and police-station files in the layouts the project meets.

Crimes: Socrata CSV export (Title Case headers, `MM/DD/YYYY hh:mm:ss AM` dates), SODA snake_case
CSV (ISO dates), either one gzipped or not and with or without a UTF-8 BOM, and Parquet, including
one known layout with renamed columns (`PARQUET_ALIASES`). Stations: the packaged SODA-named file
or the Title Case export of the "Police Stations" dataset.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

from crimeflow.contract.schema import normalize_header, to_canonical

# Field names of the police-stations dataset (z8bn-74gv) that the project uses, in SODA order.
STATION_COLUMNS: tuple[str, ...] = (
    "district",
    "district_name",
    "address",
    "city",
    "state",
    "zip",
    "x_coordinate",
    "y_coordinate",
    "latitude",
    "longitude",
)
STATION_FLOAT_COLUMNS: tuple[str, ...] = ("x_coordinate", "y_coordinate", "latitude", "longitude")

# Renamed-column layout seen in the wild (a feature-engineering Parquet built from the SODA API,
# see ../shared/data/real/SOURCES.md section 2): source name -> SODA field name. Names that are
# already SODA names (id, case_number, fbi_code, coordinates, updated_on) need no entry.
PARQUET_ALIASES: dict[str, str] = {
    "created_date": "date",
    "block_address": "block",
    "iucr_code": "iucr",
    "crime_type": "primary_type",
    "crime_description": "description",
    "location_type": "location_description",
    "arrest_made": "arrest",
    "is_domestic": "domestic",
    "beat_id": "beat",
    "district_id": "district",
    "ward_id": "ward",
    "community_area_id": "community_area",
    "incident_year": "year",
    "location_point": "location",
}

_PARQUET_MAGIC = b"PAR1"
_GZIP_MAGIC = b"\x1f\x8b"


def resolve_aliases(frame: pd.DataFrame) -> pd.DataFrame:
    """Rename known alias columns to SODA names, dropping same-named derived columns they replace.

    The renamed layout also carries engineered columns called `date` (a day, no time) and `year`;
    when the aliased original (`created_date`, `incident_year`) is present it wins.
    """
    present = {src: dst for src, dst in PARQUET_ALIASES.items() if src in frame.columns}
    if not present:
        return frame
    shadowed = [dst for dst in present.values() if dst in frame.columns]
    return frame.drop(columns=shadowed).rename(columns=present)


def _read_csv_text(path: Path, compression: str | None) -> pd.DataFrame:
    """Read a CSV as strings; only empty fields are missing (no 'NA'/'NULL' guessing)."""
    return pd.read_csv(
        path,
        dtype=str,
        encoding="utf-8-sig",
        compression=compression,
        keep_default_na=False,
        na_values=[""],
    )


def _read_raw(path: Path) -> pd.DataFrame:
    """Read a file by its content (magic bytes), not its name: Parquet, gzipped CSV or CSV."""
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic == _PARQUET_MAGIC:
        return pd.read_parquet(path)
    return _read_csv_text(path, "gzip" if magic.startswith(_GZIP_MAGIC) else None)


def read_incidents_file(path: str | Path) -> pd.DataFrame:
    """Read a crimes file in any supported layout into the canonical typed frame."""
    raw = _read_raw(Path(path))
    raw = raw.rename(columns={c: normalize_header(str(c)) for c in raw.columns})
    return to_canonical(resolve_aliases(raw))


def normalize_stations(frame: pd.DataFrame) -> pd.DataFrame:
    """Bring a stations frame (either header style) to `STATION_COLUMNS`, coordinates float."""
    renamed = frame.rename(columns={c: normalize_header(str(c)) for c in frame.columns})
    missing = [c for c in STATION_COLUMNS if c not in renamed.columns]
    if missing:
        raise ValueError(f"stations file lacks columns: {', '.join(missing)}")
    out = renamed.loc[:, list(STATION_COLUMNS)].copy()
    for column in STATION_COLUMNS:
        if column in STATION_FLOAT_COLUMNS:
            # Raise on junk: a station with a garbled coordinate would silently skew distances.
            out[column] = pd.to_numeric(out[column]).astype("float64")
        else:
            # The export quotes an address with a trailing newline (district 12): strip it.
            text = out[column].astype("string").str.strip()
            out[column] = text.mask(text == "")
    return out.reset_index(drop=True)


def read_stations_file(path: str | Path | None = None) -> pd.DataFrame:
    """Read police stations (None = the packaged file) with SODA field names, coordinates float."""
    if path is None:
        packaged = resources.files("crimeflow") / "data" / "police_stations.csv"
        with resources.as_file(packaged) as packaged_path:
            raw = _read_csv_text(packaged_path, None)
    else:
        raw = _read_raw(Path(path))
    return normalize_stations(raw)
