"""Tests for the Socrata client: month windows, sodapy paging/retries against the real stand-in."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from crimeflow.contract.months import month_bounds
from crimeflow.contract.schema import SODA_COLUMNS
from crimeflow.contract.settings import SocrataSettings
from crimeflow.standins.soda import StandinServer
from crimeflow.stores.files import STATION_COLUMNS, read_incidents_file
from crimeflow.stores.socrata import (
    MAX_RETRY_AFTER_S,
    SodaError,
    SodaSource,
    crimes_in_month_where,
    retry_delay,
    soql_timestamp,
    split_socrata_url,
    updated_since_where,
)
from tasks.extract import extract_crimes, extract_stations

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
CRIMES_2018 = REAL / "crimes_2018-01_to_2018-10_chicagocrimedata-datastore.csv.gz"
CRIMES = "ijzp-q8t2"
STATIONS = "z8bn-74gv"
TOKEN = "app-token-never-shown"

# Rows straddling the March 2018 boundaries, in both header styles; same incidents.
EXPORT_CSV = """\
ID,Case Number,Date,Block,IUCR,Primary Type,Description,Location Description,Arrest,Domestic,\
Beat,District,Ward,Community Area,FBI Code,X Coordinate,Y Coordinate,Updated On,Latitude,Longitude
101,JB100001,02/28/2018 11:59:59 PM,003XX E NORTH WATER ST,0810,THEFT,OVER $500,APARTMENT,true,\
false,1834,018,42,8,06,1178943,1903134,11/19/2018 04:14:28 PM,41.889497462,-87.618294943
102,JB100002,03/01/2018 12:00:00 AM,045XX S MARSHFIELD AVE,1752,OFFENSE INVOLVING CHILDREN,\
AGG CRIM SEX ABUSE FAM MEMBER,RESIDENCE,false,true,0614,006,15,61,20,1166099,1874550,\
03/10/2018 04:02:39 PM,41.811344308,-87.666278625
103,JB100003,03/31/2018 11:59:59 PM,011XX N STATE ST,0486,BATTERY,DOMESTIC BATTERY SIMPLE,,false,\
true,1824,018,2,8,08B,,,04/02/2018 09:00:00 AM,,
104,JB100004,04/01/2018 12:00:00 AM,0000X W TERMINAL ST,0820,THEFT,$500 AND UNDER,AIRPORT,false,\
false,1651,016,41,76,06,1100658,1934241,04/08/2018 03:00:00 PM,41.976290414,-87.905227221
"""
SODA_CSV = """\
id,case_number,date,block,iucr,primary_type,description,location_description,arrest,domestic,\
beat,district,ward,community_area,fbi_code,x_coordinate,y_coordinate,year,updated_on,latitude,\
longitude
101,JB100001,2018-02-28T23:59:59.000,003XX E NORTH WATER ST,0810,THEFT,OVER $500,APARTMENT,True,\
False,1834,018,42,8,06,1178943,1903134,2018,2018-11-19T16:14:28.000,41.889497462,-87.618294943
102,JB100002,2018-03-01T00:00:00.000,045XX S MARSHFIELD AVE,1752,OFFENSE INVOLVING CHILDREN,\
AGG CRIM SEX ABUSE FAM MEMBER,RESIDENCE,False,True,0614,006,15,61,20,1166099,1874550,2018,\
2018-03-10T16:02:39.000,41.811344308,-87.666278625
103,JB100003,2018-03-31T23:59:59.000,011XX N STATE ST,0486,BATTERY,DOMESTIC BATTERY SIMPLE,,False,\
True,1824,018,2,8,08B,,,2018,2018-04-02T09:00:00.000,,
104,JB100004,2018-04-01T00:00:00.000,0000X W TERMINAL ST,0820,THEFT,$500 AND UNDER,AIRPORT,False,\
False,1651,016,41,76,06,1100658,1934241,2018,2018-04-08T15:00:00.000,41.976290414,-87.905227221
"""


def _settings(url: str, **overrides: object) -> SocrataSettings:
    values: dict[str, object] = {
        "url": url,
        "app_token": TOKEN,
        "page_size": 3,
        "timeout_s": 5.0,
        "max_retries": 3,
        "backoff_s": 0.001,
        **overrides,
    }
    return SocrataSettings(**values)  # type: ignore[arg-type]


def _many_rows(n: int) -> pd.DataFrame:
    """`n` incidents in March 2018 whose ids are deliberately not in file order."""
    ids = [(i * 7919) % 100_003 + 1 for i in range(n)]
    return pd.DataFrame(
        {
            "id": [str(i) for i in ids],
            "date": [f"2018-03-{1 + i % 28:02d}T{i % 24:02d}:00:00" for i in range(n)],
            "beat": ["0614"] * n,
            "arrest": ["true" if i % 5 == 0 else "false" for i in range(n)],
        }
    )


@pytest.fixture
def server() -> Iterator[StandinServer]:
    with StandinServer(_many_rows(10)) as running:
        yield running


# --- pure helpers -----------------------------------------------------------------------------


def test_soql_windows() -> None:
    assert crimes_in_month_where("2018-12") == (
        "date >= '2018-12-01T00:00:00.000' AND date < '2019-01-01T00:00:00.000'"
    )
    where = updated_since_where(
        datetime(2018, 11, 19, 16, 14, 28, 500_000), datetime(2018, 1, 1), datetime(2018, 11, 1)
    )
    assert where == (
        "updated_on > '2018-11-19T16:14:28.500' AND date >= '2018-01-01T00:00:00.000' "
        "AND date < '2018-11-01T00:00:00.000'"
    )


def test_aware_watermark_is_converted_to_chicago_time() -> None:
    # 22:00 UTC in July is 17:00 in Chicago (CDT, UTC-5).
    assert soql_timestamp(datetime(2018, 7, 1, 22, 0, tzinfo=UTC)) == "'2018-07-01T17:00:00.000'"


def test_retry_delay() -> None:
    assert [retry_delay(n, 0.5) for n in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert retry_delay(3, 0.5, "2") == 2.0
    assert retry_delay(0, 0.5, "86400") == MAX_RETRY_AFTER_S
    assert retry_delay(0, 0.5, "Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
    assert retry_delay(1, 0.5, "soon") == 1.0


def test_split_socrata_url() -> None:
    assert split_socrata_url("https://data.cityofchicago.org") == (
        "https",
        "data.cityofchicago.org",
    )
    assert split_socrata_url("http://127.0.0.1:8765/") == ("http", "127.0.0.1:8765")
    assert split_socrata_url("data.cityofchicago.org") == ("https", "data.cityofchicago.org")
    with pytest.raises(ValueError, match="path"):
        split_socrata_url("https://data.cityofchicago.org/resource")
    with pytest.raises(ValueError, match="http"):
        split_socrata_url("ftp://example.org")


def test_client_uses_http_adapter_only_for_plain_http() -> None:
    local = SodaSource(_settings("http://127.0.0.1:8765"))._client()
    remote = SodaSource(_settings("https://data.cityofchicago.org"))._client()

    assert (local.domain, local.uri_prefix) == ("127.0.0.1:8765", "http://")
    assert (remote.domain, remote.uri_prefix) == ("data.cityofchicago.org", "https://")
    assert local.session.headers["X-App-token"] == TOKEN
    assert local.timeout == 5.0


# --- against the stand-in ---------------------------------------------------------------------


def test_paging_returns_every_row_once_in_id_order(server: StandinServer) -> None:
    progress: list[tuple[int, int]] = []
    source = SodaSource(_settings(server.url))

    frame = source.fetch(
        CRIMES, None, SODA_COLUMNS, on_progress=lambda p, r: progress.append((p, r))
    )

    assert frame["id"].tolist() == _many_rows(10)["id"].tolist()  # file (:id) order, not id order
    assert frame["id"].is_unique
    assert progress == [(1, 3), (2, 6), (3, 9), (4, 10)]
    assert server.requests_served == 4


def test_exact_multiple_of_page_size_ends_with_an_empty_page() -> None:
    with StandinServer(_many_rows(6)) as server:
        frame = SodaSource(_settings(server.url)).fetch(CRIMES, None, ["id"])

        assert len(frame) == 6
        assert server.requests_served == 3


def test_values_arrive_as_soda_strings(server: StandinServer) -> None:
    frame = SodaSource(_settings(server.url)).fetch(CRIMES, None, SODA_COLUMNS)

    assert list(frame.columns) == list(SODA_COLUMNS)
    first = frame.iloc[0]
    assert first["beat"] == "0614"
    assert first["date"] == "2018-03-01T00:00:00.000"
    assert frame["arrest"].tolist()[:3] == [True, False, False]  # JSON booleans, not strings
    assert pd.isna(first["x_coordinate"])  # omitted by the server -> missing


@pytest.mark.parametrize("text", [EXPORT_CSV, SODA_CSV], ids=["export", "soda"])
def test_month_window_is_exact_for_both_header_styles(tmp_path: Path, text: str) -> None:
    path = tmp_path / "crimes.csv"
    path.write_text(text)
    with StandinServer(path) as server:
        source = SodaSource(_settings(server.url))
        march = source.fetch(CRIMES, crimes_in_month_where("2018-03"), SODA_COLUMNS)
        feb = source.fetch(CRIMES, crimes_in_month_where("2018-02"), SODA_COLUMNS)
        late = source.fetch(
            CRIMES,
            updated_since_where(datetime(2018, 4, 1), datetime(2018, 3, 1), datetime(2018, 5, 1)),
            ["id", "updated_on"],
        )

    assert march["id"].tolist() == ["102", "103"]
    assert march["date"].tolist() == ["2018-03-01T00:00:00.000", "2018-03-31T23:59:59.000"]
    assert march["district"].tolist() == ["006", "018"]
    assert feb["id"].tolist() == ["101"]
    assert late["id"].tolist() == ["103", "104"]


def test_select_limits_columns_and_empty_result_keeps_them(server: StandinServer) -> None:
    source = SodaSource(_settings(server.url))

    some = source.fetch(CRIMES, None, ["id", "arrest"])
    none = source.fetch(CRIMES, crimes_in_month_where("2019-01"), ["id", "date", "beat"])

    assert list(some.columns) == ["id", "arrest"]
    assert len(some) == 10
    assert list(none.columns) == ["id", "date", "beat"]
    assert none.empty


def test_bad_query_fails_at_once_with_the_server_message(server: StandinServer) -> None:
    source = SodaSource(_settings(server.url))

    with pytest.raises(SodaError) as caught:
        source.fetch(CRIMES, "ward = 1 OR ward = 2", ["id"])

    message = str(caught.value)
    assert "HTTP 400" in message and "OR is not supported" in message
    assert CRIMES in message and "offset 0" in message
    assert server.requests_served == 1  # a 4xx is not retried


def test_unknown_dataset_is_a_clear_error(server: StandinServer) -> None:
    with pytest.raises(SodaError, match=r"HTTP 404.*abcd-1234 not found"):
        SodaSource(_settings(server.url)).fetch("abcd-1234", None, ["id"])


def test_retries_after_two_503s(server: StandinServer) -> None:
    server.fail_next(2, 503)

    frame = SodaSource(_settings(server.url)).fetch(CRIMES, None, ["id"])

    assert len(frame) == 10
    assert server.requests_served == 4 + 2


def test_retry_honours_retry_after_on_429(server: StandinServer) -> None:
    server.fail_next(1, 429, retry_after=0.3)
    started = time.perf_counter()

    frame = SodaSource(_settings(server.url)).fetch(CRIMES, None, ["id"])

    assert time.perf_counter() - started >= 0.3  # backoff alone would be 1 ms
    assert len(frame) == 10


def test_retries_a_timed_out_page(server: StandinServer) -> None:
    server.stall_next(1, 0.6)

    frame = SodaSource(_settings(server.url, timeout_s=0.15)).fetch(CRIMES, None, ["id"])

    assert len(frame) == 10


def test_gives_up_after_max_retries_naming_dataset_offset_status_and_url(
    server: StandinServer,
) -> None:
    source = SodaSource(_settings(server.url, max_retries=2))

    def fail_after_first_page(pages: int, rows: int) -> None:
        if pages == 1:
            server.fail_next(3, 503)

    with pytest.raises(SodaError) as caught:
        source.fetch(CRIMES, None, ["id"], on_progress=fail_after_first_page)

    message = str(caught.value)
    assert CRIMES in message
    assert "offset 3" in message and "after 3 attempts" in message and "HTTP 503" in message
    assert f"{server.url}/resource/{CRIMES}.json?" in message and "%24offset=3" in message
    assert TOKEN not in message
    assert server.requests_served == 1 + 3


def test_connection_refused_is_retried_then_reported() -> None:
    with StandinServer(_many_rows(1)) as server:
        url = server.url
    source = SodaSource(_settings(url, max_retries=1))

    with pytest.raises(SodaError, match="after 2 attempts; last: ConnectionError"):
        source.fetch(CRIMES, None, ["id"])


def test_extract_tasks_outside_a_flow(
    server: StandinServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="tasks.extract")
    settings = _settings(server.url)

    crimes = extract_crimes.fn(settings, crimes_in_month_where("2018-03"))
    stations = extract_stations.fn(settings)

    assert list(crimes.columns) == list(SODA_COLUMNS)
    assert len(crimes) == 10
    assert list(stations.columns) == list(STATION_COLUMNS)
    assert len(stations) == 23
    assert "Headquarters" in set(stations["district"])
    assert isinstance(stations.loc[0, "x_coordinate"], str)  # raw, as received
    messages = [r.getMessage() for r in caplog.records]
    assert "crimes page 4: 10 rows so far" in messages


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.skipif(not CRIMES_2018.is_file(), reason="../shared/data/real is absent")
def test_real_2018_march_pull_matches_the_source_file() -> None:
    source_rows = read_incidents_file(CRIMES_2018)
    start, end = month_bounds("2018-03")
    expected = int(source_rows["date"].between(start, end, inclusive="left").sum())
    assert expected == 21_074

    with StandinServer(source_rows) as server:
        settings = _settings(server.url, page_size=50_000)
        started = time.perf_counter()
        march = SodaSource(settings).fetch(CRIMES, crimes_in_month_where("2018-03"), SODA_COLUMNS)
        elapsed = time.perf_counter() - started

    print(f"March 2018 pull: {len(march):,} rows in {elapsed:.2f} s (pages of 50,000)")
    assert len(march) == expected
    assert march["id"].is_unique
    assert march["date"].str.startswith("2018-03-").all()


def test_newest_is_the_largest_incident_date_and_none_for_an_empty_dataset() -> None:
    with StandinServer(_many_rows(30)) as running:
        newest = SodaSource(_settings(running.url)).newest(CRIMES)
    assert newest == datetime(2018, 3, 28, 3, 0)  # row 27: day 28, hour 3
    empty = _many_rows(1).iloc[0:0]
    with StandinServer(empty) as running:
        assert SodaSource(_settings(running.url)).newest(CRIMES) is None
