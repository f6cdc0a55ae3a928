"""OpenAPI documentation of the prediction endpoints: request examples and shared error replies.

Kept apart from the handlers in api.controllers so those read as handlers. The examples are real
bodies: tests post them and expect 200.
"""

from __future__ import annotations

from typing import Any

from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example

from api.schemas import ErrorBody

SODA_EXAMPLE: dict[str, Any] = {
    "id": "13276564",
    "case_number": "JJ486124",
    "date": "2025-11-02T23:50:00.000",
    "block": "064XX S STATE ST",
    "iucr": "0486",
    "primary_type": "BATTERY",
    "description": "DOMESTIC BATTERY SIMPLE",
    "location_description": "APARTMENT",
    "arrest": False,
    "domestic": True,
    "beat": "0312",
    "district": "003",
    "ward": "20",
    "community_area": "69",
    "fbi_code": "08B",
    "x_coordinate": "1178031",
    "y_coordinate": "1862281",
    "year": "2025",
    "updated_on": "2025-11-09T15:41:23.000",
    "latitude": "41.777434",
    "longitude": "-87.624842",
}
NUMBERS_EXAMPLE: dict[str, Any] = {
    "date": "2025-11-03T05:50:00Z",
    "iucr": 486,
    "primary_type": "BATTERY",
    "description": "DOMESTIC BATTERY SIMPLE",
    "location_description": "APARTMENT",
    "domestic": True,
    "beat": 312,
    "district": 3,
    "ward": 20,
    "community_area": 69,
    "fbi_code": "08B",
    "latitude": 41.777434,
    "longitude": -87.624842,
}
MINIMAL_EXAMPLE: dict[str, Any] = {
    "date": "2025-11-02T23:50:00",
    "iucr": "0820",
    "primary_type": "THEFT",
}
INCIDENT_EXAMPLES = [
    Example(summary="A record copied from the SODA JSON feed (all strings)", value=SODA_EXAMPLE),
    Example(summary="The same incident with JSON numbers and a UTC time", value=NUMBERS_EXAMPLE),
    Example(summary="Only the required fields (no position)", value=MINIMAL_EXAMPLE),
]
INCIDENT_LIST_EXAMPLES = [
    Example(summary="Two incidents", value=[SODA_EXAMPLE, MINIMAL_EXAMPLE]),
]
FEEDBACK_EXAMPLES = [
    Example(
        summary="The incident did end in an arrest",
        value={"prediction_id": "3f1c0b6e9d2a4c5e8f7a6b5c4d3e2f1a", "arrest": True},
    ),
]
ERROR_RESPONSES = {
    400: ResponseSpec(ErrorBody, description="Invalid body: `errors` names each field (and row)"),
    503: ResponseSpec(ErrorBody, description="No model loaded, or the prediction log is down"),
}
