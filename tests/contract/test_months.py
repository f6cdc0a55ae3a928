"""Month arithmetic: the unit of partitions and ETL runs."""

from datetime import date, datetime

import pytest

from crimeflow.contract.months import (
    check_month,
    month_bounds,
    months_between,
    previous_month,
    shift_month,
)


def test_month_bounds_and_december_rollover():
    assert month_bounds("2018-03") == (datetime(2018, 3, 1), datetime(2018, 4, 1))
    assert month_bounds("2018-12") == (datetime(2018, 12, 1), datetime(2019, 1, 1))


@pytest.mark.parametrize("bad", ["2018-13", "2018-3", "March", "2018-00", None])
def test_malformed_months_are_rejected_by_name(bad):
    with pytest.raises(ValueError, match="YYYY-MM"):
        check_month(bad)


def test_shift_and_previous_month_cross_years():
    assert shift_month("2018-01", -1) == "2017-12"
    assert shift_month("2018-12", 1) == "2019-01"
    assert shift_month("2018-05", -17) == "2016-12"
    assert previous_month(date(2018, 3, 1)) == "2018-02"
    assert previous_month(date(2019, 1, 31)) == "2018-12"


def test_months_between():
    assert months_between("2017-11", "2018-02") == ["2017-11", "2017-12", "2018-01", "2018-02"]
    assert months_between("2018-03", "2018-03") == ["2018-03"]
    assert months_between("2018-04", "2018-03") == []
