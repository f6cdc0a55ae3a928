"""Shared test data for the prediction log's tests: one typed incident, records, what is stored."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from crimeflow.contract.incident import CanonicalIncident
from crimeflow.stores.prediction_log import PredictionRecord, new_prediction_id

REPO = Path(__file__).resolve().parents[3]
REAL_DATA_DIR = REPO / ".." / "shared" / "data" / "real"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

# One incident as the API hands it to the log: validated, in canonical Python types.
INCIDENT = CanonicalIncident(
    id=13_000_001,
    case_number="JH100001",
    date=datetime(2025, 2, 28, 23, 15),
    block="038XX S ARCHER AVE",
    iucr="0486",
    primary_type="BATTERY",
    description="DOMESTIC BATTERY SIMPLE",
    location_description="APARTMENT",
    domestic=True,
    beat="0912",
    district="009",
    ward=11,
    community_area=59,
    fbi_code="08B",
    x_coordinate=1_167_028.0,
    y_coordinate=1_879_278.0,
    year=2025,
    updated_on=datetime(2025, 3, 1, 6, 0),
    latitude=41.824299,
    longitude=-87.662736,
)
# The same incident as the feed's text, for frames.
FEED_TEXT: dict[str, str] = {
    "id": "13000001",
    "case_number": "JH100001",
    "date": "2025-02-28T23:15:00.000",
    "block": "038XX S ARCHER AVE",
    "iucr": "0486",
    "primary_type": "BATTERY",
    "description": "DOMESTIC BATTERY SIMPLE",
    "location_description": "APARTMENT",
    "domestic": "true",
    "beat": "0912",
    "district": "009",
    "ward": "11",
    "community_area": "59",
    "fbi_code": "08B",
    "x_coordinate": "1167028",
    "y_coordinate": "1879278",
    "year": "2025",
    "updated_on": "2025-03-01T06:00:00.000",
    "latitude": "41.824299",
    "longitude": "-87.662736",
}


def record(
    served_at: datetime | None = None,
    prediction_id: str | None = None,
    incident: CanonicalIncident = INCIDENT,
    **changes: Any,
) -> PredictionRecord:
    """A record of `incident` (with changed fields), served at `served_at` (default now)."""
    return PredictionRecord(
        prediction_id=prediction_id or new_prediction_id(),
        served_at=served_at or datetime.now(UTC),
        model_name="chicago-arrest",
        model_version="3",
        request_id="req-1",
        probability=0.25,
        label=False,
        incident=msgspec.structs.replace(incident, **changes),
    )


def stored_ids(url: str) -> set[str]:
    """Prediction ids visible to a brand-new connection (not the log's own pool)."""
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return set(
                connection.exec_driver_sql("SELECT prediction_id FROM predictions").scalars()
            )
    finally:
        engine.dispose()
