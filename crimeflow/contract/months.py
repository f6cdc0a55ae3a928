"""Calendar months as 'YYYY-MM' strings: the unit of the lake's partitions and the ETL's runs."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def check_month(month: str) -> str:
    """Return `month` if it is a valid 'YYYY-MM', else raise ValueError naming the bad value."""
    if not isinstance(month, str) or not _MONTH.fullmatch(month):
        raise ValueError(f"expected a month as 'YYYY-MM', got {month!r}")
    return month


def shift_month(month: str, delta: int) -> str:
    """The month `delta` months after `month` (negative goes back)."""
    year, number = (int(part) for part in check_month(month).split("-"))
    index = year * 12 + (number - 1) + delta
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def previous_month(today: date) -> str:
    """The last complete month before `today`, as 'YYYY-MM'."""
    return shift_month(f"{today.year:04d}-{today.month:02d}", -1)


def newest_mature_month(today: date, maturity_days: int) -> str:
    """The newest month whose every incident is at least `maturity_days` old on `today`: its
    arrest labels count as final (CRIMEFLOW_LABEL_MATURITY_DAYS)."""
    return previous_month(today - timedelta(days=maturity_days))


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """Half-open bounds of a month: '2018-03' -> [2018-03-01, 2018-04-01)."""
    year, number = (int(part) for part in check_month(month).split("-"))
    following = shift_month(month, 1)
    return datetime(year, number, 1), datetime(int(following[:4]), int(following[5:]), 1)


def months_between(first: str, last: str) -> list[str]:
    """Every month from `first` to `last` inclusive; empty when first > last."""
    months: list[str] = []
    current = check_month(first)
    while current <= check_month(last):
        months.append(current)
        current = shift_month(current, 1)
    return months
