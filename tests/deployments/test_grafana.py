"""Static checks of the Grafana provisioning and dashboards (deployments/grafana/).

No Grafana is needed: every dashboard is parsed and checked for what breaks one silently in
Grafana (duplicate panel ids, panels off the grid or on top of each other, a datasource other
than the provisioned one), and every PromQL query may only name series crimeflow exports
(tests/deployments/metric_names.py, compared with the API's own registry here) or recording
rules of deployments/prometheus/. Each checker is also fed a broken copy.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.observability import ApiMetrics
from tests.deployments.metric_names import API_METRICS, METRICS, SUFFIXES, series_names

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deployments" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "crimeflow.yml"
RULES = ROOT / "deployments" / "prometheus"
COMPOSE = ROOT / "compose.yaml"
MIN_SCHEMA_VERSION = 39
GRID_WIDTH = 24

# PromQL string literals ("...", '...', `...`): label values and regexes, never metric names.
PROMQL_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
# A crimeflow series or recording-rule name (`crimeflow_...` or `crimeflow:...`).
CRIMEFLOW_NAME = re.compile(r"(?<![\w:$])crimeflow[_:][A-Za-z0-9_:]*")


# --- loading --------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    """One YAML document."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard JSON file, parsed, by file name."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(DASHBOARDS.glob("*.json"))
    }


def prometheus_datasource(provisioning: Mapping[str, Any]) -> dict[str, Any]:
    """The one provisioned datasource of type prometheus."""
    found = [d for d in provisioning["datasources"] if d["type"] == "prometheus"]
    assert len(found) == 1, found
    return found[0]


def recording_rules(folder: Path = RULES) -> set[str]:
    """The names every rule file under `folder` records (none when the folder is absent)."""
    names: set[str] = set()
    for path in sorted(folder.rglob("*.yml")) if folder.is_dir() else []:
        document = load_yaml(path) or {}
        if not isinstance(document, Mapping):
            continue
        for group in document.get("groups") or []:
            names |= {rule["record"] for rule in group.get("rules") or [] if "record" in rule}
    return names


# --- walking a dashboard ----------------------------------------------------------------------


def all_panels(board: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, the ones inside (collapsed) rows too."""
    for panel in board.get("panels") or []:
        yield panel
        yield from panel.get("panels") or []


def queries(board: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every query: panel targets, template variables, annotations."""
    for panel in all_panels(board):
        for target in panel.get("targets") or []:
            yield f"panel {panel.get('id')} {target.get('refId')}", target.get("expr", "")
    for variable in (board.get("templating") or {}).get("list") or []:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, Mapping) else query or ""
        if variable.get("type") == "query":
            yield f"variable {variable.get('name')}", text
    for annotation in (board.get("annotations") or {}).get("list") or []:
        if "expr" in annotation:
            yield f"annotation {annotation.get('name')}", annotation["expr"]


def promql_names(expr: str) -> set[str]:
    """The crimeflow series and recording-rule names a PromQL query reads."""
    return set(CRIMEFLOW_NAME.findall(PROMQL_STRING.sub('""', expr)))


# --- checkers ---------------------------------------------------------------------------------


def grid_errors(panels: Iterable[Mapping[str, Any]]) -> list[str]:
    """Panels whose gridPos is malformed, off the 24-column grid, or overlaps another one."""
    errors: list[str] = []
    taken: dict[tuple[int, int], Any] = {}
    for panel in panels:
        pos = panel.get("gridPos") or {}
        where = f"panel {panel.get('id')} ({panel.get('title')!r})"
        if not all(isinstance(pos.get(k), int) for k in ("h", "w", "x", "y")):
            errors.append(f"{where}: gridPos {pos} needs integer h, w, x, y")
            continue
        if pos["h"] < 1 or pos["w"] < 1 or pos["x"] < 0 or pos["y"] < 0:
            errors.append(f"{where}: gridPos {pos} is empty or negative")
        elif pos["x"] + pos["w"] > GRID_WIDTH:
            errors.append(f"{where}: gridPos {pos} is wider than the grid")
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                if (x, y) in taken and taken[(x, y)] != panel.get("id"):
                    errors.append(f"{where}: overlaps panel {taken[(x, y)]}")
                    break
                taken[(x, y)] = panel.get("id")
            else:
                continue
            break
    return errors


def is_int(panel: Mapping[str, Any]) -> bool:
    """Whether the panel's id is an integer (a bool is not one, though Python says so)."""
    return type(panel.get("id")) is int


