"""Behavioural checks of an arrest model (invariance, minimum functionality, direction).

The same expectations the model's unit tests hold the trained pipeline to, as functions the
staging gate runs on a candidate: a model that breaks them is not promoted, whatever its AUC.
Each check returns a list of failures (empty: passed) so the gate can record the reasons.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from crimeflow.domain.features import MODEL_INPUT_COLUMNS

# A possession arrest is made on the spot; a small theft is usually reported after the fact.
# Every reasonable arrest model ranks the first above the second at the same place and time.
NARCOTICS = {"iucr": "2027", "primary_type": "NARCOTICS", "description": "POSS: CRACK"}
THEFT = {"iucr": "0820", "primary_type": "THEFT", "description": "$500 AND UNDER"}
DIRECTION_MIN_SHARE = 0.9
SAMPLE_ROWS = 200


def _model_input(rows: pd.DataFrame) -> pd.DataFrame:
    """The API body's columns of `rows` (copied, so checks can edit them)."""
    return rows.reindex(columns=list(MODEL_INPUT_COLUMNS)).reset_index(drop=True).copy()


def _valid_probabilities(proba: np.ndarray, rows: int) -> bool:
    """Shape (rows, 2), finite, within [0, 1], rows summing to 1."""
    return (
        proba.shape == (rows, 2)
        and bool(np.isfinite(proba).all())
        and bool(((proba >= 0) & (proba <= 1)).all())
        and bool(np.allclose(proba.sum(axis=1), 1.0))
    )


def check_invariance(model: Any, rows: pd.DataFrame) -> list[str]:
    """Bookkeeping fields (case number, block) must not move the probability."""
    base = _model_input(rows)
    changed = base.copy()
    changed["case_number"] = pd.array([f"ZZ{i:06d}" for i in range(len(base))], dtype="string")
    changed["block"] = pd.array(["001XX N FAKE ST"] * len(base), dtype="string")
    moved = np.abs(model.predict_proba(changed)[:, 1] - model.predict_proba(base)[:, 1])
    if moved.max(initial=0.0) > 1e-9:
        return [f"invariance: case_number/block moved the probability by up to {moved.max():.3g}"]
    return []


def check_minimum_functionality(model: Any, rows: pd.DataFrame) -> list[str]:
    """Unseen codes, renamed locations and missing values still give valid probabilities."""
    probe = _model_input(rows.head(8))
    if len(probe) < 8:
        return ["minimum functionality: fewer than 8 rows to probe with"]
    probe["iucr"] = pd.array(["9999", "0000", None, "X1", "0486", "0820", "1811", "2027"], "string")
    probe.loc[0, "location_description"] = "RESIDENCE - PORCH / HALLWAY"
    probe.loc[1, ["beat", "district"]] = ["9999", "099"]
    probe.loc[2, ["x_coordinate", "y_coordinate", "latitude", "longitude"]] = np.nan
    probe.loc[3, "domestic"] = pd.NA
    probe.loc[4, "ward"] = pd.NA
    probe.loc[5, "primary_type"] = "A BRAND NEW OFFENCE"
    try:
        proba = model.predict_proba(probe)
    except Exception as error:  # the point of the check is that nothing raises
        return [f"minimum functionality: scoring unseen/missing values raised {error!r}"]
    if not _valid_probabilities(np.asarray(proba), len(probe)):
        return ["minimum functionality: unseen/missing values gave invalid probabilities"]
    return []


def check_direction(model: Any, rows: pd.DataFrame) -> list[str]:
    """Narcotics possession scores above a small theft at the same place and time."""
    places = _model_input(rows)
    scored = {}
    for name, crime in (("narcotics", NARCOTICS), ("theft", THEFT)):
        frame = places.assign(**crime)
        for column in crime:
            frame[column] = frame[column].astype("string")
        scored[name] = model.predict_proba(frame)[:, 1]
    share = float(np.mean(scored["narcotics"] > scored["theft"]))
    if share < DIRECTION_MIN_SHARE:
        return [
            f"direction: narcotics scored above theft in {share:.0%} of places "
            f"(expected ≥ {DIRECTION_MIN_SHARE:.0%})"
        ]
    return []


CHECKS: tuple[Callable[[Any, pd.DataFrame], list[str]], ...] = (
    check_invariance,
    check_minimum_functionality,
    check_direction,
)


def behavioural_failures(model: Any, rows: pd.DataFrame, seed: int = 0) -> list[str]:
    """Run every behavioural check on a seeded sample of `rows`; the failures, if any."""
    sample = rows.sample(min(SAMPLE_ROWS, len(rows)), random_state=seed)
    failures: list[str] = []
    for check in CHECKS:
        failures += check(model, sample)
    return failures
