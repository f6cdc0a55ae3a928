"""The crime types whose records are created by an arrest or by police action.

For these types the police learn of the offence by making the stop or the arrest (a drug
possession, a solicitation, a gambling game, an open liquor bottle, resisting an officer), so
`arrest` is close to always true by construction: a model "predicting" it reads the type off the
record. Headline metrics are reported overall and without them (`excluding_arrest_defined`) so
nobody mistakes that for skill. docs/model-and-data.md justifies every entry with its 2018
arrest rate; this tuple is the one place the list lives.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Primary types as Chicago's `primary_type` spells them.
ARREST_DEFINED_TYPES: tuple[str, ...] = (
    "NARCOTICS",
    "OTHER NARCOTIC VIOLATION",
    "PROSTITUTION",
    "GAMBLING",
    "LIQUOR LAW VIOLATION",
    "PUBLIC INDECENCY",
    "INTERFERENCE WITH PUBLIC OFFICER",
    "CONCEALED CARRY LICENSE VIOLATION",
)


def arrest_defined_mask(primary_type: pd.Series | np.ndarray) -> np.ndarray:
    """True for rows whose primary type is arrest-defined (case and padding ignored)."""
    text = pd.Series(primary_type, dtype="string").str.strip().str.upper()
    return text.isin(ARREST_DEFINED_TYPES).fillna(False).to_numpy(dtype=bool)
