"""The pure helpers of bench_production.py: percentiles, the table, the capacity arithmetic."""

from __future__ import annotations

import math

import pytest

from tests.benchmarks.bench_production import (
    SECTIONS,
    format_table,
    parse_int_list,
    parse_sections,
    percentiles_ms,
    pods_sustained,
)


def test_percentiles_are_in_milliseconds():
    latencies_s = [i / 1000 for i in range(1, 101)]  # 1..100 ms

    p50, p99, p100 = percentiles_ms(latencies_s, (50, 99, 100))

    assert p50 == pytest.approx(50.5)
    assert p99 == pytest.approx(99.01)
    assert p100 == pytest.approx(100.0)


def test_percentiles_of_nothing_are_nan():
    assert all(math.isnan(v) for v in percentiles_ms([], (50, 99)))


def test_table_aligns_columns_and_formats_numbers():
    table = format_table(
        ["store", "rows/s", "p99 ms", "check"],
        [["postgresql", 6696.4, 1.25, "OK"], ["sqlite", 12, math.nan, "12 of 13"]],
    )

    header, rule, first, second = table.splitlines()
    assert header.split() == ["store", "rows/s", "p99", "ms", "check"]
    assert set(rule) == {"-"} and len(rule) == len(header)
    assert first.split() == ["postgresql", "6,696", "1.2", "OK"]
    assert second.split() == ["sqlite", "12", "-", "12", "of", "13"]
    # Every line is as wide as the header: the numbers are right-aligned under it.
    assert len(first) == len(second) == len(header)
    assert first.index("6,696") + len("6,696") == header.index("rows/s") + len("rows/s")


def test_pods_sustained_uses_the_headroom_and_rounds_down():
    assert pods_sustained(6000, 600, 0.5) == 5
    assert pods_sustained(6000, 700, 0.5) == 4
    assert pods_sustained(6000, 600, 1.0) == 10
    assert pods_sustained(500, 600, 0.5) == 0


@pytest.mark.parametrize(("rate", "headroom"), [(0, 0.5), (600, 0), (600, 1.5)])
def test_pods_sustained_rejects_meaningless_inputs(rate: float, headroom: float):
    with pytest.raises(ValueError):
        pods_sustained(6000, rate, headroom)


def test_int_lists():
    assert parse_int_list("1, 64,512") == [1, 64, 512]
    for bad in ("", "0", "1,-2", "a"):
        with pytest.raises(ValueError):
            parse_int_list(bad)


def test_sections_keep_the_benchmark_order_and_reject_unknown_names():
    assert parse_sections("api,log", ["log", "api"]) == ["log", "api"]
    assert parse_sections("api", ["log", "api"]) == ["api"]
    with pytest.raises(ValueError, match="lop"):
        parse_sections("log,lop", ["log", "api", "loop"])
    with pytest.raises(ValueError):
        parse_sections(" , ", ["log", "api"])
    assert list(SECTIONS) == ["log", "api", "loop"]
