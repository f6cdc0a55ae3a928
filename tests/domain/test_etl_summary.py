"""The ETL summary a person reads: numbers in the table, a real PNG."""

import pandas as pd

from crimeflow.domain.etl_summary import (
    EtlRunSummary,
    MonthCounts,
    Stopwatch,
    combine_daily,
    daily_incidents,
    incidents_per_day_png,
    summary_markdown,
)


def summary():
    month = MonthCounts("2018-03", 21074, 21074, 0, 21074, 21000, 74, 90, 0.2, True)
    return EtlRunSummary(
        run_id="r1",
        months=[month],
        quarantine_reasons={"latitude: outside Chicago": 70, "district: unknown code": 4},
        late_updates_pulled=12,
        window=["2018-03"],
        seconds={"extract": 1.5},
        lake_url="/tmp/lake",
        manifest_key="manifests/runs/r1.json",
    )


def test_markdown_reports_counts_reasons_and_timings():
    text = summary_markdown(summary())
    assert "**21,074** rows pulled (+12 late updates)" in text
    assert "| 2018-03 | 21,074 |" in text
    assert text.index("latitude: outside Chicago") < text.index("district: unknown code")
    assert "| extract | 1.50 |" in text


def test_plot_is_a_png_and_embeds_in_markdown():
    frame = pd.DataFrame(
        {
            "id": range(48),
            "date": pd.date_range("2018-03-01", periods=48, freq="h"),
            "arrest": [True, False] * 24,
        }
    )
    png = incidents_per_day_png(daily_incidents(frame))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "data:image/png;base64," in summary_markdown(summary(), png)


def test_daily_totals_of_months_combine_into_the_whole_runs():
    frame = pd.DataFrame(
        {
            "id": range(96),
            "date": pd.date_range("2018-03-30", periods=96, freq="h"),  # Mar 30 .. Apr 2
            "arrest": [True, False, False] * 32,
        }
    )
    march, april = (frame[frame["date"].dt.month == m] for m in (3, 4))
    combined = combine_daily([daily_incidents(april), daily_incidents(march.head(0))])
    combined = combine_daily([daily_incidents(march), combined])
    pd.testing.assert_frame_equal(combined, daily_incidents(frame))
    assert combined["incidents"].tolist() == [24, 24, 24, 24]
    assert combine_daily([daily_incidents(frame.head(0))]) is None


def test_stopwatch_adds_repeated_steps():
    clock = Stopwatch()
    for _ in range(2):
        with clock("step"):
            pass
    assert list(clock.seconds) == ["step"] and clock.seconds["step"] >= 0
