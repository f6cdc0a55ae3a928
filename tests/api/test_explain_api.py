"""`?explain=true` on /predict and /predict/batch, against a real registry model."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from litestar.exceptions import HTTPException
from litestar.testing import TestClient

from api.app import create_app
from api.controllers import EXPLAIN_BATCH_MAX_ROWS, explainer_or_501
from crimeflow.contract.settings import Settings
from crimeflow.stores.serving import ServingModel
from tests.api.test_app import JSON, OTHER, SODA, copy_home


@pytest.fixture(scope="module")
def client(registry_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A running app serving the registry's champion (a logistic regression)."""
    settings: Settings = copy_home(registry_home, tmp_path_factory.mktemp("explain") / "home")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_explain_adds_contributions_that_add_up(client: TestClient[Any]) -> None:
    plain = client.post("/predict", json=SODA, headers=JSON)
    assert plain.status_code == 200, plain.text
    assert "contributions" not in plain.json()

    answer = client.post("/predict?explain=true&top=40", json=SODA, headers=JSON)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["arrest_probability"] == pytest.approx(plain.json()["arrest_probability"])
    contributions = body["contributions"]
    features = [c["feature"] for c in contributions]
    assert "crime type" in features and "location description" in features
    assert len(features) == len(set(features))
    # Every feature is listed with top=40: they add up to the raw score exactly.
    total = body["base_value"] + sum(c["contribution"] for c in contributions)
    assert total == pytest.approx(body["raw_score"], abs=1e-9)
    assert body["contribution_scale"] == "log-odds before calibration"
    assert body["explanation_method"].startswith("linear")
    by_feature = {c["feature"]: c["value"] for c in contributions}
    assert by_feature["crime type"] == "BATTERY"
    assert by_feature["location description"] == "APARTMENT"
    assert by_feature["hour"] == 21


def test_explain_returns_the_top_contributions_largest_first(client: TestClient[Any]) -> None:
    body = client.post("/predict?explain=true", json=OTHER, headers=JSON).json()
    sizes = [abs(c["contribution"]) for c in body["contributions"]]
    assert len(sizes) == 5
    assert sizes == sorted(sizes, reverse=True)
    bad = client.post("/predict?explain=true&top=0", json=OTHER, headers=JSON)
    assert bad.status_code == 400
    assert "top" in bad.text


def test_batch_explains_every_row_and_caps_explained_rows(client: TestClient[Any]) -> None:
    answer = client.post("/predict/batch?explain=true&top=3", json=[SODA, OTHER], headers=JSON)
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert [len(p["contributions"]) for p in predictions] == [3, 3]
    assert predictions[0]["contributions"][0]["feature"]
    plain = client.post("/predict/batch", json=[SODA, OTHER], headers=JSON).json()
    assert all("contributions" not in p for p in plain["predictions"])

    too_many = [OTHER] * (EXPLAIN_BATCH_MAX_ROWS + 1)
    refused = client.post("/predict/batch?explain=true", json=too_many, headers=JSON)
    assert refused.status_code == 413
    assert "1,000 rows" in refused.json()["detail"]


def test_a_model_without_an_exact_method_answers_501() -> None:
    model = ServingModel(
        model=object(),
        name="chicago-arrest",
        version="7",
        alias="champion",
        run_id=None,
        loaded_at=datetime.now(UTC),
    )
    with pytest.raises(HTTPException) as raised:
        explainer_or_501(model)
    assert raised.value.status_code == 501
    assert "v7 cannot be explained" in raised.value.detail
