"""The analyst report's statistics against scipy and first principles, and its two renderings."""

from __future__ import annotations

import base64
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from crimeflow.domain.analysis import (
    MIN_EXPECTED,
    POOLED_LABEL,
    WEEKDAYS,
    Rate,
    analyse,
    analysis_window,
    arrest_trend,
    chi_square,
    contingency,
    heat_table,
    labelled,
    pool_sparse,
    wilson_interval,
)
from crimeflow.domain.analysis_plots import area_map_png, heat_map_png
from crimeflow.domain.analysis_report import NO_MAP, report_html, report_markdown
from crimeflow.domain.enrich import add_temporal_features
from crimeflow.standins.generate import generate_incidents
from crimeflow.stores.files import read_incidents_file
from tests.conftest import FILE_2018

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _frame(rows: list[tuple[str, int, int]]) -> pd.DataFrame:
    """A labelled frame from (district, incidents, arrests) triples."""
    parts = []
    for district, n, k in rows:
        parts.append(pd.DataFrame({"district": district, "arrest": [1] * k + [0] * (n - k)}))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def generated() -> dict[str, pd.DataFrame]:
    """Three generated months, enriched with the calendar columns, by month."""
    frame = add_temporal_features(generate_incidents("2024-01", "2024-03", rows_per_month=4000))
    return {m: g for m, g in frame.groupby(frame["date"].dt.strftime("%Y-%m"))}


def test_wilson_interval_equals_scipy() -> None:
    for k, n in [(0, 10), (3, 10), (10, 10), (3938, 22185), (1, 7)]:
        low, high = wilson_interval(k, n)
        expected = stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
        assert low == pytest.approx(expected.low, abs=1e-12)
        assert high == pytest.approx(expected.high, abs=1e-12)


def test_chi_square_equals_scipy_and_pearsons_formula() -> None:
    frame = _frame([("001", 400, 80), ("002", 300, 90), ("003", 500, 60), ("004", 200, 70)])
    test = chi_square(frame, "district")
    table = np.array([[320, 80], [210, 90], [440, 60], [130, 70]])
    assert test.table == table.tolist() and test.categories == ["001", "002", "003", "004"]
    expected = stats.chi2_contingency(table, correction=False)
    assert test.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert test.dof == 3 and test.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    # Pearson's sum over cells of (observed - expected)^2 / expected, by hand.
    fitted = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    assert test.statistic == pytest.approx(((table - fitted) ** 2 / fitted).sum(), rel=1e-12)


def test_sparse_categories_are_pooled_until_expected_counts_reach_five() -> None:
    # Arrest share 0.2: a category needs 25 incidents for an expected arrest count of 5.
    frame = _frame([("001", 500, 100), ("002", 500, 100), ("003", 10, 2), ("004", 20, 4)])
    test = chi_square(frame, "district")
    assert test.pooled == ["003", "004"] and not test.dropped
    assert test.categories == ["001", "002", POOLED_LABEL]
    assert test.table[-1] == [24, 6] and test.min_expected >= MIN_EXPECTED
    expected = stats.chi2_contingency(np.array(test.table), correction=False)
    assert test.statistic == pytest.approx(expected.statistic) and test.dof == 2


def test_a_pool_that_stays_sparse_is_left_out() -> None:
    frame = _frame([("001", 500, 100), ("002", 500, 100), ("003", 10, 2)])
    table, pooled, dropped = pool_sparse(contingency(frame, "district"))
    assert pooled == dropped == ["003"] and list(table.index) == ["001", "002"]


def test_chi_square_needs_two_categories() -> None:
    assert chi_square(_frame([("001", 100, 20)]), "district") is None