def panel_errors(board: Mapping[str, Any], datasource_uid: str) -> list[str]:
    """Ids, descriptions, datasources and queries of the panels."""
    errors: list[str] = []
    panels = list(all_panels(board))
    ids = [panel.get("id") for panel in panels]
    twice = sorted({i for i in ids if ids.count(i) > 1}, key=str)
    errors += [f"panel id {i!r} is used twice" for i in twice]
    errors += [
        f"panel {p.get('title')!r}: id is no integer" for p in panels if type(p["id"]) is not int
    ]
    errors += grid_errors(panels)
    for panel in panels:
        if panel.get("type") == "row":
            continue
        where = f"panel {panel.get('id')} ({panel.get('title')!r})"
        if not str(panel.get("description") or "").strip():
            errors.append(f"{where}: no description")
        targets = panel.get("targets") or []
        if not targets:
            errors.append(f"{where}: no query")
        sources = [panel.get("datasource"), *(t.get("datasource") for t in targets)]
        errors += [
            f"{where}: datasource {source!r}, not uid {datasource_uid!r}"
            for source in sources
            if not isinstance(source, Mapping) or source.get("uid") != datasource_uid
        ]
        errors += [f"{where}: a query without expr" for t in targets if not t.get("expr")]
    return errors


def query_errors(board: Mapping[str, Any], known: set[str]) -> list[str]:
    """Queries naming a crimeflow series or recording rule that nothing exports."""
    return [
        f"{where}: {name} is not exported (query: {expr})"
        for where, expr in queries(board)
        for name in sorted(promql_names(expr) - known)
    ]


def dashboard_errors(board: Mapping[str, Any], datasource_uid: str, known: set[str]) -> list[str]:
    """Everything wrong with one dashboard."""
    errors = []
    if not board.get("uid") or not board.get("title"):
        errors.append("dashboard without uid or title")
    if int(board.get("schemaVersion") or 0) < MIN_SCHEMA_VERSION:
        errors.append(f"schemaVersion {board.get('schemaVersion')} < {MIN_SCHEMA_VERSION}")
    if board.get("id") is not None:
        errors.append("a fixed numeric id (provisioned dashboards are found by uid)")
    return errors + panel_errors(board, datasource_uid) + query_errors(board, known)


def known_names() -> set[str]:
    """What queries may name: exported series and the recording rules of the repository."""
    return set(series_names()) | recording_rules()


def compose_mount_target(service: Mapping[str, Any], source: str) -> str | None:
    """Where a compose service mounts a repository path (`./path:/target[:ro]`)."""
    for volume in service.get("volumes") or []:
        parts = volume.split(":")
        if parts[0].rstrip("/") == source.rstrip("/"):
            return parts[1]
    return None


# --- tests: the dashboards ----------------------------------------------------------------


def test_there_are_the_two_dashboards_with_distinct_uids() -> None:
    boards = dashboards()
    assert set(boards) == {"serving.json", "model-health.json"}
    titles = {board["title"] for board in boards.values()}
    assert titles == {"crimeflow · Serving", "crimeflow · Model health"}
    assert len({board["uid"] for board in boards.values()}) == len(boards)


def test_every_dashboard_is_valid_and_queries_exported_names() -> None:
    uid = prometheus_datasource(load_yaml(DATASOURCES))["uid"]
    known = known_names()
    errors = {name: dashboard_errors(board, uid, known) for name, board in dashboards().items()}
    assert errors == {name: [] for name in errors}


def test_the_dashboards_show_every_exported_metric() -> None:
    used = {
        n for board in dashboards().values() for _, e in queries(board) for n in promql_names(e)
    }
    families = {name for name in METRICS if any(name + s in used for s in SUFFIXES[METRICS[name]])}
    assert set(METRICS) - families == set()


def test_the_checker_rejects_unknown_metrics_and_broken_panels() -> None:
    uid = prometheus_datasource(load_yaml(DATASOURCES))["uid"]
    board = copy.deepcopy(dashboards()["serving.json"])
    panels = [p for p in board["panels"] if p["type"] != "row"]
    panels[0]["targets"][0]["expr"] = 'rate(crimeflow_request_total{route="crimeflow_x"}[5m])'
    panels[1]["targets"].append({"refId": "Z", "expr": "crimeflow:nope:rate5m"})
    panels[2]["id"] = panels[3]["id"]
    panels[4]["gridPos"] = {**panels[5]["gridPos"]}
    panels[6]["datasource"] = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    panels[7]["description"] = " "
    panels[8]["gridPos"]["x"] = 20
    panels[8]["gridPos"]["w"] = 8
    panels[9]["targets"][0]["expr"] = ""
    errors = dashboard_errors(board, uid, known_names())
    joined = "\n".join(errors)
    assert "crimeflow_request_total is not exported" in joined
    # A label value that looks like a metric name is not one.
    assert "crimeflow_x is not exported" not in joined
    assert "crimeflow:nope:rate5m is not exported" in joined
    assert f"panel id {panels[3]['id']} is used twice" in joined
    moved, under = panels[4], panels[5]
    assert f"panel {under['id']} ({under['title']!r}): overlaps panel {moved['id']}" in joined
    assert "${DS_PROMETHEUS}" in joined and "datasource None" in joined  # the target Z
    assert f"panel {panels[9]['id']} ({panels[9]['title']!r}): a query without expr" in joined
    assert f"panel {panels[7]['id']} ({panels[7]['title']!r}): no description" in joined
    assert "is wider than the grid" in joined


