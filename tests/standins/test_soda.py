"""Tests for the SODA stand-in: SoQL parsing, row rendering, and HTTP behaviour seen by sodapy."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests
from sodapy import Socrata

from crimeflow.contract.schema import SODA_COLUMNS, to_canonical
from crimeflow.standins.soda import (
    DEFAULT_LIMIT,
    Comparison,
    SodaTable,
    SoqlError,
    StandinServer,
    parse_order,
    parse_query,
    parse_select,
    parse_where,
    serve_forever,
)

COLUMNS = tuple(SODA_COLUMNS)
ROWS_CSV = """\
id,case_number,date,block,iucr,primary_type,description,location_description,arrest,domestic,\
beat,district,ward,community_area,fbi_code,x_coordinate,y_coordinate,year,updated_on,latitude,\
longitude
11482392,JB483030,2018-02-28T23:59:59,003XX E NORTH WATER ST,0810,THEFT,OVER $500,APARTMENT,\
true,false,1834,018,42,8,06,1178943,1903134,2018,2018-11-19T16:14:28,41.889497462,-87.618294943
11459757,JB452296,2018-03-01T00:00:00,045XX S MARSHFIELD AVE,1752,OFFENSE INVOLVING CHILDREN,\
AGG CRIM SEX ABUSE FAM MEMBER,RESIDENCE,false,true,0614,006,15,61,20,1166099,1874550,2018,\
2018-03-10T16:02:39,41.811344308,-87.666278625
11460001,JB452999,2018-03-15T13:30:00,011XX N STATE ST,0486,BATTERY,DOMESTIC BATTERY SIMPLE,,\
false,true,1824,018,,8,08B,,,2018,2018-04-02T09:00:00,,
11470002,JB460002,2018-04-01T00:00:00,0000X W TERMINAL ST,0820,THEFT,$500 AND UNDER,O'HARE,\
false,false,1651,016,41,76,06,1100658,1934241,2018,2018-04-08T15:00:00,41.976290414,-87.905227221
"""


def _crimes() -> pd.DataFrame:
    return pd.read_csv(io.StringIO(ROWS_CSV), dtype=str, keep_default_na=False, na_values=[""])


@pytest.fixture
def table() -> SodaTable:
    return SodaTable(to_canonical(_crimes()))


@pytest.fixture
def server() -> Iterator[StandinServer]:
    with StandinServer(_crimes()) as running:
        yield running


def _ids(body: bytes) -> list[str]:
    return [row["id"] for row in json.loads(body)]


def _query(table: SodaTable, **params: str) -> bytes:
    return table.query({f"${name}": [value] for name, value in params.items()})


# --- parsing ----------------------------------------------------------------------------------


def test_where_parses_and_terms_with_or_without_parentheses() -> None:
    plain = parse_where(
        "date >= '2018-03-01T00:00:00' and date < '2018-04-01T00:00:00.000'", COLUMNS
    )
    nested = parse_where(
        "((date >= '2018-03-01T00:00:00') AND (date < '2018-04-01T00:00:00.000'))", COLUMNS
    )

    assert (
        plain
        == nested
        == (
            Comparison("date", ">=", "2018-03-01T00:00:00"),
            Comparison("date", "<", "2018-04-01T00:00:00.000"),
        )
    )


def test_where_literals() -> None:
    terms = parse_where(
        "block = 'O''HARE' AND longitude < -87.6 AND arrest = true AND ward <> 3", COLUMNS
    )

    assert [t.literal for t in terms] == ["O'HARE", -87.6, True, 3.0]
    assert terms[3].op == "<>"


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("ward = 1 OR ward = 2", "OR is not supported"),
        ("nope = '1'", "No such column: nope"),
        ("date >= '2018-03-01", "Could not parse"),
        ("ward = ", "Unexpected end"),
        ("ward = 1 ward = 2", "not supported"),
        ("(ward = 1", "Unexpected end"),
        ("ward = 1)", "Unexpected '\\)'"),
        ("ward in (1, 2)", "IN is not supported"),
        ("ward 1", "Expected a comparison operator"),
        ("ward = 1, ward = 2", "Unexpected ','"),
        ("upper(block) = 'X'", "No such column: upper"),
        ("   ", "empty"),
    ],
)
def test_where_errors_name_the_problem(where: str, message: str) -> None:
    with pytest.raises(SoqlError, match=message):
        parse_where(where, COLUMNS)


def test_select_and_order_parsing() -> None:
    assert parse_select(None, COLUMNS) == COLUMNS
    assert parse_select(" id , date ", COLUMNS) == ("id", "date")
    assert parse_order("date DESC, :id", COLUMNS) == (("date", True), (":id", False))
    assert parse_order("ward", COLUMNS) == (("ward", False),)
    with pytest.raises(SoqlError, match="No such column: nope"):
        parse_select("id,nope", COLUMNS)
    with pytest.raises(SoqlError, match="plain column names"):
        parse_select("count(*)", COLUMNS)
    with pytest.raises(SoqlError, match="ASC or DESC"):
        parse_order("date sideways", COLUMNS)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"$group": ["ward"]}, "Unsupported parameter '\\$group'"),
        ({"beat": ["0614"]}, "Unsupported parameter 'beat'"),
        ({"$limit": ["ten"]}, "\\$limit must be a non-negative integer"),
        ({"$offset": ["-5"]}, "\\$offset must be a non-negative integer"),
        ({"$limit": ["1", "2"]}, "given 2 times"),
    ],
)
def test_query_parameter_errors(params: dict[str, list[str]], message: str) -> None:
    with pytest.raises(SoqlError, match=message):
        parse_query(params, COLUMNS)


def test_app_token_is_accepted_and_defaults_apply() -> None:
    query = parse_query({"$$app_token": ["abc"]}, COLUMNS)

    assert query.limit == DEFAULT_LIMIT == 1000
    assert query.offset == 0
    assert query.select == COLUMNS


# --- querying and rendering -------------------------------------------------------------------


def test_rows_render_as_soda_json(table: SodaTable) -> None:
    rows = json.loads(_query(table, limit="2"))

    assert rows[1] == {
        "id": "11459757",
        "case_number": "JB452296",
        "date": "2018-03-01T00:00:00.000",
        "block": "045XX S MARSHFIELD AVE",
        "iucr": "1752",
        "primary_type": "OFFENSE INVOLVING CHILDREN",
        "description": "AGG CRIM SEX ABUSE FAM MEMBER",
        "location_description": "RESIDENCE",
        "arrest": False,
        "domestic": True,
        "beat": "0614",
        "district": "006",
        "ward": "15",
        "community_area": "61",
        "fbi_code": "20",
        "x_coordinate": "1166099",
        "y_coordinate": "1874550",
        "year": "2018",
        "updated_on": "2018-03-10T16:02:39.000",
        "latitude": "41.811344308",
        "longitude": "-87.666278625",
    }


def test_missing_values_are_omitted(table: SodaTable) -> None:
    row = json.loads(_query(table, where="id = 11460001"))[0]

    absent = {"location_description", "ward", "x_coordinate", "y_coordinate", "latitude"}
    assert absent.isdisjoint(row)
    assert row["beat"] == "1824"


def test_select_subset_keeps_the_requested_order(table: SodaTable) -> None:
    rows = json.loads(_query(table, select="ward,id,arrest", where="id = 11460001"))

    assert rows == [{"id": "11460001", "arrest": False}]
    first = json.loads(_query(table, select="ward,id", limit="1"))[0]
    assert list(first) == ["ward", "id"]


def test_date_window_boundaries_are_exact(table: SodaTable) -> None:
    body = _query(table, where="date >= '2018-03-01T00:00:00.000' AND date < '2018-04-01T00:00:00'")

    assert _ids(body) == ["11459757", "11460001"]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("district = '018'", ["11482392", "11460001"]),
        ("ward > 20", ["11482392", "11470002"]),
        ("ward != 42", ["11459757", "11470002"]),  # the null ward never matches
        ("ward >= '41'", ["11482392", "11470002"]),
        ("arrest = true", ["11482392"]),
        ("domestic = 'false'", ["11482392", "11470002"]),
        ("block = '0000X W TERMINAL ST' AND location_description = 'O''HARE'", ["11470002"]),
        (
            "updated_on > '2018-04-01T00:00:00' AND date < '2018-04-01T00:00:00'",
            ["11482392", "11460001"],
        ),
        ("longitude < -87.7", ["11470002"]),
    ],
)
def test_where_filters(table: SodaTable, where: str, expected: list[str]) -> None:
    assert _ids(_query(table, where=where)) == expected


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("district = 18", "Type mismatch: text column district"),
        ("date > 5", "quote the value"),
        ("date > 'yesterday'", "Could not parse timestamp"),
        ("date > '2018-03-01T00:00:00+01:00'", "floating timestamp"),
        ("arrest > true", "does not apply to boolean"),
        ("ward = 'many'", "Type mismatch"),
    ],
)
def test_type_errors(table: SodaTable, where: str, message: str) -> None:
    with pytest.raises(SoqlError, match=message):
        _query(table, where=where)


def test_order_keys(table: SodaTable) -> None:
    assert _ids(_query(table, order="ward")) == ["11459757", "11470002", "11482392", "11460001"]
    assert _ids(_query(table, order="primary_type DESC, id DESC")) == [
        "11482392",
        "11470002",
        "11459757",
        "11460001",
    ]
    assert _ids(_query(table, order=":id", offset="1", limit="2")) == ["11459757", "11460001"]


def test_a_canonical_frame_is_served_like_the_raw_one() -> None:
    raw = StandinServer(_crimes()).tables["ijzp-q8t2"]
    canonical = StandinServer(to_canonical(_crimes())).tables["ijzp-q8t2"]

    assert canonical.query({}) == raw.query({})


def test_default_limit_is_socratas_1000() -> None:
    many = pd.DataFrame({"id": [str(i) for i in range(1_200)], "date": ["2018-03-01"] * 1_200})
    table = SodaTable(to_canonical(many))

    assert len(json.loads(table.query({}))) == 1000
    assert _ids(_query(table, offset="1199")) == ["1199"]
    assert json.loads(_query(table, offset="5000")) == []


# --- over HTTP, with sodapy -------------------------------------------------------------------


def _client(url: str) -> Socrata:
    host = url.removeprefix("http://")
    adapter = {"prefix": "http://", "adapter": requests.adapters.HTTPAdapter()}
    return Socrata(host, "token-ignored", session_adapter=adapter, timeout=5)


def test_sodapy_reads_a_filtered_ordered_page(server: StandinServer) -> None:
    with _client(server.url) as client:
        rows = client.get(
            "ijzp-q8t2",
            select="id,beat,arrest",
            where="date >= '2018-03-01T00:00:00'",
            order="id DESC",
            limit=2,
        )

    assert rows == [
        {"id": "11470002", "beat": "1651", "arrest": False},
        {"id": "11460001", "beat": "1824", "arrest": False},
    ]


def test_stations_dataset_is_served(server: StandinServer) -> None:
    with _client(server.url) as client:
        rows = client.get("z8bn-74gv", where="district = 'Headquarters'")

    assert len(rows) == 1
    assert rows[0]["x_coordinate"] == "1177731.401"
    assert rows[0]["district_name"] == "Headquarters"


def test_bad_query_is_a_400_with_a_socrata_style_body(server: StandinServer) -> None:
    response = requests.get(
        f"{server.url}/resource/ijzp-q8t2.json", params={"$where": "ward = 1 OR ward = 2"}
    )

    assert response.status_code == 400
    body = response.json()
    assert body["error"] is True
    assert "OR is not supported" in body["message"]


def test_unknown_dataset_and_path_are_404(server: StandinServer) -> None:
    with _client(server.url) as client, pytest.raises(requests.HTTPError, match="404"):
        client.get("abcd-1234")
    assert requests.get(f"{server.url}/api/views.json").status_code == 404


def test_injected_faults_then_recovery_and_request_counter(server: StandinServer) -> None:
    server.fail_next(2, 503)
    server.fail_next(1, 429, retry_after=7)
    url = f"{server.url}/resource/ijzp-q8t2.json"

    answers = [requests.get(url) for _ in range(4)]

    assert [a.status_code for a in answers] == [503, 503, 429, 200]
    assert answers[2].headers["Retry-After"] == "7"
    assert len(answers[3].json()) == 4
    assert server.requests_served == 4


def test_stalled_request_trips_a_client_timeout(server: StandinServer) -> None:
    server.stall_next(1, 0.5)
    url = f"{server.url}/resource/ijzp-q8t2.json"

    with pytest.raises(requests.exceptions.Timeout):
        requests.get(url, timeout=0.1)
    assert requests.get(url, timeout=2).status_code == 200


def test_custom_dataset_ids_and_stop_releases_the_port() -> None:
    server = StandinServer(_crimes(), crimes_dataset="test-0001", stations_dataset="test-0002")
    url = server.start()
    try:
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        assert len(requests.get(f"{url}/resource/test-0001.json").json()) == 4
        assert requests.get(f"{url}/resource/ijzp-q8t2.json").status_code == 404
    finally:
        server.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{url}/resource/test-0001.json", timeout=1)


def test_serve_forever_logs_url_and_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    crimes = tmp_path / "crimes.csv"
    crimes.write_text(ROWS_CSV)
    caplog.set_level("INFO", logger="crimeflow.standins.soda")
    stop = threading.Event()
    worker = threading.Thread(
        target=serve_forever, args=(crimes,), kwargs={"port": 0, "until": stop}
    )
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.01)
        line = caplog.records[0].getMessage()
        assert "ijzp-q8t2: 4 rows" in line and "z8bn-74gv: 23 rows" in line
        url = line.split(" at ", 1)[1].split(" ", 1)[0]
        assert requests.get(f"{url}/resource/ijzp-q8t2.json", timeout=2).status_code == 200
    finally:
        stop.set()
        worker.join(timeout=5)
    assert not worker.is_alive()


def test_max_and_min_of_a_column_answer_one_row_named_as_socrata_names_it(
    table: SodaTable,
) -> None:
    assert json.loads(_query(table, select="max(date)")) == [
        {"max_date": "2018-04-01T00:00:00.000"}
    ]
    march = "date < '2018-04-01T00:00:00'"
    assert json.loads(_query(table, select="MAX(date) AS newest", where=march)) == [
        {"newest": "2018-03-15T13:30:00.000"}
    ]
    assert json.loads(_query(table, select="min(id)")) == [{"min_id": "11459757"}]
    assert json.loads(_query(table, select="max(date)", where="date > '2030-01-01T00:00:00'")) == [
        {}
    ]
    with pytest.raises(SoqlError, match="No such column: nope"):
        _query(table, select="max(nope)")