def test_trend_is_cochran_armitage() -> None:
    """Z^2 = N r^2 (r: individual-level correlation of arrest and month); slope = WLS slope."""
    counts = [(1000, 230), (900, 200), (1100, 220), (950, 170)]
    rates = [Rate(f"2024-0{i + 1}", n, k, k / n, 0, 0) for i, (n, k) in enumerate(counts)]
    trend = arrest_trend(rates)
    t = np.concatenate([np.full(n, i) for i, (n, _) in enumerate(counts)])
    y = np.concatenate([np.r_[np.ones(k), np.zeros(n - k)] for n, k in counts])
    r = np.corrcoef(t, y)[0, 1]
    assert trend.z**2 == pytest.approx(len(y) * r**2, rel=1e-10) and trend.z < 0
    n = np.array([c[0] for c in counts])
    p = np.array([c[1] / c[0] for c in counts])
    slope = np.polyfit(np.arange(4), p, 1, w=np.sqrt(n))[0]
    assert trend.slope_per_month == pytest.approx(slope, rel=1e-10)
    assert trend.p_value == pytest.approx(2 * stats.norm.sf(abs(trend.z)))
    assert arrest_trend(rates[:1]) is None


def test_heat_table_counts_every_incident_once(generated) -> None:
    month = labelled(generated["2024-03"])
    rates, counts = heat_table(month)
    assert np.array(counts).sum() == len(month)
    monday_noon = month[(month["weekday"] == 0) & (month["hour"] == 12)]
    assert counts[0][12] == len(monday_noon)
    if len(monday_noon) >= 20:
        assert rates[0][12] == pytest.approx(monday_noon["arrest"].mean())


def test_window_is_the_newest_months_up_to_the_report_month() -> None:
    months = ["2024-01", "2024-02", "2024-03", "2024-04"]
    assert analysis_window(months, None, 2) == ["2024-03", "2024-04"]
    assert analysis_window(months, "2024-02", 12) == ["2024-01", "2024-02"]
    with pytest.raises(ValueError, match="2024-09 has no features partition"):
        analysis_window(months, "2024-09", 12)
    with pytest.raises(ValueError, match="run monthly-etl"):
        analysis_window([], None, 12)


def test_generated_month_renders_with_numbers_that_match_its_rows(generated) -> None:
    analysis = analyse("2024-03", generated)
    month = labelled(generated["2024-03"])
    assert analysis.overall.incidents == len(month)
    assert analysis.overall.arrests == int(month["arrest"].sum())
    assert [r.group for r in analysis.by_weekday] == list(WEEKDAYS)
    assert sum(r.incidents for r in analysis.by_hour) == len(month)
    areas = [int(r.group) for r in analysis.by_area if r.group.isdigit()]
    assert areas == sorted(areas) and sum(r.incidents for r in analysis.by_area) == len(month)
    assert analysis.window == ["2024-01", "2024-02", "2024-03"] and analysis.trend is not None
    table = pd.crosstab(month["district"], month["arrest"]).to_numpy()
    assert not analysis.chi_square_district.pooled  # 4,000 rows fill every district
    expected = stats.chi2_contingency(table, correction=False).statistic
    assert analysis.chi_square_district.statistic == pytest.approx(expected, rel=1e-12)

    heat = heat_map_png(analysis)
    page = report_html(analysis, heat, None, "2024-04-02T00:00:00+00:00")
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(images) == 1 and base64.b64decode(images[0]).startswith(PNG_MAGIC)
    assert NO_MAP in page and f"{analysis.overall.incidents:,}" in page
    markdown = report_markdown(analysis, "http://api/analysis/2024-03")
    assert "# Analyst report 2024-03" in markdown and "http://api/analysis/2024-03" in markdown


