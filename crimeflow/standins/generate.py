"""Seeded generator of Chicago-shaped incidents, with knobs that make drift on purpose.

The statistics come from `crimeflow/standins/data/generator_profile.json`, which
`scripts/calibrate_generator.py` derives from real 2018 CPD data (aggregates only). Per row:

- primary type from the 2018 mix (times the drift multipliers); then IUCR code (with its
  description and FBI code) and location jointly from the type's frequent pairs, or, for the
  rarer ~10 %, separately from the type's remaining codes and locations; `domestic` from the
  rate of that pair (or location);
- beat from the type's beat mix; district, ward and community area from the beat; a point
  around the beat's centre (State Plane feet, converted to lat/lon with pyproj); a block built
  from one of the beat's streets and the Chicago address grid at that point;
- a day in the month weighted by weekday, an hour from the type's hour profile, a minute from
  the real minute profile (CPD rounds many times to :00 and :30);
- `arrest` from a logistic model fitted on the real data: IUCR, type x location, domestic x
  type, hour, district and log distance to the nearest police station, so enrichment features
  carry signal; per-type offsets are calibrated so generated rates match the real ones (19.5 %
  overall, 9.6 % for THEFT, ~100 % for NARCOTICS);
- `updated_on` a little after `date`, and days to weeks later for the arrests recorded late;
- ids and case numbers increasing with date; about 0.4 % of rows without coordinates.

Every attribute draws from its own random stream, so two calls that differ only in one drift
knob share everything the knob does not touch (e.g. `arrest_rate` only changes `arrest` and
`updated_on`; `location_vocabulary` only renames locations).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from crimeflow.contract.incident import chicago_now
from crimeflow.contract.schema import SODA_COLUMNS, empty_canonical, parse_timestamps

if TYPE_CHECKING:
    from pyproj import Transformer

DATA_DIR = Path(__file__).resolve().parent / "data"
PROFILE_PATH = DATA_DIR / "generator_profile.json"
STATIONS_PATH = Path(__file__).resolve().parents[1] / "data" / "police_stations.csv"
PROFILE_VERSION = 1
VOCABULARIES = ("2018", "modern")

# CPD's location_description renames of about 2020 (2018 value -> value used since), for the
# values the generator can emit. Checked against the 2024/2025 files in ../shared by the
# calibration script; values missing here were not renamed (STREET, APARTMENT, CTA TRAIN, ...).
# One-to-one on purpose, so modern names map back (`arrest_probability`): rare legacy names that
# CPD merged into another (HOTEL, GOVERNMENT BUILDING, RIVER BANK) are left as they are.
LOCATION_RENAMES_2020: Mapping[str, str] = MappingProxyType(
    {
        "BOAT/WATERCRAFT": "BOAT / WATERCRAFT",
        "CHA HALLWAY/STAIRWELL/ELEVATOR": "CHA HALLWAY / STAIRWELL / ELEVATOR",
        "CHA PARKING LOT/GROUNDS": "CHA PARKING LOT / GROUNDS",
        "CHURCH/SYNAGOGUE/PLACE OF WORSHIP": "CHURCH / SYNAGOGUE / PLACE OF WORSHIP",
        "COLLEGE/UNIVERSITY GROUNDS": "COLLEGE / UNIVERSITY - GROUNDS",
        "COLLEGE/UNIVERSITY RESIDENCE HALL": "COLLEGE / UNIVERSITY - RESIDENCE HALL",
        "CTA GARAGE / OTHER PROPERTY": "CTA PARKING LOT / GARAGE / OTHER PROPERTY",
        "FACTORY/MANUFACTURING BUILDING": "FACTORY / MANUFACTURING BUILDING",
        "GOVERNMENT BUILDING/PROPERTY": "GOVERNMENT BUILDING / PROPERTY",
        "HIGHWAY/EXPRESSWAY": "HIGHWAY / EXPRESSWAY",
        "HOSPITAL BUILDING/GROUNDS": "HOSPITAL BUILDING / GROUNDS",
        "HOTEL/MOTEL": "HOTEL / MOTEL",
        "LAKEFRONT/WATERFRONT/RIVERBANK": "LAKEFRONT / WATERFRONT / RIVERBANK",
        "MEDICAL/DENTAL OFFICE": "MEDICAL / DENTAL OFFICE",
        "MOVIE HOUSE/THEATER": "MOVIE HOUSE / THEATER",
        "NURSING HOME/RETIREMENT HOME": "NURSING / RETIREMENT HOME",
        "OTHER": "OTHER (SPECIFY)",
        "OTHER RAILROAD PROP / TRAIN DEPOT": "OTHER RAILROAD PROPERTY / TRAIN DEPOT",
        "PARKING LOT/GARAGE(NON.RESID.)": "PARKING LOT / GARAGE (NON RESIDENTIAL)",
        "POLICE FACILITY/VEH PARKING LOT": "POLICE FACILITY / VEHICLE PARKING LOT",
        "RESIDENCE PORCH/HALLWAY": "RESIDENCE - PORCH / HALLWAY",
        "RESIDENCE-GARAGE": "RESIDENCE - GARAGE",
        "RESIDENTIAL YARD (FRONT/BACK)": "RESIDENCE - YARD (FRONT / BACK)",
        "SCHOOL, PRIVATE, BUILDING": "SCHOOL - PRIVATE BUILDING",
        "SCHOOL, PRIVATE, GROUNDS": "SCHOOL - PRIVATE GROUNDS",
        "SCHOOL, PUBLIC, BUILDING": "SCHOOL - PUBLIC BUILDING",
        "SCHOOL, PUBLIC, GROUNDS": "SCHOOL - PUBLIC GROUNDS",
        "SPORTS ARENA/STADIUM": "SPORTS ARENA / STADIUM",
        "TAVERN/LIQUOR STORE": "TAVERN / LIQUOR STORE",
        "VACANT LOT/LAND": "VACANT LOT / LAND",
        "VEHICLE - OTHER RIDE SHARE SERVICE (E.G., UBER, LYFT)": (
            "VEHICLE - OTHER RIDE SHARE SERVICE (LYFT, UBER, ETC.)"
        ),
        "VEHICLE-COMMERCIAL": "VEHICLE - COMMERCIAL",
        "VEHICLE-COMMERCIAL - TROLLEY BUS": "VEHICLE - COMMERCIAL: TROLLEY BUS",
    }
)

# Record-keeping lags (assumptions, not fitted: the 2018 file's updated_on reflects when it was
# snapshotted). Every row is first recorded within hours to a few days; a share of the arrests
# is added days to weeks later, which is what an incremental pull has to re-fetch.
FIRST_RECORD_MIN_HOURS = 1.0
FIRST_RECORD_MEAN_HOURS = 36.0
LATE_ARREST_SHARE = 0.35
LATE_ARREST_MIN_DAYS = 2.0
LATE_ARREST_MEAN_DAYS = 12.0

# Case numbers: two letters per year (CPD skips I and O: 2018 'JB', 2024 'JH', 2025 'JJ'), then
# six digits that increase with the incident time.
_CASE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_CASE_SERIAL_2018 = _CASE_LETTERS.index("J") * len(_CASE_LETTERS) + _CASE_LETTERS.index("B")
_CASE_FIRST_NUMBER = 100_000
_CASE_NUMBER_SPAN = 880_000

# Bad geocodes in the real data point at one spot in Missouri with x = y = 0.
_OUTSIDE_CHICAGO = {
    "x_coordinate": "0",
    "y_coordinate": "0",
    "latitude": "36.619446395",
    "longitude": "-91.686565684",
}
BAD_ROW_KINDS: tuple[str, ...] = (
    "missing_date",
    "outside_chicago",
    "unknown_district",
    "bad_arrest",
)
UNKNOWN_DISTRICT = "021"  # merged away in 2012; not in schema.KNOWN_DISTRICTS
BAD_ARREST_TEXT = "maybe"

_FEET_PER_KM = 1000.0 / 0.3048
# The arrest model uses log(km + offset): in the real data the rate falls fastest within the
# first kilometre of a station and barely changes beyond a few.
STATION_KM_OFFSET = 0.25
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_SPEC_HELP = (
    "expected 'type_mix=TYPE:MULT[,TYPE:MULT...];arrest_rate=MULT;location_vocabulary=2018|modern;"
    "type_arrest_odds=TYPE:MULT[,...]' (each part optional)"
)

# Independent random streams, one per attribute (see the module docstring for why).
_STREAMS = (
    "type",
    "cell",
    "iucr",
    "location",
    "location_missing",
    "domestic",
    "beat",
    "day",
    "hour",
    "minute",
    "point",
    "ward",
    "community_area",
    "street",
    "arrest",
    "lag",
    "late",
    "coordinates_missing",
)


@dataclass(frozen=True)
class Drift:
    """Knobs that shift the generated distribution, to demonstrate and test drift.

    - `type_mix`: multipliers on the primary-type shares, e.g. {"NARCOTICS": 4.0, "THEFT": 0.5};
      the mix is renormalised, 0 removes a type. Names are case-insensitive.
    - `arrest_rate`: multiplier on the odds of arrest (1.3 turns 19.5 % into about 23.9 %).
    - `type_arrest_odds`: multipliers on the odds of arrest per primary type, e.g.
      {"NARCOTICS": 0.2} (an enforcement change: concept drift, which a retrained model must
      learn; the other knobs leave P(arrest | incident) as it was, apart from the base rate).
    - `location_vocabulary`: "2018" (default) or "modern", which renames location descriptions
      with `LOCATION_RENAMES_2020` (e.g. RESIDENCE PORCH/HALLWAY -> RESIDENCE - PORCH / HALLWAY).

    Text form (CLI `--drift`, see `parse`):
    `type_mix=NARCOTICS:4,THEFT:0.5;arrest_rate=1.3;location_vocabulary=modern`.
    """

    type_mix: dict[str, float] = field(default_factory=dict)
    arrest_rate: float = 1.0
    location_vocabulary: str | None = None
    type_arrest_odds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        mix = _type_multipliers(self.type_mix, "type_mix", allow_zero=True)
        odds = _type_multipliers(self.type_arrest_odds, "type_arrest_odds", allow_zero=False)
        rate = float(self.arrest_rate)
        if not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"arrest_rate must be a positive number, got {self.arrest_rate!r}")
        if self.location_vocabulary not in (None, *VOCABULARIES):
            raise ValueError(
                f"location_vocabulary must be one of {', '.join(VOCABULARIES)},"
                f" got {self.location_vocabulary!r}"
            )
        # Frozen: normalised values are set once, here.
        object.__setattr__(self, "type_mix", dict(sorted(mix.items())))
        object.__setattr__(self, "type_arrest_odds", dict(sorted(odds.items())))
        object.__setattr__(self, "arrest_rate", rate)

    def __hash__(self) -> int:
        return hash(self.to_spec())

    def __str__(self) -> str:
        return self.to_spec()

    @property
    def modern_locations(self) -> bool:
        """Whether location descriptions use the post-2020 vocabulary."""
        return self.location_vocabulary == "modern"

    def to_spec(self) -> str:
        """The text form that `Drift.parse` reads back to an equal object ('' for no drift)."""
        parts = []
        if self.type_mix:
            mix = ",".join(f"{name}:{value:g}" for name, value in self.type_mix.items())
            parts.append(f"type_mix={mix}")
        if self.arrest_rate != 1.0:
            parts.append(f"arrest_rate={self.arrest_rate:g}")
        if self.location_vocabulary is not None:
            parts.append(f"location_vocabulary={self.location_vocabulary}")
        if self.type_arrest_odds:
            odds = ",".join(f"{name}:{value:g}" for name, value in self.type_arrest_odds.items())
            parts.append(f"type_arrest_odds={odds}")
        return ";".join(parts)

    @classmethod
    def parse(cls, text: str) -> Drift:
        """Read a drift spec: `;`-separated `key=value` parts, every part optional.

        - `type_mix=TYPE:MULT[,TYPE:MULT...]` (type names may contain spaces;
          `MOTOR VEHICLE THEFT:2` works)
        - `arrest_rate=MULT` (odds multiplier, > 0)
        - `location_vocabulary=2018|modern`
        - `type_arrest_odds=TYPE:MULT[,TYPE:MULT...]` (odds multipliers per type, > 0)

        An empty text means no drift. Anything else raises ValueError naming the bad part.
        """
        values: dict[str, Any] = {}
        for raw_part in text.split(";"):
            part = raw_part.strip()
            if not part:
                continue
            key, sep, value = (s.strip() for s in part.partition("="))
            key = key.lower()
            if not sep or not value:
                raise ValueError(f"drift part {part!r} is not key=value; {_SPEC_HELP}")
            if key in values:
                raise ValueError(f"drift key {key!r} given twice; {_SPEC_HELP}")
            if key in ("type_mix", "type_arrest_odds"):
                values[key] = _parse_type_mix(value, key)
            elif key == "arrest_rate":
                values[key] = _parse_number(value, "arrest_rate")
            elif key == "location_vocabulary":
                values[key] = value.lower()
            else:
                raise ValueError(f"unknown drift key {key!r}; {_SPEC_HELP}")
        return cls(**values)


def _parse_number(text: str, what: str) -> float:
    """A finite float, or ValueError naming `what`."""
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a number; {_SPEC_HELP}") from None
    if not math.isfinite(number):
        raise ValueError(f"{what}: {text!r} is not a finite number; {_SPEC_HELP}")
    return number


def _parse_type_mix(text: str, what: str = "type_mix") -> dict[str, float]:
    """'NARCOTICS:4,THEFT:0.5' -> {'NARCOTICS': 4.0, 'THEFT': 0.5}."""
    mix: dict[str, float] = {}
    for item in text.split(","):
        name, sep, value = (s.strip() for s in item.rpartition(":"))
        if not sep or not name or not value:
            raise ValueError(f"{what} item {item.strip()!r} is not TYPE:MULT; {_SPEC_HELP}")
        key = " ".join(name.upper().split())
        if key in mix:
            raise ValueError(f"{what}: {key!r} given twice")
        mix[key] = _parse_number(value, f"{what} {key}")
    return mix


def _type_multipliers(values: Mapping[str, Any], what: str, allow_zero: bool) -> dict[str, float]:
    """Normalised {TYPE: multiplier}; ValueError naming `what` for a bad name or number."""
    out: dict[str, float] = {}
    for name, value in dict(values).items():
        key = " ".join(str(name).upper().split())
        number = float(value)
        if not key:
            raise ValueError(f"{what}: empty primary type name")
        if key in out:
            raise ValueError(f"{what}: {key!r} given twice")
        if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise ValueError(f"{what}: multiplier for {key!r} must be {bound}, got {value!r}")
        out[key] = number
    return out


# --------------------------------------------------------------------------------------------
# Profile: JSON statistics compiled into flat numpy tables for vectorized sampling
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grouped:
    """One categorical distribution per group, packed so that all rows sample in one call.

    Group g's cumulative probabilities are shifted into (g, g + 1]; `searchsorted(g + u)` then
    lands inside g's slice of the flat payload arrays.
    """

    cdf: np.ndarray
    start: np.ndarray
    stop: np.ndarray

    @classmethod
    def build(cls, weights: Sequence[np.ndarray]) -> _Grouped:
        """Pack per-group weight vectors (each with a positive sum)."""
        parts, sizes = [], []
        for g, w in enumerate(weights):
            w = np.asarray(w, dtype=float)
            cum = np.cumsum(w) / w.sum()
            cum[-1] = 1.0
            parts.append(g + cum)
            sizes.append(len(w))
        stop = np.cumsum(sizes)
        return cls(np.concatenate(parts), stop - np.asarray(sizes), stop)

    def sample(self, groups: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Flat payload positions for rows in `groups`, given uniforms `u` in [0, 1)."""
        pos = np.searchsorted(self.cdf, groups + u, side="right")
        # Rounding at a group's upper edge may step one past it.
        return np.clip(pos, self.start[groups], self.stop[groups] - 1)


