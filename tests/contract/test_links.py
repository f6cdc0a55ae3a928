"""The links people open, built from the public URL settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from crimeflow.contract.links import Links
from crimeflow.contract.settings import Settings

PUBLIC = {
    "api_public_url": "https://crimeflow.example.org",
    "mlflow_public_url": "https://mlflow.example.org",
    "prefect_public_url": "https://prefect.example.org",
}


def links_of(tmp_path: Path, **settings: object) -> Links:
    return Links.from_settings(Settings(home=tmp_path, _env_file=None, **settings))


def test_links_use_the_public_urls(tmp_path: Path) -> None:
    links = links_of(tmp_path, api_host="0.0.0.0", **PUBLIC)
    assert links.report("20240510T120000Z-ab12") == (
        "https://crimeflow.example.org/reports/20240510T120000Z-ab12"
    )
    assert links.reports() == "https://crimeflow.example.org/reports"
    assert (
        links.mlflow_run("7", "abc123") == "https://mlflow.example.org/#/experiments/7/runs/abc123"
    )
    assert links.model_version("chicago-arrest", "3") == (
        "https://mlflow.example.org/#/models/chicago-arrest/versions/3"
    )
    assert links.flow_run("0b1c-uuid") == "https://prefect.example.org/runs/flow-run/0b1c-uuid"


@pytest.mark.parametrize("how", ["settings", "by hand"])
def test_a_trailing_slash_gives_no_double_slash(tmp_path: Path, how: str) -> None:
    slashed = {name: f"{url}/" for name, url in PUBLIC.items()}
    if how == "settings":
        links = links_of(tmp_path, **slashed)
    else:
        links = Links(*(slashed[f"{n}_public_url"] for n in ("api", "mlflow", "prefect")))
    assert links.report("r-1") == "https://crimeflow.example.org/reports/r-1"
    assert links.mlflow_run("1", "r") == "https://mlflow.example.org/#/experiments/1/runs/r"
    assert links.flow_run("f") == "https://prefect.example.org/runs/flow-run/f"


def test_derived_defaults_reach_a_wildcard_bind_through_the_loopback(tmp_path: Path) -> None:
    links = links_of(tmp_path, api_host="0.0.0.0", api_port=8123, prefect_port=4321)
    assert links.report("r-1") == "http://127.0.0.1:8123/reports/r-1"
    assert "0.0.0.0" not in links.api
    assert links.flow_run("f") == "http://127.0.0.1:4321/runs/flow-run/f"
    # The embedded MLflow store (SQLite) is browsed through the UI `crimeflow up` starts.
    assert links.model_version("m", "1") == "http://127.0.0.1:5000/#/models/m/versions/1"


def test_a_remote_tracking_server_is_the_default_mlflow_link(tmp_path: Path) -> None:
    links = links_of(tmp_path, mlflow_tracking_uri="https://tracking.example.org/")
    assert links.mlflow_run("2", "r") == "https://tracking.example.org/#/experiments/2/runs/r"


def test_model_names_are_escaped_ids_are_not(tmp_path: Path) -> None:
    links = Links("http://a", "http://m", "http://p")
    assert links.model_version("arrest model/v2", "4") == (
        "http://m/#/models/arrest%20model%2Fv2/versions/4"
    )
    assert links.model("arrest model/v2") == "http://m/#/models/arrest%20model%2Fv2"
    # An automation template's placeholder survives: the Prefect server fills it in.
    assert links.flow_run("{{ flow_run.id }}") == "http://p/runs/flow-run/{{ flow_run.id }}"


def test_optional_links_are_none_without_their_ids() -> None:
    links = Links("http://a", "http://m", "http://p")
    assert links.optional_run(None, "r") is None and links.optional_run("1", None) is None
    assert links.optional_run("1", "r") == "http://m/#/experiments/1/runs/r"
    assert links.optional_flow_run(None) is None
    assert links.optional_flow_run("f") == "http://p/runs/flow-run/f"


def test_the_model_card_link_opens_the_card_in_the_runs_artifacts(tmp_path: Path) -> None:
    links = links_of(tmp_path, **PUBLIC)
    assert links.model_card("7", "abc123") == (
        "https://mlflow.example.org/#/experiments/7/runs/abc123/artifacts/model_card.md"
    )
    assert links.optional_model_card("7", "abc123") == links.model_card("7", "abc123")
    assert links.optional_model_card(None, "abc123") is None
    assert links.optional_model_card("7", None) is None
