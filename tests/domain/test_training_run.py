"""What a training run records: its months, the reference sample, tags and links."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crimeflow.contract.schema import SODA_COLUMNS
from crimeflow.contract.settings import MlflowSettings
from crimeflow.domain.training_run import (
    PROBABILITY,
    month_list,
    newest_months,
    reference_sample,
    run_url,
    span,
)
from crimeflow.standins.generate import generate_incidents


@pytest.fixture(scope="module")
def incidents() -> pd.DataFrame:
    return generate_incidents("2018-01", "2018-04", rows_per_month=300, seed=2)


def test_newest_months_up_to_until():
    months = ["2018-01", "2018-02", "2018-03", "2018-04"]
    assert newest_months(months, None, 2) == ["2018-03", "2018-04"]
    assert newest_months(months, "2018-02", 12) == ["2018-01", "2018-02"]
    assert newest_months(months, "2017-12", 3) == []


def test_reference_sample_keeps_each_month_and_the_score(incidents):
    proba = np.linspace(0, 1, len(incidents))
    sample = reference_sample(incidents, proba, rows=400, seed=0)
    assert list(sample.columns) == [*SODA_COLUMNS, PROBABILITY]
    per_month = sample["date"].dt.strftime("%Y-%m").value_counts()
    assert sorted(per_month.index) == ["2018-01", "2018-02", "2018-03", "2018-04"]
    assert per_month.min() >= 90 and per_month.sum() == pytest.approx(400, abs=4)
    assert sample["date"].is_monotonic_increasing
    again = reference_sample(incidents, proba, rows=400, seed=0)
    pd.testing.assert_frame_equal(sample, again)  # seeded
    assert len(reference_sample(incidents, proba, rows=10**6, seed=0)) == len(incidents)


def test_span_and_month_list(incidents):
    assert span(incidents) == "2018-01..2018-04"
    assert month_list(incidents) == "2018-01,2018-02,2018-03,2018-04"


def test_run_url_points_at_the_ui_of_the_store():
    embedded = MlflowSettings(tracking_uri="sqlite:///x.db", port=5123)
    assert run_url(embedded, "7", "abc") == "http://127.0.0.1:5123/#/experiments/7/runs/abc"
    server = MlflowSettings(tracking_uri="http://mlflow:5000/")
    assert run_url(server, "7", "abc") == "http://mlflow:5000/#/experiments/7/runs/abc"