@dataclass(frozen=True)
class _Compiled:
    """The profile as arrays (built once per profile)."""

    types: np.ndarray
    type_share: np.ndarray
    hour: _Grouped
    cell: _Grouped
    cell_iucr: np.ndarray  # flat iucr position, -1 for a type's tail
    cell_location: np.ndarray  # flat location position, -1 for a type's tail
    cell_domestic: np.ndarray
    iucr: _Grouped
    iucr_code: np.ndarray
    iucr_description: np.ndarray
    iucr_fbi: np.ndarray
    iucr_coef: np.ndarray
    location: _Grouped
    location_name: np.ndarray
    location_domestic: np.ndarray
    location_coef: np.ndarray
    type_other_location_coef: np.ndarray
    type_domestic_coef: np.ndarray
    type_offset: np.ndarray
    beat_mix: _Grouped
    type_beat_group: np.ndarray
    beats: np.ndarray
    beat_district: np.ndarray
    beat_district_coef: np.ndarray
    beat_xy: np.ndarray  # (n_beats, 2, 4): centre, spread, low, high per axis
    ward: _Grouped
    ward_value: np.ndarray
    community: _Grouped
    community_value: np.ndarray
    street: _Grouped
    street_dir: np.ndarray  # 'N', 'S', 'E' or 'W' as in the 2018 block text
    street_name: np.ndarray
    grid: dict[str, np.ndarray]
    weekday: np.ndarray
    minute: np.ndarray
    hour_coef: np.ndarray
    intercept: float
    km_coef: float
    median_km: float
    missing_coordinates: float
    missing_location: float
    arrest_model: Mapping[str, Any]
    iucr_lookup: dict[str, float]
    location_lookup: dict[str, float]


