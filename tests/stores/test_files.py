"""Tests for crimeflow.stores.files: crimes and stations files in every supported layout."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from crimeflow.contract.schema import SODA_COLUMNS
from crimeflow.stores.files import (
    PARQUET_ALIASES,
    STATION_COLUMNS,
    read_incidents_file,
    read_stations_file,
    resolve_aliases,
)

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
CRIMES_2018 = REAL / "crimes_2018-01_to_2018-10_chicagocrimedata-datastore.csv.gz"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data/real is absent")

# The same three incidents in the two header styles Socrata produces.
EXPORT_CSV = """\
ID,Case Number,Date,Block,IUCR,Primary Type,Description,Location Description,Arrest,Domestic,\
Beat,District,Ward,Community Area,FBI Code,X Coordinate,Y Coordinate,Updated On,Latitude,Longitude
11482392,JB483030,02/28/2018 11:59:59 PM,003XX E NORTH WATER ST,0810,THEFT,OVER $500,APARTMENT,\
true,false,1834,018,42,8,06,1178943,1903134,11/19/2018 04:14:28 PM,41.889497462,-87.618294943
11459757,JB452296,03/01/2018 12:00:00 AM,045XX S MARSHFIELD AVE,1752,OFFENSE INVOLVING CHILDREN,\
NA,RESIDENCE,false,true,0924,009,15,61,20,1166099,1874550,03/10/2018 04:02:39 PM,41.811344308,\
-87.666278625
11460001,JB452999,03/15/2018 01:30:00 PM,011XX N STATE ST,0486,BATTERY,DOMESTIC BATTERY SIMPLE,,\
false,true,1824,018,2,8,08B,,,04/02/2018 09:00:00 AM,,
"""
SODA_CSV = """\
id,case_number,date,block,iucr,primary_type,description,location_description,arrest,domestic,\
beat,district,ward,community_area,fbi_code,x_coordinate,y_coordinate,year,updated_on,latitude,\
longitude
11482392,JB483030,2018-02-28T23:59:59.000,003XX E NORTH WATER ST,0810,THEFT,OVER $500,APARTMENT,\
True,False,1834,018,42,8,06,1178943,1903134,2018,2018-11-19T16:14:28.000,41.889497462,\
-87.618294943
11459757,JB452296,2018-03-01T00:00:00.000,045XX S MARSHFIELD AVE,1752,OFFENSE INVOLVING CHILDREN,\
NA,RESIDENCE,False,True,0924,009,15,61,20,1166099,1874550,2018,2018-03-10T16:02:39.000,\
41.811344308,-87.666278625
11460001,JB452999,2018-03-15T13:30:00.000,011XX N STATE ST,0486,BATTERY,DOMESTIC BATTERY SIMPLE,,\
False,True,1824,018,2,8,08B,,,2018,2018-04-02T09:00:00.000,,
"""

STATIONS_EXPORT = (
    "\ufeffDISTRICT,DISTRICT NAME,ADDRESS,CITY,STATE,ZIP,WEBSITE,PHONE,X COORDINATE,"
    "Y COORDINATE,LATITUDE,LONGITUDE,LOCATION\n"
    "Headquarters,Headquarters,3510 S Michigan Ave,Chicago,IL,60653,http://x,,1177731.401,"
    '1881697.404,41.83070169,-87.62339535,"(41.83, -87.62)"\n'
    '12,Near West,"1412 S Blue Island Ave\n",Chicago,IL,60608,http://y,,1168487.845,'
    '1893384.455,41.86297662,-87.65697251,"(41.86, -87.65)"\n'
)


def _write(path: Path, text: str, *, bom: bool = False, gz: bool = False) -> Path:
    data = (("\ufeff" if bom else "") + text).encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_export_csv_reads_to_canonical_types_and_keeps_leading_zeros(tmp_path: Path) -> None:
    frame = read_incidents_file(_write(tmp_path / "export.csv", EXPORT_CSV))

    assert list(frame.columns) == list(SODA_COLUMNS)
    first = frame.iloc[0]
    assert first["date"] == pd.Timestamp("2018-02-28 23:59:59")
    assert first["iucr"] == "0810"
    assert frame["beat"].tolist() == ["1834", "0924", "1824"]
    assert frame["district"].tolist() == ["018", "009", "018"]
    assert frame["arrest"].tolist() == [True, False, False]
    assert str(frame["ward"].dtype) == "Int64"
    assert frame.loc[2, "x_coordinate"] != frame.loc[2, "x_coordinate"]  # NaN, not 0
    # Year is absent from this export and derived from the date.
    assert frame["year"].tolist() == [2018, 2018, 2018]


def test_text_na_is_a_value_not_a_missing_field(tmp_path: Path) -> None:
    frame = read_incidents_file(_write(tmp_path / "export.csv", EXPORT_CSV))

    assert frame.loc[1, "description"] == "NA"
    assert pd.isna(frame.loc[2, "location_description"])


def test_both_header_styles_give_the_same_frame(tmp_path: Path) -> None:
    export = read_incidents_file(_write(tmp_path / "export.csv", EXPORT_CSV))
    soda = read_incidents_file(_write(tmp_path / "soda.csv", SODA_CSV))

    pd.testing.assert_frame_equal(export, soda)


@pytest.mark.parametrize("name", ["crimes.csv.gz", "crimes.csv", "crimes.data"])
def test_gzip_and_bom_are_detected_by_content(tmp_path: Path, name: str) -> None:
    plain = read_incidents_file(_write(tmp_path / "plain.csv", EXPORT_CSV))
    packed = read_incidents_file(_write(tmp_path / name, EXPORT_CSV, bom=True, gz=True))

    pd.testing.assert_frame_equal(plain, packed)


def test_bom_on_plain_csv_does_not_hide_the_id_column(tmp_path: Path) -> None:
    frame = read_incidents_file(_write(tmp_path / "bom.csv", SODA_CSV, bom=True))

    assert frame["id"].tolist() == [11482392, 11459757, 11460001]


def _renamed_layout() -> pd.DataFrame:
    """Two rows in the renamed-column Parquet layout, engineered columns included."""
    return pd.DataFrame(
        {
            "id": pd.array(["13616114", "13618473"], dtype="string"),
            "case_number": ["JH450804", "JH453424"],
            "created_date": ["2024-09-30T23:58:00.000", "2024-09-01T00:05:00.000"],
            "block_address": ["074XX S COLES AVE", "040XX N MOODY AVE"],
            "iucr_code": ["051A", "0820"],
            "crime_type": ["ASSAULT", "THEFT"],
            "crime_description": ["AGGRAVATED - HANDGUN", "$500 AND UNDER"],
            "location_type": ["STREET", "RESIDENCE - GARAGE"],
            "arrest_made": pd.array([True, False], dtype="boolean"),
            "is_domestic": pd.array([False, False], dtype="boolean"),
            "beat_id": pd.array([334, 1624], dtype="Int64"),
            "district_id": pd.array([3, 16], dtype="Int64"),
            "ward_id": pd.array([7, 38], dtype="Int64"),
            "community_area_id": pd.array([43, 15], dtype="Int64"),
            "fbi_code": ["04A", "06"],
            "x_coordinate": [1195223.0, 1134633.0],
            "y_coordinate": [1856584.0, 1926252.0],
            "incident_year": pd.array([2024, 2024], dtype="Int64"),
            "updated_on": ["2025-05-17T15:40:52.000", "2025-05-17T15:40:52.000"],
            "latitude": [41.761375, 41.953834],
            "longitude": [-87.560048, -87.780474],
            "location_point": ["\n,  \n(41.76, -87.56)", "\n,  \n(41.95, -87.78)"],
            # Engineered columns that collide with SODA names once the aliases are applied.
            "date": ["2024-09-30", "2024-09-01"],
            "year": pd.array([1999, 1999], dtype="int32"),
            "hour": pd.array([23, 0], dtype="int8"),
        }
    )


def test_renamed_parquet_layout_maps_to_soda_names(tmp_path: Path) -> None:
    path = tmp_path / "features.parquet"
    _renamed_layout().to_parquet(path)

    frame = read_incidents_file(path)

    assert list(frame.columns) == list(SODA_COLUMNS)
    # The full timestamp comes from created_date, not the engineered day-only `date`.
    assert frame["date"].tolist() == [
        pd.Timestamp("2024-09-30 23:58:00"),
        pd.Timestamp("2024-09-01 00:05:00"),
    ]
    assert frame["year"].tolist() == [2024, 2024]
    assert frame["beat"].tolist() == ["0334", "1624"]
    assert frame["district"].tolist() == ["003", "016"]
    assert frame["arrest"].tolist() == [True, False]
    assert frame["primary_type"].tolist() == ["ASSAULT", "THEFT"]


def test_resolve_aliases_leaves_soda_frames_alone() -> None:
    frame = pd.DataFrame({"id": ["1"], "date": ["2018-03-01"], "year": ["2018"]})

    assert resolve_aliases(frame) is frame
    assert set(PARQUET_ALIASES.values()).isdisjoint(PARQUET_ALIASES)


def test_packaged_stations() -> None:
    stations = read_stations_file()

    assert list(stations.columns) == list(STATION_COLUMNS)
    assert len(stations) == 23
    assert "Headquarters" in set(stations["district"])
    assert stations["x_coordinate"].dtype == "float64"
    assert stations["latitude"].between(41.6, 42.1).all()


def test_title_case_stations_export_with_bom_and_embedded_newline(tmp_path: Path) -> None:
    path = tmp_path / "Police_Stations.csv"
    path.write_text(STATIONS_EXPORT, encoding="utf-8")

    stations = read_stations_file(path)

    assert list(stations.columns) == list(STATION_COLUMNS)
    assert stations["district"].tolist() == ["Headquarters", "12"]
    assert stations.loc[1, "address"] == "1412 S Blue Island Ave"
    assert stations.loc[1, "x_coordinate"] == pytest.approx(1168487.845)
    assert stations["zip"].tolist() == ["60653", "60608"]


def test_stations_file_without_coordinates_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "stations.csv"
    path.write_text("district,district_name,address\n1,Central,1718 S State St\n")

    with pytest.raises(ValueError, match="x_coordinate"):
        read_stations_file(path)


@pytest.mark.real_data
@needs_real
def test_real_stations_export_matches_packaged_file() -> None:
    pd.testing.assert_frame_equal(
        read_stations_file(REAL / "police_stations.csv"), read_stations_file()
    )


@pytest.mark.real_data
@needs_real
def test_real_renamed_parquet() -> None:
    frame = read_incidents_file(REAL / "crimes_2024-09_ntropy86_sanitized.parquet")

    assert len(frame) == 22_919
    assert (frame["date"].dt.strftime("%Y-%m") == "2024-09").all()
    assert frame["beat"].str.len().eq(4).all()
    assert int(frame["arrest"].sum()) == 3_022


@pytest.mark.real_data
@pytest.mark.slow
@needs_real
def test_real_2018_export_month_counts() -> None:
    frame = read_incidents_file(
        REAL / "crimes_2018-01_to_2018-10_chicagocrimedata-datastore.csv.gz"
    )

    assert len(frame) == 222_472
    per_month = frame["date"].dt.to_period("M").value_counts()
    assert per_month[pd.Period("2018-03", "M")] == 21_074
    assert int(frame["arrest"].sum()) == 43_406
    assert frame["ward"].isna().sum() == 3
