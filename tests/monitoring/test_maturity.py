"""Label maturity from one snapshot's update times, on constructed incidents."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.maturity import (
    bulk_update_days,
    late_update_profile,
    mature_mask,
    maturity_days,
)


def incidents(days: int = 200, per_day: int = 40, seed: int = 0) -> pd.DataFrame:
    """Incidents published 7 days after the fact; 20 % arrests, a tenth of them updated at 40 days.

    Non-arrests get a late edit at 20 days 5 % of the time; the snapshot is the newest update.
    """
    rng = np.random.default_rng(seed)
    dates = pd.Timestamp("2020-01-01") + pd.to_timedelta(np.repeat(np.arange(days), per_day), "D")
    arrest = rng.random(len(dates)) < 0.2
    lag = np.full(len(dates), 7.0)
    lag[arrest & (rng.random(len(dates)) < 0.1)] = 40.0
    lag[~arrest & (rng.random(len(dates)) < 0.05)] = 20.0
    frame = pd.DataFrame({"date": dates, "arrest": pd.array(arrest, dtype="boolean")})
    frame["updated_on"] = frame["date"] + pd.to_timedelta(lag, "D")
    return frame


def test_profile_measures_late_arrest_updates_and_the_excess_over_other_edits() -> None:
    profile, cohort = late_update_profile(incidents(), lags_days=(7, 14, 30, 45), horizon_days=60)
    by_lag = profile.set_index("lag_days")
    assert by_lag.loc[14, "arrests_updated_later"] == pytest.approx(0.10, abs=0.02)
    assert by_lag.loc[14, "others_updated_later"] == pytest.approx(0.05, abs=0.01)
    assert by_lag.loc[30, "excess"] == pytest.approx(0.10, abs=0.02)
    assert by_lag.loc[45, "arrests_updated_later"] == 0.0
    assert cohort["first_update_lag_days"] == pytest.approx(7.0)
    assert maturity_days(profile, max_late_share=0.05) == 45
    assert maturity_days(profile, max_late_share=0.2) == 7


def test_profile_leaves_out_incidents_too_young_to_show_late_updates() -> None:
    frame = incidents()
    profile, cohort = late_update_profile(frame, lags_days=(30,), horizon_days=60)
    assert cohort["last_incident"] <= frame["updated_on"].max() - pd.Timedelta(days=60)
    # Were the young ones counted, their missing late updates would dilute the share.
    assert profile["arrests_updated_later"].iloc[0] == pytest.approx(0.10, abs=0.02)


def test_profile_starts_after_a_bulk_update_that_overwrote_update_times() -> None:
    frame = incidents()
    bulk_day = pd.Timestamp("2020-03-01")
    touched = frame["date"] < bulk_day
    frame.loc[touched, "updated_on"] = bulk_day + pd.Timedelta(hours=3)
    assert bulk_update_days(frame) == [bulk_day]
    profile, cohort = late_update_profile(frame, lags_days=(30,), horizon_days=60)
    assert cohort["first_incident"] >= bulk_day + pd.Timedelta(days=1)
    assert profile["arrests_updated_later"].iloc[0] == pytest.approx(0.10, abs=0.03)


def test_profile_and_maturity_refuse_what_they_cannot_measure() -> None:
    with pytest.raises(ValueError, match="largest lag"):
        late_update_profile(incidents(), lags_days=(90,), horizon_days=60)
    with pytest.raises(ValueError, match="no incidents between"):
        late_update_profile(incidents(days=10), lags_days=(30,), horizon_days=60)
    profile, _ = late_update_profile(incidents(), lags_days=(7, 14), horizon_days=60)
    with pytest.raises(ValueError, match="updated after 14 days"):
        maturity_days(profile, max_late_share=0.01)


def test_mature_mask_counts_only_incidents_old_enough() -> None:
    dates = pd.Series(pd.to_datetime(["2020-01-01", "2020-02-15", None, "2020-03-01"]))
    mask = mature_mask(dates, pd.Timestamp("2020-03-31"), maturity=30)
    assert mask.tolist() == [True, True, False, True]
    assert mature_mask(dates, pd.Timestamp("2020-03-31"), maturity=60).tolist() == [
        True,
        False,
        False,
        False,
    ]
