"""Derive `crimeflow/standins/data/generator_profile.json` from the real files in ../shared.

Only aggregate statistics leave this script (shares, rates, centres, spreads, fitted
coefficients); no incident row is copied. The output is deterministic: sorted keys, rounded
floats, so re-running it on the same inputs gives a byte-identical file.

Usage: python scripts/calibrate_generator.py [--real-dir DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a plain script from a checkout, without installing

from crimeflow.contract.schema import CHICAGO_BOUNDS, to_canonical  # noqa: E402
from crimeflow.standins.generate import (  # noqa: E402
    LOCATION_RENAMES_2020,
    PROFILE_PATH,
    PROFILE_VERSION,
    STATION_KM_OFFSET,
    arrest_probability,
    generate_incidents,
    nearest_station_km,
)

FILE_2018 = "crimes_2018-01_to_2018-10_chicagocrimedata-datastore.csv.gz"
MODERN_FILES = (
    "crimes_2025-10-18_to_2025-11-03_api_jean-carlos-l.csv",
    "crimes_2024_export_10k_paras-18.csv",
)
IUCR_COVERAGE = 0.95  # keep a type's most frequent IUCR codes until they cover this share
MAX_IUCR_PER_TYPE = 25
LOCATIONS_PER_TYPE = 30
CELL_COVERAGE = 0.90  # joint (IUCR, location) pairs kept until they cover this share of a type
MAX_CELLS_PER_TYPE = 80
MIN_ROWS_OWN_PROFILE = 1000  # rarer types borrow the overall beat mix and hour profile
STREETS_PER_BEAT = 4
GRID_MIN_ROWS = 30  # hundred-blocks with fewer geocoded rows give no knot
GRID_STEP = 3  # every third hundred-block is plenty for a linear map
DOMESTIC_PRIOR_ROWS = 20.0  # shrink small (type, location) domestic rates toward the type's rate
HOUR_PRIOR_ROWS = 240.0  # shrink small types' hour profiles toward the overall profile
L2_C = 1.0
CALIBRATION_ROWS_PER_MONTH = 10_000
CALIBRATION_SEEDS = (101, 102, 103, 104, 105, 106)
CALIBRATION_ROUNDS = 4
MIN_ROWS_OWN_OFFSET = 1000  # rarer types' real rates are too noisy to calibrate against
# Written into the profile so a reviewer of the JSON knows what each field holds.
PROFILE_NOTES = {
    "primary_types.*.cells": "[iucr, location, share, domestic_rate]: the frequent joint pairs",
    "primary_types.*.iucr": "[iucr, description, fbi_code, share outside the cells]",
    "primary_types.*.locations": "[location, share outside the cells, domestic rate there]",
    "primary_types.*.beat_counts": "rows per beat, aligned with beat_order (types >= 1000 rows)",
    "primary_types.*.hour": "hour-of-day shares (types >= 1000 rows; others use hour)",
    "beats.*.x|y": "State Plane East feet: [median, robust sd, 1st pct, 99th pct]",
    "beats.*.wards|community_areas": "[value, share] (shares >= 2 %)",
    "beats.*.streets": "[direction + street, share], the beat's most frequent blocks",
    "address_grid": "State Plane feet -> signed house number (N and E positive)",
    "weekday": "Monday first",
    "arrest_model": "log-odds = intercept + types[T].offset + types[T].iucr[IUCR]"
    " + types[T].location[LOCATION] + types[T].domestic (if domestic) + hour[h] + district[d]"
    " + per_log_km_to_station * log(km + 0.25); the 'OTHER' keys cover a type's long tail;"
    " offsets are calibrated so generated per-type arrest rates match the real ones",
}
BLOCK_PATTERN = re.compile(r"^(\d{3}XX|\d{4}X) ([NSEW]) (.+)$")


def load_2018(real_dir: Path) -> pd.DataFrame:
    """The 2018 Socrata export as a canonical frame."""
    raw = pd.read_csv(real_dir / FILE_2018, dtype=str, keep_default_na=False, na_values=[""])
    return to_canonical(raw)


def modern_vocabulary(real_dir: Path) -> list[str]:
    """Location descriptions seen in the 2024/2025 files (the post-2020 CPD vocabulary)."""
    names: set[str] = set()
    for name in MODERN_FILES:
        path = real_dir / name
        if path.exists():
            frame = to_canonical(pd.read_csv(path, dtype=str))
            names |= set(frame["location_description"].dropna())
    return sorted(names)


def _shares(counts: pd.Series) -> list[float]:
    """Counts as shares rounded to 5 decimals."""
    return [round(float(v), 5) for v in (counts / counts.sum()).tolist()]


def hour_profiles(frame: pd.DataFrame, types: Iterable[str]) -> tuple[list[float], dict]:
    """Overall hour-of-day shares, and per type shrunk toward the overall profile."""
    hours = frame["date"].dt.hour
    overall = hours.value_counts().reindex(range(24), fill_value=0).astype(float)
    overall_share = overall / overall.sum()
    per_type = {}
    for name in types:
        counts = (
            hours[frame["primary_type"] == name].value_counts().reindex(range(24), fill_value=0)
        )
        smoothed = counts.astype(float) + HOUR_PRIOR_ROWS * overall_share
        per_type[name] = _shares(smoothed)
    return _shares(overall), per_type


def _shrunk_domestic(rows: pd.DataFrame, prior: float) -> float:
    """Domestic rate of `rows`, shrunk toward `prior` for small groups."""
    hits = float(rows["domestic"].astype(float).sum())
    return round((hits + DOMESTIC_PRIOR_ROWS * prior) / (len(rows) + DOMESTIC_PRIOR_ROWS), 4)


def offense_tables(rows: pd.DataFrame) -> dict[str, list[list[Any]]]:
    """A type's joint (IUCR, location) cells plus the marginals for the rows they miss.

    Sampling IUCR and location independently would put retail theft on the street and
    domestic battery in non-domestic rows; the most frequent pairs are therefore kept jointly
    ("cells", ~90 % of the rows), with their own domestic rate. The remaining rows ("tail")
    are described by residual IUCR and location shares (relative to all the type's rows).

    - iucr: [iucr, description, fbi_code, tail_share]
    - locations: [location, tail_share, tail_domestic_rate]
    - cells: [iucr, location, share, domestic_rate]
    """
    located = rows.dropna(subset=["location_description"])
    type_domestic = float(located["domestic"].astype(float).mean())
    pairs = located.groupby(["iucr", "location_description"]).size()
    pairs = pairs.sort_values(ascending=False, kind="stable")
    covered = (pairs.cumsum() / len(located)).shift(fill_value=0.0) < CELL_COVERAGE
    cells = pairs[covered.to_numpy()].head(MAX_CELLS_PER_TYPE)
    in_cell = pd.MultiIndex.from_frame(located[["iucr", "location_description"]]).isin(cells.index)
    tail = located[~in_cell]

    counts = located["iucr"].value_counts()
    cumulative = counts.cumsum() / counts.sum()
    top = counts.index[: int((cumulative < IUCR_COVERAGE).sum()) + 1][:MAX_IUCR_PER_TYPE]
    codes = sorted(set(top) | set(cells.index.get_level_values(0)))
    places = located["location_description"].value_counts().head(LOCATIONS_PER_TYPE).index
    names = sorted(set(places) | set(cells.index.get_level_values(1)))
    tail_iucr = tail["iucr"].value_counts()
    tail_places = tail["location_description"].value_counts()

    iucr = []
    for code in codes:
        subset = rows[rows["iucr"] == code]
        share = float(tail_iucr.get(code, 0)) / len(located)
        iucr.append(
            [
                code,
                subset["description"].mode().iloc[0],
                subset["fbi_code"].mode().iloc[0],
                round(max(share, 1e-5), 5),
            ]
        )
    locations = []
    for name in names:
        share = float(tail_places.get(name, 0)) / len(located)
        domestic = _shrunk_domestic(tail[tail["location_description"] == name], type_domestic)
        locations.append([name, round(max(share, 1e-5), 5), domestic])
    joint = []
    for (code, name), count in sorted(cells.items()):
        subset = located[(located["iucr"] == code) & (located["location_description"] == name)]
        share = round(count / len(located), 5)
        joint.append([code, name, share, _shrunk_domestic(subset, type_domestic)])
    return {"iucr": iucr, "locations": locations, "cells": joint}


def beat_table(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per beat: district, ward/community-area mixes, coordinate centre/spread/box, streets."""
    located = frame.dropna(subset=["beat"])
    beats: dict[str, dict[str, Any]] = {}
    for beat, rows in located.groupby("beat", sort=True):
        xy = rows.dropna(subset=["x_coordinate", "y_coordinate"])
        inside = xy[
            xy["x_coordinate"].between(*CHICAGO_BOUNDS["x_coordinate"])
            & xy["y_coordinate"].between(*CHICAGO_BOUNDS["y_coordinate"])
        ]
        if len(inside) < 5:
            continue  # too few geocoded rows to place points in this beat
        entry: dict[str, Any] = {"rows": len(rows), "district": rows["district"].mode().iloc[0]}
        for column, key in (("ward", "wards"), ("community_area", "community_areas")):
            counts = rows[column].dropna().value_counts(normalize=True)
            counts = counts[counts >= 0.02]
            entry[key] = [[int(k), round(float(v), 4)] for k, v in sorted(counts.items())]
        for axis in ("x", "y"):
            values = inside[f"{axis}_coordinate"]
            low, high = values.quantile([0.01, 0.99])
            spread = (values.quantile(0.75) - values.quantile(0.25)) / 1.349
            entry[axis] = [
                round(float(v)) for v in (values.median(), max(spread, 150.0), low, high)
            ]
        streets = rows["block"].str.extract(BLOCK_PATTERN)[[1, 2]].dropna()
        names = (streets[1] + " " + streets[2]).value_counts().head(STREETS_PER_BEAT)
        entry["streets"] = [[k, round(float(v / names.sum()), 4)] for k, v in sorted(names.items())]
        beats[str(beat)] = entry
    return beats


def address_grid(frame: pd.DataFrame) -> dict[str, list[float]]:
    """Piecewise-linear maps from State Plane feet to signed house numbers (N/E positive).

    Built from the median coordinate of each hundred-block number: medians over many rows
    shrug off the odd addresses (O'Hare's '0000X W TERMINAL ST' sits 17 miles west of State St).
    """
    parts = frame["block"].str.extract(BLOCK_PATTERN)
    hundreds = pd.to_numeric(parts[0].str.replace("X", "0"), errors="coerce")
    grid: dict[str, list[float]] = {}
    for axis, positive, negative in (("y", "N", "S"), ("x", "E", "W")):
        sign = parts[1].map({positive: 1.0, negative: -1.0})
        pairs = pd.DataFrame(
            {"number": (hundreds + 50.0) * sign, "coord": frame[f"{axis}_coordinate"]}
        ).dropna()
        medians = pairs.groupby("number")["coord"].agg(["median", "size"])
        medians = medians[medians["size"] >= GRID_MIN_ROWS].iloc[::GRID_STEP]
        # Numbers grow with the coordinate; drop the knots where the medians wobble back.
        coords = medians["median"].to_numpy()
        keep = coords > np.concatenate(([-np.inf], np.maximum.accumulate(coords)[:-1]))
        grid[f"{axis}_knots"] = [round(float(v)) for v in coords[keep]]
        grid[f"{axis}_numbers"] = [float(v) for v in medians.index[keep]]
    return grid


def _keys(frame: pd.DataFrame, profile: dict) -> tuple[pd.Series, pd.Series]:
    """Arrest-model keys: 'TYPE|IUCR' and 'TYPE|LOCATION', with 'TYPE|OTHER' for the long tail."""
    kind = frame["primary_type"].fillna("OTHER")
    iucr_known = {f"{t}|{row[0]}" for t, e in profile["primary_types"].items() for row in e["iucr"]}
    loc_known = {
        f"{t}|{row[0]}" for t, e in profile["primary_types"].items() for row in e["locations"]
    }
    iucr = kind + "|" + frame["iucr"].fillna("")
    location = kind + "|" + frame["location_description"].fillna("")
    iucr = iucr.where(iucr.isin(iucr_known), kind + "|OTHER")
    location = location.where(location.isin(loc_known), kind + "|OTHER")
    return iucr, location


def fit_arrest_model(frame: pd.DataFrame, profile: dict) -> dict[str, Any]:
    """L2 logistic regression of arrest on IUCR, type x location, domestic x type, hour,
    district and log distance to the nearest station; returns its coefficients by name."""
    iucr, location = _keys(frame, profile)
    domestic = frame["primary_type"].where(frame["domestic"].fillna(False).astype(bool))
    hour = frame["date"].dt.hour.astype(str)
    district = frame["district"].fillna("UNKNOWN")
    km = nearest_station_km(
        frame["x_coordinate"].to_numpy(float), frame["y_coordinate"].to_numpy(float)
    )
    median_km = float(np.nanmedian(km))
    km = np.where(np.isnan(km), median_km, km)
    blocks = []
    names: list[tuple[str, str]] = []
    for group, values in (
        ("iucr", iucr),
        ("location", location),
        ("domestic", domestic),
        ("hour", hour),
        ("district", district),
    ):
        codes, uniques = pd.factorize(values, sort=True)
        rows = np.flatnonzero(codes >= 0)
        blocks.append(
            sparse.csr_matrix(
                (np.ones(len(rows)), (rows, codes[rows])), shape=(len(frame), len(uniques))
            )
        )
        names += [(group, str(u)) for u in uniques]
    blocks.append(sparse.csr_matrix(np.log(km + STATION_KM_OFFSET).reshape(-1, 1)))
    names.append(("per_log_km_to_station", ""))
    design = sparse.hstack(blocks, format="csr")
    target = frame["arrest"].fillna(False).astype(bool).to_numpy()
    model = LogisticRegression(C=L2_C, solver="lbfgs", max_iter=5000, tol=1e-8)
    with threadpool_limits(1):  # threaded BLAS sums in varying order; the file must not change
        model.fit(design, target)
    types: dict[str, dict[str, Any]] = {
        name: {"domestic": 0.0, "iucr": {}, "location": {}, "offset": 0.0}
        for name in profile["primary_types"]
    }
    coefs: dict[str, Any] = {
        "intercept": round(float(model.intercept_[0]), 4),
        "hour": [0.0] * 24,
        "district": {},
        "median_station_km": round(median_km, 4),
        "types": types,
    }
    for (group, key), value in zip(names, model.coef_[0], strict=True):
        value = round(float(value), 4)
        if group == "hour":
            coefs["hour"][int(key)] = value
        elif group == "per_log_km_to_station":
            coefs[group] = value
        elif group == "district":
            coefs["district"][key] = value
        elif group == "domestic":
            types[key]["domestic"] = value
        else:
            kind, _, code = key.partition("|")
            types[kind][group][code] = value
    return coefs


def _logit(rate: float) -> float:
    """Log-odds of a rate kept away from 0 and 1 (some rare types have 100 % arrests)."""
    rate = min(max(rate, 0.002), 0.998)
    return math.log(rate / (1 - rate))


def calibrate_type_offsets(profile: dict) -> float:
    """Per-type log-odds offsets so generated data reproduces each type's real arrest rate.

    The generator samples IUCR and location independently within a type, which breaks
    correlations the regression relied on (retail theft happens in stores), so fitted
    coefficients alone put THEFT at 8 % instead of 9.6 %. Types with fewer rows than
    `MIN_ROWS_OWN_OFFSET` get the row-weighted mean offset. Uses expected, not sampled, arrests;
    returns the overall expected rate reached.
    """
    types = profile["primary_types"]
    offsets = {name: 0.0 for name in types}
    big = [name for name, e in types.items() if e["rows"] >= MIN_ROWS_OWN_OFFSET]
    for _ in range(CALIBRATION_ROUNDS):
        frames = [
            generate_incidents(
                "2018-01",
                "2018-10",
                rows_per_month=CALIBRATION_ROWS_PER_MONTH,
                seed=seed,
                profile=profile,
            )
            for seed in CALIBRATION_SEEDS
        ]
        expected = pd.concat(
            pd.DataFrame({"type": f["primary_type"], "p": arrest_probability(f, profile=profile)})
            for f in frames
        )
        by_type = expected.groupby("type")["p"].mean()
        for name in big:
            offsets[name] += _logit(types[name]["arrest_rate"]) - _logit(by_type[name])
        weight = sum(types[name]["rows"] for name in big)
        mean = sum(offsets[name] * types[name]["rows"] for name in big) / weight
        for name in types:
            offsets[name] = round(offsets[name] if name in big else mean, 4)
            profile["arrest_model"]["types"][name]["offset"] = offsets[name]
    return float(expected["p"].mean())


def build_profile(frame: pd.DataFrame, modern: list[str]) -> dict[str, Any]:
    """All generator statistics from the canonical 2018 frame."""
    type_counts = frame["primary_type"].value_counts()
    types = sorted(type_counts.index)
    overall_hour, type_hours = hour_profiles(frame, types)
    beats = beat_table(frame)
    beat_order = sorted(beats)
    weekday = frame["date"].dt.dayofweek.value_counts().reindex(range(7), fill_value=0)
    minute = frame["date"].dt.minute.value_counts().reindex(range(60), fill_value=0)
    arrest = frame["arrest"].astype(float)
    primary_types: dict[str, Any] = {}
    for name in types:
        rows = frame[frame["primary_type"] == name]
        entry: dict[str, Any] = {
            "share": round(float(type_counts[name] / len(frame)), 6),
            "rows": int(type_counts[name]),
            "arrest_rate": round(float(rows["arrest"].astype(float).mean()), 4),
            "domestic_rate": round(float(rows["domestic"].astype(float).mean()), 4),
            **offense_tables(rows),
        }
        if len(rows) >= MIN_ROWS_OWN_PROFILE:
            # Rarer types use the overall hour profile and beat mix.
            entry["hour"] = type_hours[name]
            counts = rows["beat"].value_counts().reindex(beat_order, fill_value=0)
            entry["beat_counts"] = [int(v) for v in counts]
        primary_types[name] = entry
    coordinates_missing = frame["x_coordinate"].isna() | frame["latitude"].isna()
    profile: dict[str, Any] = {
        "version": PROFILE_VERSION,
        "source": {
            "file": FILE_2018,
            "rows": len(frame),
            "first_date": str(frame["date"].min().date()),
            "last_date": str(frame["date"].max().date()),
            "modern_vocabulary_files": list(MODERN_FILES),
        },
        "arrest_rate": round(float(arrest.mean()), 4),
        "domestic_rate": round(float(frame["domestic"].astype(float).mean()), 4),
        "missing_coordinates_share": round(float(coordinates_missing.mean()), 5),
        "missing_location_share": round(float(frame["location_description"].isna().mean()), 5),
        "hour": overall_hour,
        "weekday": _shares(weekday.astype(float)),
        "minute": _shares(minute.astype(float)),
        "beat_order": beat_order,
        "beats": beats,
        "address_grid": address_grid(frame),
        "primary_types": primary_types,
        "modern_location_vocabulary": modern,
        "notes": PROFILE_NOTES,
    }
    profile["arrest_model"] = fit_arrest_model(frame, profile)
    return profile


def render(value: Any, depth: int = 0) -> str:
    """JSON with sorted keys, one entry per line, and lists of scalars kept on one line."""
    pad, inner = " " * depth, " " * (depth + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [
            f"{inner}{json.dumps(key)}: {render(value[key], depth + 1)}" for key in sorted(value)
        ]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        items = [f"{inner}{render(v, depth + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(value, separators=(", ", ": "), sort_keys=True, ensure_ascii=False)


def check_renames(profile: dict) -> list[str]:
    """Warnings for rename-table entries that the real vocabularies do not support."""
    modern = set(profile["modern_location_vocabulary"])
    emitted = {row[0] for e in profile["primary_types"].values() for row in e["locations"]}
    warnings = [
        f"rename target not seen in modern files: {new!r}"
        for new in LOCATION_RENAMES_2020.values()
        if new not in modern
    ]
    warnings += [
        f"generated location neither modern nor renamed: {name!r}"
        for name in sorted(emitted)
        if name not in modern and name not in LOCATION_RENAMES_2020
    ]
    return warnings


def main(argv: list[str] | None = None) -> int:
    """Build, calibrate and write the profile; print what was measured."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real-dir", type=Path, default=REPO / ".." / "shared" / "data" / "real")
    parser.add_argument("--out", type=Path, default=PROFILE_PATH)
    args = parser.parse_args(argv)
    frame = load_2018(args.real_dir)
    profile = build_profile(frame, modern_vocabulary(args.real_dir))
    expected = calibrate_type_offsets(profile)
    text = render(profile) + "\n"
    args.out.write_text(text, encoding="utf-8")
    print(f"rows read: {len(frame):,}; real arrest rate {profile['arrest_rate']:.4f}")
    offsets = {name: e["offset"] for name, e in profile["arrest_model"]["types"].items()}
    print(
        f"type offsets: THEFT {offsets['THEFT']:+.4f}, BATTERY {offsets['BATTERY']:+.4f},"
        f" rare types {offsets['HOMICIDE']:+.4f}; expected rate in the last round {expected:.4f}"
    )
    print(f"wrote {args.out} ({len(text.encode()):,} bytes)")
    for note in check_renames(profile):
        print("note:", note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