def test_promql_names_sees_series_and_recording_rules_not_strings_or_labels() -> None:
    expr = (
        'sum by (le) (rate(crimeflow_request_seconds_bucket{job="crimeflow_api"}[5m]))'
        " / on (instance) crimeflow:requests:rate5m + ignoring (zone) up{x=~'crimeflow_.*'}"
    )
    assert promql_names(expr) == {"crimeflow_request_seconds_bucket", "crimeflow:requests:rate5m"}
    assert promql_names("label_values(crimeflow_ready, reason)") == {"crimeflow_ready"}


def test_recording_rules_are_read_from_the_rule_files(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "recording.yml").write_text(
        "groups:\n- name: g\n  rules:\n  - record: crimeflow:requests:rate5m\n    expr: up\n"
        "  - alert: A\n    expr: up == 0\n",
        encoding="utf-8",
    )
    (tmp_path / "prometheus.yml").write_text("global: {}\n", encoding="utf-8")
    assert recording_rules(tmp_path) == {"crimeflow:requests:rate5m"}
    assert recording_rules(tmp_path / "absent") == set()


# --- tests: the contract and the code ---------------------------------------------------------


def test_the_api_exports_exactly_the_contracts_api_metrics() -> None:
    families = {
        metric.name: metric.type
        for metric in ApiMetrics().registry.collect()
        if metric.name.startswith("crimeflow_")
    }
    assert families == dict(API_METRICS)


def test_series_names_follow_prometheus_client_suffixes() -> None:
    names = series_names({"a": "counter", "b": "gauge", "c": "histogram"})
    assert names == {"a_total", "b", "c_bucket", "c_sum", "c_count"}


# --- tests: provisioning ----------------------------------------------------------------------


def test_datasource_is_compose_prometheus_with_a_fixed_uid() -> None:
    compose = load_yaml(COMPOSE)
    provisioning = load_yaml(DATASOURCES)
    assert provisioning["apiVersion"] == 1
    prometheus = prometheus_datasource(provisioning)
    assert prometheus["uid"] == "crimeflow-prometheus"
    assert prometheus["url"] == "http://prometheus:9090"
    assert "127.0.0.1:9090:9090" in compose["services"]["prometheus"]["ports"]
    for source in provisioning["datasources"]:
        host = re.fullmatch(r"http://([\w-]+):\d+", source["url"])
        assert host and host[1] in compose["services"], source["url"]


def test_dashboard_provider_reads_the_folder_compose_mounts() -> None:
    grafana = load_yaml(COMPOSE)["services"]["grafana"]
    providers = load_yaml(PROVIDERS)["providers"]
    assert [p["type"] for p in providers] == ["file"]
    target = compose_mount_target(grafana, "./deployments/grafana/dashboards")
    assert target == providers[0]["options"]["path"]
    for kind in ("datasources", "dashboards"):
        mounted = compose_mount_target(grafana, f"./deployments/grafana/provisioning/{kind}")
        assert mounted == f"/etc/grafana/provisioning/{kind}"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(target + "/") and (DASHBOARDS / Path(home).name).is_file()


def test_compose_mount_target_finds_bind_mounts() -> None:
    service = {"volumes": ["./a/b:/x:ro", "data:/y"]}
    assert compose_mount_target(service, "./a/b/") == "/x"
    assert compose_mount_target(service, "./c") is None


@pytest.mark.parametrize("name", ["serving.json", "model-health.json"])
def test_dashboards_are_stored_pretty_and_stable(name: str) -> None:
    # Pretty-printed with a trailing newline, as `json.dumps(indent=2)` writes it: an export
    # from the UI pasted in keeps diffs reviewable once it is re-formatted the same way.
    text = (DASHBOARDS / name).read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"