@pytest.mark.real_data
@pytest.mark.slow
def test_real_2018_october_report(real_data_dir, real_boundaries) -> None:
    """2018-10 with the window Jan-Oct 2018: the numbers, scipy's, and the map renders."""
    frame = add_temporal_features(read_incidents_file(real_data_dir / FILE_2018))
    frames = {m: g for m, g in frame.groupby(frame["date"].dt.strftime("%Y-%m"))}
    analysis = analyse("2018-10", frames)
    october = labelled(frames["2018-10"])

    assert analysis.overall.incidents == len(october) == 22185
    assert analysis.overall.rate == pytest.approx(0.1775, abs=5e-4)
    district = analysis.chi_square_district
    assert not district.pooled and district.dof == 21
    scipy_district = stats.chi2_contingency(
        pd.crosstab(october["district"], october["arrest"]).to_numpy(), correction=False
    )
    assert district.statistic == pytest.approx(scipy_district.statistic, rel=1e-12)
    assert district.statistic == pytest.approx(597.9, abs=0.1)
    kind = analysis.chi_square_type
    assert kind.pooled and kind.min_expected >= MIN_EXPECTED and kind.dof == 20
    scipy_type = stats.chi2_contingency(np.array(kind.table), correction=False)
    assert kind.statistic == pytest.approx(scipy_type.statistic, rel=1e-12)
    assert kind.statistic == pytest.approx(7590.1, abs=0.1)
    trend = analysis.trend
    assert trend.months == [f"2018-{m:02d}" for m in range(1, 11)]
    assert trend.slope_per_month == pytest.approx(-0.00426, abs=5e-5)
    assert trend.z == pytest.approx(-14.18, abs=0.01)

    map_png = area_map_png(analysis, real_boundaries["community_areas"])
    assert map_png.startswith(PNG_MAGIC)
    page = report_html(analysis, heat_map_png(analysis), map_png, "now")
    assert page.count("data:image/png;base64,") == 2 and NO_MAP not in page
    print(
        f"\n2018-10: {analysis.overall.incidents:,} incidents, rate {analysis.overall.rate:.4f} "
        f"({analysis.overall.low:.4f}-{analysis.overall.high:.4f}); chi2 district "
        f"{district.statistic:.1f} dof {district.dof}; type {kind.statistic:.1f} dof {kind.dof};"
        f" trend {trend.slope_per_month * 100:+.3f} pt/month Z {trend.z:.2f}"
    )


def test_a_month_without_labels_or_frame_is_refused_by_name(generated) -> None:
    unlabelled = generated["2024-03"].assign(arrest=pd.NA)
    with pytest.raises(ValueError, match="2024-03 has no incident with a known arrest flag"):
        analyse("2024-03", {**generated, "2024-03": unlabelled})
    with pytest.raises(ValueError, match="month 2024-09 is not among the frames"):
        analyse("2024-09", generated)


def test_unlabelled_rows_are_counted_and_left_out(generated) -> None:
    month = generated["2024-02"].copy()
    month["arrest"] = month["arrest"].astype("boolean")
    month.loc[month.index[:100], "arrest"] = pd.NA
    analysis = analyse("2024-02", {"2024-01": generated["2024-01"], "2024-02": month})
    assert analysis.unlabelled == 100 and analysis.overall.incidents == len(month) - 100


@pytest.mark.real_data
@pytest.mark.slow
def test_every_real_2018_month_renders(real_data_dir, real_boundaries) -> None:
    """Each month Jan-Oct 2018 with the window so far: pages with both plots, sane numbers."""
    frame = add_temporal_features(read_incidents_file(real_data_dir / FILE_2018))
    frames = {m: g for m, g in frame.groupby(frame["date"].dt.strftime("%Y-%m"))}
    areas = real_boundaries["community_areas"]
    for month in sorted(frames):
        window = {m: f for m, f in frames.items() if m <= month}
        analysis = analyse(month, window)
        assert analysis.overall.incidents == frames[month]["arrest"].notna().sum() > 15000
        assert 0.15 < analysis.overall.rate < 0.25
        assert analysis.chi_square_district.p_value < 1e-6 and analysis.chi_square_type.dof >= 15
        assert (analysis.trend is None) == (month == "2018-01")
        page = report_html(analysis, heat_map_png(analysis), area_map_png(analysis, areas), "t")
        assert page.count("data:image/png;base64,") == 2, month