def load_profile(path: Path | None = None) -> dict[str, Any]:
    """The generator profile as plain data (the packaged one unless `path` is given)."""
    return json.loads((path or PROFILE_PATH).read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _packaged() -> _Compiled:
    """The packaged profile, compiled on first use (never at import time)."""
    return _compile(load_profile())


def _resolve(profile: Mapping[str, Any] | None) -> _Compiled:
    """Compiled tables for `profile`, or for the packaged profile when None."""
    return _packaged() if profile is None else _compile(profile)


def _compile(profile: Mapping[str, Any]) -> _Compiled:
    """Turn the JSON profile into flat arrays."""
    if profile.get("version") != PROFILE_VERSION:
        raise ValueError(f"generator profile version {profile.get('version')!r} is not supported")
    model = profile["arrest_model"]
    types = sorted(profile["primary_types"])
    entries = [profile["primary_types"][t] for t in types]
    return _Compiled(
        **_offence_tables(profile, model, types, entries),
        **_beat_tables(profile, model, entries),
        grid={k: np.asarray(v, dtype=float) for k, v in profile["address_grid"].items()},
        weekday=np.asarray(profile["weekday"], dtype=float),
        minute=np.asarray(profile["minute"], dtype=float) / np.sum(profile["minute"]),
        hour_coef=np.asarray(model["hour"], dtype=float),
        intercept=float(model["intercept"]),
        km_coef=float(model["per_log_km_to_station"]),
        median_km=float(model["median_station_km"]),
        missing_coordinates=float(profile["missing_coordinates_share"]),
        missing_location=float(profile["missing_location_share"]),
        arrest_model=model,
        iucr_lookup=_lookup(model, "iucr"),
        location_lookup=_lookup(model, "location"),
    )


def _offence_tables(
    profile: Mapping[str, Any],
    model: Mapping[str, Any],
    types: list[str],
    entries: list[Mapping[str, Any]],
) -> dict[str, Any]:
    """The `_Compiled` fields of primary types, their IUCR codes, locations and joint cells."""
    iucr_rows = [(t, row) for t, e in zip(types, entries, strict=True) for row in e["iucr"]]
    location_rows = [
        (t, row) for t, e in zip(types, entries, strict=True) for row in e["locations"]
    ]
    iucr_at = {(t, r[0]): i for i, (t, r) in enumerate(iucr_rows)}
    location_at = {(t, r[0]): i for i, (t, r) in enumerate(location_rows)}
    cell_weights, cell_iucr, cell_location, cell_domestic = [], [], [], []
    for t, e in zip(types, entries, strict=True):
        shares = [c[2] for c in e["cells"]]
        # The last entry of each type stands for its tail: IUCR and location drawn separately.
        cell_weights.append(np.array([*shares, max(1.0 - sum(shares), 1e-9)]))
        cell_iucr += [iucr_at[(t, c[0])] for c in e["cells"]] + [-1]
        cell_location += [location_at[(t, c[1])] for c in e["cells"]] + [-1]
        cell_domestic += [c[3] for c in e["cells"]] + [np.nan]
    return {
        "types": np.array(types, dtype=object),
        "type_share": np.array([e["share"] for e in entries], dtype=float),
        "hour": _Grouped.build([np.asarray(e.get("hour", profile["hour"])) for e in entries]),
        "cell": _Grouped.build(cell_weights),
        "cell_iucr": np.array(cell_iucr, dtype=np.int64),
        "cell_location": np.array(cell_location, dtype=np.int64),
        "cell_domestic": np.array(cell_domestic, dtype=float),
        "iucr": _Grouped.build([np.array([r[3] for r in e["iucr"]]) for e in entries]),
        "iucr_code": np.array([r[0] for _, r in iucr_rows], dtype=object),
        "iucr_description": np.array([r[1] for _, r in iucr_rows], dtype=object),
        "iucr_fbi": np.array([r[2] for _, r in iucr_rows], dtype=object),
        "iucr_coef": np.array([_coef(model, t, "iucr", r[0]) for t, r in iucr_rows], dtype=float),
        "location": _Grouped.build([np.array([r[1] for r in e["locations"]]) for e in entries]),
        "location_name": np.array([r[0] for _, r in location_rows], dtype=object),
        "location_domestic": np.array([r[2] for _, r in location_rows], dtype=float),
        "location_coef": np.array(
            [_coef(model, t, "location", r[0]) for t, r in location_rows], dtype=float
        ),
        "type_other_location_coef": np.array(
            [_coef(model, t, "location", "OTHER") for t in types], dtype=float
        ),
        "type_domestic_coef": np.array([model["types"][t]["domestic"] for t in types], dtype=float),
        "type_offset": np.array([model["types"][t]["offset"] for t in types], dtype=float),
    }


def _beat_tables(
    profile: Mapping[str, Any], model: Mapping[str, Any], entries: list[Mapping[str, Any]]
) -> dict[str, Any]:
    """The `_Compiled` fields of beats: per-type beat mixes, areas, points and streets."""
    beat_codes = list(profile["beat_order"])
    beats = [profile["beats"][b] for b in beat_codes]
    overall_beats = np.array([b["rows"] for b in beats], dtype=float)
    beat_weights, type_beat_group = [overall_beats], []
    for e in entries:
        if "beat_counts" in e:
            # A little of the overall mix keeps every beat possible for every type.
            own = np.asarray(e["beat_counts"], dtype=float)
            beat_weights.append(own + 50.0 * overall_beats / overall_beats.sum())
            type_beat_group.append(len(beat_weights) - 1)
        else:
            type_beat_group.append(0)
    street_rows = [(s, w) for b in beats for s, w in b["streets"]]
    return {
        "beat_mix": _Grouped.build(beat_weights),
        "type_beat_group": np.array(type_beat_group, dtype=np.int64),
        "beats": np.array(beat_codes, dtype=object),
        "beat_district": np.array([b["district"] for b in beats], dtype=object),
        "beat_district_coef": np.array(
            [model["district"].get(b["district"], 0.0) for b in beats], dtype=float
        ),
        "beat_xy": np.array([[b["x"], b["y"]] for b in beats], dtype=float),
        "ward": _Grouped.build([np.array([w for _, w in b["wards"]]) for b in beats]),
        "ward_value": np.array([v for b in beats for v, _ in b["wards"]], dtype=np.int64),
        "community": _Grouped.build(
            [np.array([w for _, w in b["community_areas"]]) for b in beats]
        ),
        "community_value": np.array(
            [v for b in beats for v, _ in b["community_areas"]], dtype=np.int64
        ),
        "street": _Grouped.build([np.array([w for _, w in b["streets"]]) for b in beats]),
        "street_dir": np.array([s.split(" ", 1)[0] for s, _ in street_rows], dtype=object),
        "street_name": np.array([s.split(" ", 1)[1] for s, _ in street_rows], dtype=object),
    }


def _coef(model: Mapping[str, Any], kind: str, group: str, key: str) -> float:
    """Coefficient of `key` in a type's `group`, else of the type's long tail 'OTHER', else 0."""
    table = model["types"].get(kind, {}).get(group, {})
    return float(table.get(key, table.get("OTHER", 0.0)))


def _lookup(model: Mapping[str, Any], group: str) -> dict[str, float]:
    """{'TYPE|KEY': coefficient} for one group, for vectorized mapping of frame columns."""
    return {
        f"{kind}|{key}": float(value)
        for kind, entry in model["types"].items()
        for key, value in entry[group].items()
    }


@lru_cache(maxsize=1)
def _stations_ft() -> tuple[np.ndarray, np.ndarray]:
    """State Plane coordinates of the packaged police stations (headquarters included)."""
    stations = pd.read_csv(STATIONS_PATH)
    return (
        stations["x_coordinate"].to_numpy(dtype=float),
        stations["y_coordinate"].to_numpy(dtype=float),
    )


def nearest_station_km(x_ft: np.ndarray, y_ft: np.ndarray) -> np.ndarray:
    """Distance in km from State Plane points (US feet) to the nearest police station; NaN in."""
    sx, sy = _stations_ft()
    best = np.full(len(x_ft), np.inf)
    for px, py in zip(sx, sy, strict=True):  # 23 passes beat one (n x 23) matrix on memory
        dx, dy = x_ft - px, y_ft - py
        np.minimum(best, dx * dx + dy * dy, out=best)
    return np.sqrt(best) / _FEET_PER_KM


@lru_cache(maxsize=1)
def _to_lonlat() -> Transformer:
    """Illinois State Plane East (US feet) -> WGS84 transformer (built on first use)."""
    from pyproj import Transformer

    return Transformer.from_crs("EPSG:3435", "EPSG:4326", always_xy=True)


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def _months(first_month: str, last_month: str) -> list[tuple[int, int]]:
    """[(year, month), ...] from 'YYYY-MM' to 'YYYY-MM' inclusive."""
    bounds = []
    for text in (first_month, last_month):
        match = _MONTH.match(text.strip())
        if not match or not 1 <= int(match.group(2)) <= 12:
            raise ValueError(f"month must look like YYYY-MM, got {text!r}")
        bounds.append((int(match.group(1)), int(match.group(2))))
    (y0, m0), (y1, m1) = bounds
    count = (y1 - y0) * 12 + (m1 - m0) + 1
    if count < 1:
        raise ValueError(f"first month {first_month} is after last month {last_month}")
    return [(y0 + (m0 - 1 + i) // 12, (m0 - 1 + i) % 12 + 1) for i in range(count)]


def _type_weights(compiled: _Compiled, drift: Drift) -> np.ndarray:
    """Primary-type probabilities after the drift multipliers."""
    for what, names in (("type_mix", drift.type_mix), ("type_arrest_odds", drift.type_arrest_odds)):
        unknown = sorted(set(names) - set(compiled.types))
        if unknown:
            raise ValueError(
                f"{what} names unknown primary types {unknown}; known: {', '.join(compiled.types)}"
            )
    multipliers = np.array([drift.type_mix.get(t, 1.0) for t in compiled.types])
    weights = compiled.type_share * multipliers
    if weights.sum() <= 0:
        raise ValueError("type_mix removes every primary type")
    return weights / weights.sum()


def _sample_dates(
    compiled: _Compiled,
    months: list[tuple[int, int]],
    rows: int,
    kinds: np.ndarray,
    rngs: Mapping[str, np.random.Generator],
) -> np.ndarray:
    """Incident times (datetime64[ns]): `rows` per month, weekday- and type-hour-shaped."""
    starts = np.array([np.datetime64(f"{y:04d}-{m:02d}-01", "D") for y, m in months])
    ends = np.array([s + np.timedelta64(31, "D") for s in starts]).astype("datetime64[M]")
    lengths = (ends.astype("datetime64[D]") - starts).astype(np.int64)
    # 1970-01-01 was a Thursday (dayofweek 3).
    day_weights = [
        compiled.weekday[(np.arange(n) + start.astype(np.int64) + 3) % 7]
        for n, start in zip(lengths, starts, strict=True)
    ]
    month_index = np.repeat(np.arange(len(months)), rows)
    days = _Grouped.build(day_weights)
    day_pos = days.sample(month_index, rngs["day"].random(len(month_index)))
    day = day_pos - days.start[month_index]
    hour_pos = compiled.hour.sample(kinds, rngs["hour"].random(len(kinds)))
    hour = hour_pos - compiled.hour.start[kinds]
    minute = rngs["minute"].choice(60, size=len(kinds), p=compiled.minute)
    base = starts.astype("datetime64[ns]").astype(np.int64)[month_index]
    ns_day, ns_minute = 86_400 * 10**9, 60 * 10**9
    return (base + day * ns_day + (hour * 60 + minute) * ns_minute).astype("datetime64[ns]")


def _blocks(
    compiled: _Compiled, beat: np.ndarray, x: np.ndarray, y: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Block text ('045XX S MARSHFIELD AVE'): one of the beat's streets, numbered by the grid."""
    pos = compiled.street.sample(beat, rng.random(len(beat)))
    direction = compiled.street_dir[pos]
    runs_north_south = (direction == "N") | (direction == "S")
    grid = compiled.grid
    along_y = np.interp(y, grid["y_knots"], grid["y_numbers"])
    along_x = np.interp(x, grid["x_knots"], grid["x_numbers"])
    number = np.where(runs_north_south, along_y, along_x)
    hundreds = np.minimum(np.abs(number) // 100, 999).astype(np.int64)
    # Format each distinct (hundreds, letter, street) once rather than a million times.
    letters = np.array(["N", "S", "E", "W"])
    letter_code = np.where(runs_north_south, 0, 2) + (number < 0)
    key = (hundreds * 4 + letter_code) * len(compiled.street_name) + pos
    codes, uniques = pd.factorize(key)
    rest, street = np.divmod(uniques, len(compiled.street_name))
    block_hundreds, letter = np.divmod(rest, 4)
    text = np.array(
        [
            f"{'0000X' if h == 0 else f'{h:03d}XX'} {letters[c]} {compiled.street_name[p]}"
            for h, c, p in zip(block_hundreds, letter, street, strict=True)
        ],
        dtype=object,
    )
    return text[codes]


def _case_numbers(dates: np.ndarray) -> np.ndarray:
    """Case numbers for time-sorted incidents: a per-year prefix and increasing digits.

    Six digits while a year has at most 880,000 rows; beyond that they grow to seven (still
    unique), which only benchmarks reach.
    """
    years = dates.astype("datetime64[Y]").astype(np.int64) + 1970
    out = np.empty(len(dates), dtype=object)
    for year in np.unique(years):
        idx = np.flatnonzero(years == year)
        serial = _CASE_SERIAL_2018 + int(year) - 2018
        letters = len(_CASE_LETTERS)
        prefix = _CASE_LETTERS[(serial // letters) % letters] + _CASE_LETTERS[serial % letters]
        stride = max(1, _CASE_NUMBER_SPAN // len(idx))
        numbers = _CASE_FIRST_NUMBER + np.arange(len(idx), dtype=np.int64) * stride
        out[idx] = prefix + numbers.astype(str).astype(object)
    return out


def _logit(
    compiled: _Compiled,
    type_coef: np.ndarray,
    location_coef: np.ndarray,
    domestic_coef: np.ndarray,
    hour: np.ndarray,
    district_coef: np.ndarray,
    km: np.ndarray,
    drift: Drift,
    type_odds: np.ndarray | float = 1.0,
) -> np.ndarray:
    """Log-odds of arrest: the fitted additive model plus the drift's odds multipliers."""
    km = np.where(np.isnan(km), compiled.median_km, km)
    return (
        compiled.intercept
        + type_coef
        + location_coef
        + domestic_coef
        + compiled.hour_coef[hour]
        + district_coef
        + compiled.km_coef * np.log(km + STATION_KM_OFFSET)
        + math.log(drift.arrest_rate)
        + np.log(type_odds)
    )


@dataclass(frozen=True)
class _Offences:
    """Per row, in draw order: primary type, IUCR and location positions, domestic."""

    kind: np.ndarray
    iucr: np.ndarray
    location: np.ndarray
    location_missing: np.ndarray
    domestic: np.ndarray


@dataclass(frozen=True)
class _Places:
    """Per row, in draw order: beat position, areas, point (NaN when missing) and block text."""

    beat: np.ndarray
    ward: np.ndarray
    community: np.ndarray
    x: np.ndarray
    y: np.ndarray
    # Distance to the nearest station, from the point before any was dropped.
    km: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    block: np.ndarray


def _generate(
    first_month: str,
    last_month: str,
    *,
    rows_per_month: int,
    seed: int,
    drift: Drift | None,
    start_id: int,
    profile: Mapping[str, Any] | None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The generated frame and each row's true arrest probability (in frame order)."""
    if rows_per_month < 0:
        raise ValueError(f"rows_per_month must be >= 0, got {rows_per_month}")
    if start_id < 1:
        raise ValueError(f"start_id must be >= 1, got {start_id}")
    months = _months(first_month, last_month)
    drift = drift or Drift()
    compiled = _resolve(profile)
    type_p = _type_weights(compiled, drift)
    n = rows_per_month * len(months)
    if n == 0:
        return empty_canonical(), np.empty(0)
    rngs = _random_streams(seed)

    offences = _draw_offences(compiled, type_p, n, rngs)
    dates = _sample_dates(compiled, months, rows_per_month, offences.kind, rngs)
    places = _draw_places(compiled, offences.kind, rngs)
    hour = (dates.astype("datetime64[h]").astype(np.int64)) % 24
    probability = _true_probability(compiled, drift, offences, places, hour)
    arrest = rngs["arrest"].random(n) < probability
    updated = _updated_on(dates, arrest, rngs)

    order = np.argsort(dates, kind="stable")  # ids and case numbers increase with time
    locations = _location_names(compiled, drift)
    frame = _frame(compiled, offences, places, dates, arrest, updated, order, locations, start_id)
    return frame, probability[order]


def _random_streams(seed: int) -> dict[str, np.random.Generator]:
    """One generator per attribute in `_STREAMS`, all spawned from `seed`."""
    streams = np.random.SeedSequence(seed).spawn(len(_STREAMS))
    return {name: np.random.default_rng(s) for name, s in zip(_STREAMS, streams, strict=True)}


def _draw_offences(
    compiled: _Compiled, type_p: np.ndarray, n: int, rngs: Mapping[str, np.random.Generator]
) -> _Offences:
    """Type, then IUCR and location jointly from a frequent pair or apart for the tail."""
    kind = rngs["type"].choice(len(compiled.types), size=n, p=type_p)
    cell = compiled.cell.sample(kind, rngs["cell"].random(n))
    tail = compiled.cell_iucr[cell] < 0
    iucr = np.where(
        tail, compiled.iucr.sample(kind, rngs["iucr"].random(n)), compiled.cell_iucr[cell]
    )
    location = np.where(
        tail,
        compiled.location.sample(kind, rngs["location"].random(n)),
        compiled.cell_location[cell],
    )
    location_missing = rngs["location_missing"].random(n) < compiled.missing_location
    domestic_rate = np.where(
        tail, compiled.location_domestic[location], compiled.cell_domestic[cell]
    )
    domestic = rngs["domestic"].random(n) < domestic_rate
    return _Offences(kind, iucr, location, location_missing, domestic)


def _draw_places(
    compiled: _Compiled, kind: np.ndarray, rngs: Mapping[str, np.random.Generator]
) -> _Places:
    """Beat from the type's mix; areas, a point around the beat's centre and a block from it."""
    n = len(kind)
    beat = compiled.beat_mix.sample(compiled.type_beat_group[kind], rngs["beat"].random(n))
    beat -= compiled.beat_mix.start[compiled.type_beat_group[kind]]
    box = compiled.beat_xy[beat]  # (n, 2, 4)
    z = rngs["point"].standard_normal((n, 2))
    xy = np.clip(box[:, :, 0] + box[:, :, 1] * z, box[:, :, 2], box[:, :, 3]).round()
    x, y = xy[:, 0], xy[:, 1]
    km = nearest_station_km(x, y)
    ward = compiled.ward_value[compiled.ward.sample(beat, rngs["ward"].random(n))]
    community = compiled.community_value[
        compiled.community.sample(beat, rngs["community_area"].random(n))
    ]
    block = _blocks(compiled, beat, x, y, rngs["street"])
    no_point = rngs["coordinates_missing"].random(n) < compiled.missing_coordinates
    x = np.where(no_point, np.nan, x)
    y = np.where(no_point, np.nan, y)
    lon, lat = _to_lonlat().transform(x, y)
    return _Places(beat, ward, community, x, y, km, lon, lat, block)


def _true_probability(
    compiled: _Compiled, drift: Drift, offences: _Offences, places: _Places, hour: np.ndarray
) -> np.ndarray:
    """Each row's arrest probability under the fitted model and the drift's odds multipliers."""
    kind = offences.kind
    location_coef = np.where(
        offences.location_missing,
        compiled.type_other_location_coef[kind],
        compiled.location_coef[offences.location],
    )
    logit = _logit(
        compiled,
        compiled.type_offset[kind] + compiled.iucr_coef[offences.iucr],
        location_coef,
        np.where(offences.domestic, compiled.type_domestic_coef[kind], 0.0),
        hour,
        compiled.beat_district_coef[places.beat],
        places.km,
        drift,
        np.array([drift.type_arrest_odds.get(t, 1.0) for t in compiled.types])[kind],
    )
    return 1.0 / (1.0 + np.exp(-logit))


def _updated_on(
    dates: np.ndarray, arrest: np.ndarray, rngs: Mapping[str, np.random.Generator]
) -> np.ndarray:
    """When each row was last recorded: hours after, or days to weeks for late arrests."""
    n = len(dates)
    hours = FIRST_RECORD_MIN_HOURS + rngs["lag"].exponential(FIRST_RECORD_MEAN_HOURS, n)
    late = arrest & (rngs["late"].random(n) < LATE_ARREST_SHARE)
    late_hours = 24.0 * (LATE_ARREST_MIN_DAYS + rngs["late"].exponential(LATE_ARREST_MEAN_DAYS, n))
    # Whole seconds, as SODA timestamps have.
    lag_ns = (np.where(late, late_hours, hours) * 3600).astype(np.int64) * 10**9
    updated = (dates.astype(np.int64) + lag_ns).astype("datetime64[ns]")
    # A feed holds no update from the future (the API refuses one): a recent row whose lag
    # reaches past now was last updated now. Months older than the longest lag never change.
    now = np.datetime64(chicago_now().replace(microsecond=0), "ns")
    return np.maximum(dates, np.minimum(updated, now))


def _location_names(compiled: _Compiled, drift: Drift) -> np.ndarray:
    """Location description per position, in the drift's vocabulary."""
    names = compiled.location_name
    if drift.modern_locations:
        names = np.array([LOCATION_RENAMES_2020.get(v, v) for v in names], dtype=object)
    return names


def _frame(
    compiled: _Compiled,
    offences: _Offences,
    places: _Places,
    dates: np.ndarray,
    arrest: np.ndarray,
    updated: np.ndarray,
    order: np.ndarray,
    location_names: np.ndarray,
    start_id: int,
) -> pd.DataFrame:
    """The canonical frame of the drawn rows, in `order`, ids from `start_id`."""
    iucr, kind, beat = offences.iucr, offences.kind, places.beat
    location_text = np.where(offences.location_missing, None, location_names[offences.location])

    def text(values: np.ndarray) -> pd.arrays.StringArray:
        return pd.array(values[order], dtype="string")

    sorted_dates = dates[order]
    return pd.DataFrame(
        {
            "id": pd.array(start_id + np.arange(len(order)), dtype="Int64"),
            "case_number": pd.array(_case_numbers(sorted_dates), dtype="string"),
            "date": sorted_dates,
            "block": text(places.block),
            "iucr": text(compiled.iucr_code[iucr]),
            "primary_type": text(compiled.types[kind]),
            "description": text(compiled.iucr_description[iucr]),
            "location_description": text(location_text),
            "arrest": pd.array(arrest[order], dtype="boolean"),
            "domestic": pd.array(offences.domestic[order], dtype="boolean"),
            "beat": text(compiled.beats[beat]),
            "district": text(compiled.beat_district[beat]),
            "ward": pd.array(places.ward[order], dtype="Int64"),
            "community_area": pd.array(places.community[order], dtype="Int64"),
            "fbi_code": text(compiled.iucr_fbi[iucr]),
            "x_coordinate": places.x[order],
            "y_coordinate": places.y[order],
            "year": pd.array(sorted_dates.astype("datetime64[Y]").astype(np.int64) + 1970, "Int64"),
            "updated_on": updated[order],
            "latitude": np.round(places.lat[order], 9),
            "longitude": np.round(places.lon[order], 9),
        },
        columns=list(SODA_COLUMNS),
    )


def generate_incidents(
    first_month: str,
    last_month: str,
    *,
    rows_per_month: int = 5000,
    seed: int = 0,
    drift: Drift | None = None,
    start_id: int = 1,
    profile: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Seeded Chicago-shaped incidents, `rows_per_month` in every month from first to last.

    Returns the canonical frame (`schema.SODA_COLUMNS`, canonical dtypes) sorted by `date`, ids
    `start_id, start_id + 1, ...`. Same arguments give an identical frame (for months whose
    record-keeping lags end before now: no `updated_on` lies in the future). `profile` replaces the
    packaged statistics (the calibration script uses it).
    """
    frame, _ = _generate(
        first_month,
        last_month,
        rows_per_month=rows_per_month,
        seed=seed,
        drift=drift,
        start_id=start_id,
        profile=profile,
    )
    return frame


def arrest_probability(
    frame: pd.DataFrame,
    *,
    drift: Drift | None = None,
    profile: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """The generator's own arrest probability for each row of a canonical frame (the oracle).

    Equals the probability used at generation time, except for rows generated without
    coordinates (their distance term uses the median). Values the model does not know (other
    IUCR codes, locations, districts) fall back to the type's long-tail coefficient or 0, and
    modern location names are mapped back, so it also scores real data. Use it to bound what a
    trained model can reach.
    """
    compiled = _resolve(profile)
    drift = drift or Drift()
    model = compiled.arrest_model
    kind = frame["primary_type"].astype("string").fillna("")
    iucr_key = kind + "|" + frame["iucr"].astype("string").fillna("")
    back = {new: old for old, new in LOCATION_RENAMES_2020.items()}
    location = frame["location_description"].astype("string")
    location_key = kind + "|" + location.map(back).fillna(location)
    other = kind + "|OTHER"
    iucr_coef = iucr_key.map(compiled.iucr_lookup).fillna(other.map(compiled.iucr_lookup))
    location_coef = location_key.map(compiled.location_lookup).fillna(
        other.map(compiled.location_lookup)
    )
    offsets = {t: e["offset"] for t, e in model["types"].items()}
    domestic_coefs = {t: e["domestic"] for t, e in model["types"].items()}
    domestic = frame["domestic"].fillna(False).astype(bool).to_numpy()
    domestic_coef = np.where(domestic, kind.map(domestic_coefs).fillna(0.0).to_numpy(float), 0.0)
    hour = frame["date"].dt.hour.fillna(0).astype(int).to_numpy()
    district_coef = frame["district"].map(model["district"]).fillna(0.0).to_numpy(float)
    km = nearest_station_km(
        frame["x_coordinate"].to_numpy(dtype=float), frame["y_coordinate"].to_numpy(dtype=float)
    )
    type_offset = kind.map(offsets).fillna(0.0).to_numpy(float)
    logit = _logit(
        compiled,
        type_offset + iucr_coef.fillna(0.0).to_numpy(float),
        location_coef.fillna(0.0).to_numpy(float),
        domestic_coef,
        hour,
        district_coef,
        km,
        drift,
        kind.map(drift.type_arrest_odds).fillna(1.0).to_numpy(float),
    )
    return 1.0 / (1.0 + np.exp(-logit))


# --------------------------------------------------------------------------------------------
# Output: SODA text, files, and deliberately bad rows
# --------------------------------------------------------------------------------------------


def _iso(values: pd.Series) -> pd.Series:
    """datetime64 -> '2018-03-01T00:00:00.000' (the SODA API's format); NaT -> missing."""
    stamps = values.to_numpy(dtype="datetime64[ns]")
    text = np.datetime_as_string(stamps.astype("datetime64[ms]"), unit="ms").astype(object)
    text[np.isnat(stamps)] = None
    return pd.Series(text, index=values.index, dtype=object)


def _soda_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose typed columns print like the SODA API: ISO dates, true/false, integer feet.

    Columns that already hold text (e.g. after `add_bad_rows`) are left as they are.
    """
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if pd.api.types.is_datetime64_any_dtype(values):
            out[column] = _iso(values)
        elif pd.api.types.is_bool_dtype(values):
            text = np.where(values.fillna(False).to_numpy(bool), "true", "false").astype(object)
            text[values.isna().to_numpy()] = None
            out[column] = text
        elif column in ("x_coordinate", "y_coordinate") and pd.api.types.is_float_dtype(values):
            out[column] = values.round().astype("Int64")  # SODA gives State Plane as whole feet
    return out


def to_soda_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Every value as the SODA API's JSON would give it: a string, or None when missing."""
    ready = _soda_ready(frame)
    out = pd.DataFrame(index=ready.index)
    for column in ready.columns:
        text = ready[column].astype("string").astype(object)
        out[column] = text.where(text.notna(), None)
    return out


def _month_span(frame: pd.DataFrame) -> tuple[str, str]:
    """'YYYY-MM' of the earliest and latest parseable `date`."""
    dates = parse_timestamps(frame["date"]).dropna()
    if dates.empty:
        raise ValueError("cannot name the file: no row has a valid date")
    return dates.min().strftime("%Y-%m"), dates.max().strftime("%Y-%m")


def write_incidents(frame: pd.DataFrame, out_dir: Path, fmt: str = "csv.gz") -> Path:
    """Write incidents as `crimes_<first>_<last>.csv.gz` (SODA text) or `.parquet` (typed).

    The CSV has SODA snake_case headers, ISO dates (`2018-03-01T00:00:00.000`), `true`/`false`
    and empty fields for missing values; its bytes are reproducible (gzip mtime 0). Parquet
    keeps the canonical dtypes. `<first>`/`<last>` are the months of the earliest/latest date.
    """
    if fmt not in ("csv.gz", "parquet"):
        raise ValueError(f"fmt must be 'csv.gz' or 'parquet', got {fmt!r}")
    first, last = _month_span(frame)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"crimes_{first}_{last}.{fmt}"
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        _soda_ready(frame).to_csv(
            path,
            index=False,
            compression={"method": "gzip", "compresslevel": 6, "mtime": 0},
            lineterminator="\n",
        )
    return path


def add_bad_rows(
    frame: pd.DataFrame, share: float, seed: int, kinds: Sequence[str] = BAD_ROW_KINDS
) -> pd.DataFrame:
    """SODA-text copy of `frame` (see `to_soda_strings`) with `share` of its rows corrupted.

    The result is all strings, like a SODA page, because a value such as arrest = "maybe"
    cannot live in a boolean column; `schema.to_canonical` + `coercion_errors` read it back.
    Each chosen row gets one fault, the `kinds` in turn (default: all of `BAD_ROW_KINDS`):
    `missing_date` (no date), `outside_chicago` (x = y = 0, lat/lon in Missouri, as real bad
    geocodes look), `unknown_district` (district '021', retired in 2012) and `bad_arrest`
    (arrest 'maybe'). `result.attrs["bad_rows"]` maps each kind to the affected row labels.
    Note that a SODA query filtered on `date` cannot return rows whose date is missing.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be within [0, 1], got {share}")
    unknown = sorted(set(kinds) - set(BAD_ROW_KINDS))
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {BAD_ROW_KINDS}, got {kinds!r}")
    out = to_soda_strings(frame)
    count = round(share * len(out))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(out), size=count, replace=False)
    bad: dict[str, list[Any]] = {}
    for i, kind in enumerate(kinds):
        rows = np.sort(chosen[i :: len(kinds)])
        labels = out.index[rows]
        if kind == "missing_date":
            out.loc[labels, "date"] = None
        elif kind == "outside_chicago":
            for column, value in _OUTSIDE_CHICAGO.items():
                out.loc[labels, column] = value
        elif kind == "unknown_district":
            out.loc[labels, "district"] = UNKNOWN_DISTRICT
        else:
            out.loc[labels, "arrest"] = BAD_ARREST_TEXT
        bad[kind] = labels.tolist()
    out.attrs["bad_rows"] = bad
    return out
