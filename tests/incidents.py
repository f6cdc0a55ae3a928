"""One real incident (Socrata id 14019926) in the shapes clients send, for codec and API tests."""

from __future__ import annotations

from typing import Any

# A record as the SODA JSON feed sends it: every value a string.
SODA: dict[str, Any] = {
    "id": "14019926",
    "case_number": "JJ477750",
    "date": "2025-11-03T00:00:00.000",
    "block": "088XX S HERMITAGE AVE",
    "iucr": "0820",
    "primary_type": "THEFT",
    "description": "$500 AND UNDER",
    "location_description": "OTHER (SPECIFY)",
    "domestic": "false",
    "beat": "2221",
    "district": "022",
    "ward": "18",
    "community_area": "71",
    "fbi_code": "06",
    "x_coordinate": "1166222",
    "y_coordinate": "1846073",
    "year": "2025",
    "updated_on": "2025-11-10T15:44:45.000",
    "latitude": "41.733197065",
    "longitude": "-87.666637175",
}
# The same incident with numbers and booleans.
NUMBERS: dict[str, Any] = {
    **SODA,
    "id": 14019926,
    "domestic": False,
    "beat": 2221,
    "district": 22,
    "ward": 18,
    "community_area": 71,
    "fbi_code": 6,
    "iucr": 820,
    "x_coordinate": 1166222.0,
    "y_coordinate": 1846073.0,
    "year": 2025,
    "latitude": 41.733197065,
    "longitude": -87.666637175,
}
MINIMAL: dict[str, Any] = {"date": "2024-05-01T14:30:00", "iucr": "0486", "primary_type": "BATTERY"}
