"""The raw-incident contract: both header styles become the same canonical frame."""

import pandas as pd

from crimeflow.contract.schema import (
    SODA_COLUMNS,
    coercion_errors,
    normalize_header,
    parse_booleans,
    parse_timestamps,
    to_canonical,
)

EXPORT_ROW = {
    "ID": "11482392",
    "Case Number": "JB483030",
    "Date": "01/01/2018 12:00:00 PM",
    "Block": "003XX E NORTH WATER ST",
    "IUCR": "0810",
    "Primary Type": "THEFT",
    "Description": "OVER $500",
    "Location Description": "APARTMENT",
    "Arrest": "true",
    "Domestic": "false",
    "Beat": "1834",
    "District": "018",
    "Ward": "42",
    "Community Area": "8",
    "FBI Code": "06",
    "X Coordinate": "1178943",
    "Y Coordinate": "1903134",
    "Updated On": "11/19/2018 04:14:28 PM",
    "Latitude": "41.889497462",
    "Longitude": "-87.618294943",
}
SODA_ROW = {
    "id": "11482392",
    "case_number": "JB483030",
    "date": "2018-01-01T12:00:00.000",
    "block": "003XX E NORTH WATER ST",
    "iucr": "0810",
    "primary_type": "THEFT",
    "description": "OVER $500",
    "location_description": "APARTMENT",
    "arrest": True,
    "domestic": False,
    "beat": "1834",
    "district": "018",
    "ward": "42",
    "community_area": "8",
    "fbi_code": "06",
    "x_coordinate": "1178943",
    "y_coordinate": "1903134",
    "year": "2018",
    "updated_on": "2018-11-19T16:14:28.000",
    "latitude": "41.889497462",
    "longitude": "-87.618294943",
}


def test_headers_normalize_to_soda_names():
    assert normalize_header("\ufeffCase Number") == "case_number"
    assert normalize_header("X Coordinate") == "x_coordinate"
    assert normalize_header("FBI Code") == "fbi_code"


def test_export_and_api_rows_are_identical_after_canonicalization():
    export = to_canonical(pd.DataFrame([EXPORT_ROW]))
    api = to_canonical(pd.DataFrame([SODA_ROW]))
    assert list(export.columns) == list(SODA_COLUMNS)
    pd.testing.assert_frame_equal(export, api)
    row = api.iloc[0]
    assert row["date"] == pd.Timestamp("2018-01-01 12:00:00")
    assert row["year"] == 2018  # derived from date in the export, which has no Year column
    assert bool(row["arrest"]) is True


def test_codes_keep_or_regain_zero_padding():
    frame = pd.DataFrame({"beat": [614.0, "0614", " 0614 "], "district": [6, "006", "6"]})
    canonical = to_canonical(frame)
    assert canonical["beat"].tolist() == ["0614"] * 3
    assert canonical["district"].tolist() == ["006"] * 3


def test_timestamps_and_booleans_parse_both_styles_and_flag_garbage():
    stamps = parse_timestamps(pd.Series(["2025-11-03T00:00:00.000", "03/01/2018 01:05:00 PM", "x"]))
    assert stamps[0] == pd.Timestamp("2025-11-03")
    assert stamps[1] == pd.Timestamp("2018-03-01 13:05")
    assert pd.isna(stamps[2])
    flags = parse_booleans(pd.Series(["True", "false", "maybe", None]))
    assert flags.tolist()[:2] == [True, False]
    assert flags.isna().tolist() == [False, False, True, True]


def test_coercion_errors_name_the_column():
    raw = pd.DataFrame([{**SODA_ROW, "arrest": "maybe", "latitude": "north"}, SODA_ROW])
    errors = coercion_errors(raw, to_canonical(raw))
    assert "arrest" in errors[0] and "latitude" in errors[0]
    assert errors[1] == ""


def test_timestamps_with_an_offset_become_chicago_local_time():
    stamps = parse_timestamps(
        pd.Series(["2025-07-01T17:00:00Z", "2025-07-01T12:00:00", "2025-01-15T12:00:00-06:00"])
    )
    assert stamps.tolist() == [
        pd.Timestamp("2025-07-01 12:00"),  # 17:00 UTC is noon in Chicago (CDT)
        pd.Timestamp("2025-07-01 12:00"),  # floating: already Chicago time
        pd.Timestamp("2025-01-15 12:00"),
    ]


def test_large_frames_take_the_per_unique_path_with_identical_results():
    row = pd.DataFrame([SODA_ROW])
    big = pd.concat([row] * 12_000, ignore_index=True)
    big.loc[5, "beat"] = "614"
    big.loc[7, "latitude"] = "north"
    canonical = to_canonical(big)
    assert canonical["beat"].iloc[5] == "0614"
    assert pd.isna(canonical["latitude"].iloc[7])
    pd.testing.assert_frame_equal(canonical.iloc[[0]], to_canonical(row))
