"""The arrest-defined crime types: one list, one mask."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crimeflow.domain.arrest_defined import ARREST_DEFINED_TYPES, arrest_defined_mask


def test_the_mask_flags_listed_types_whatever_their_case_and_padding() -> None:
    types = pd.Series(["NARCOTICS", " prostitution ", "THEFT", None, "GAMBLING"], dtype="string")
    assert arrest_defined_mask(types).tolist() == [True, True, False, False, True]


def test_the_mask_takes_plain_arrays_and_is_empty_for_no_rows() -> None:
    mask = arrest_defined_mask(np.array(["BATTERY", "LIQUOR LAW VIOLATION"], dtype=object))
    assert mask.dtype == bool and mask.tolist() == [False, True]
    assert arrest_defined_mask(pd.Series([], dtype="string")).size == 0


def test_the_list_names_police_initiated_types_only() -> None:
    assert len(set(ARREST_DEFINED_TYPES)) == len(ARREST_DEFINED_TYPES)
    assert all(name == name.upper().strip() for name in ARREST_DEFINED_TYPES)
    # Victim-reported crimes never belong here, however often they end in an arrest.
    assert not {"BATTERY", "HOMICIDE", "WEAPONS VIOLATION", "THEFT"} & set(ARREST_DEFINED_TYPES)
