"""The Grafana dashboard and the Prometheus config: valid, and only about metrics we export.

`gateway.metrics.SERIES` is what test_metrics.py finds on a live Ray scrape, so every series
named here is one a scrape really has. With `promtool` installed (Debian/Ubuntu package
`prometheus`), every expression is also parsed by Prometheus itself.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway import metrics as gm

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "configs" / "grafana" / "champion-gateway.json"
PROMETHEUS = ROOT / "configs" / "prometheus.yml"
DATASOURCE_UID = "${datasource}"
METRIC = re.compile(r"\bray_gateway_\w+")
# Grafana's variables, replaced as Grafana would before the query reaches Prometheus.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__range": "1h", "$guard": ".*"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # a collapsed row holds its panels


def _expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every query: panel targets, annotations, variables."""
    found = [(f"panel {p['title']!r}", t["expr"]) for p in _panels(dashboard["panels"])
             for t in p.get("targets", [])]
    found += [(f"annotation {a['name']!r}", a["expr"])
              for a in dashboard["annotations"]["list"] if "expr" in a]
    found += [(f"variable {v['name']!r}", v["query"]["query"])
              for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return found


def _kind_of(series: str) -> gm.Kind:
    for spec in gm.SPECS:
        if series in spec.series:
            return spec.kind
    raise KeyError(series)


def test_dashboard_is_importable(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "champion-gateway"
    assert dashboard["title"]
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in _panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in _panels(dashboard["panels"]):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]


def test_every_panel_queries_prometheus_through_the_variable(
        dashboard: dict[str, Any]) -> None:
    for panel in _panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            assert annotation["datasource"]["uid"] == DATASOURCE_UID


def test_every_metric_named_is_exported(dashboard: dict[str, Any]) -> None:
    for where, expr in _expressions(dashboard):
        names = METRIC.findall(expr)
        assert names, f"{where}: no gateway metric in {expr!r}"
        unknown = sorted(set(names) - gm.SERIES)
        assert not unknown, f"{where}: not exported by gateway.metrics: {unknown}"


def test_functions_fit_the_metric_types(dashboard: dict[str, Any]) -> None:
    """rate/increase only over counters and histogram series; quantiles over buckets."""
    for where, expr in _expressions(dashboard):
        for name in re.findall(r"\b(?:rate|increase)\((ray_gateway_\w+)", expr):
            assert _kind_of(name) is not gm.Kind.GAUGE, f"{where}: rate of gauge {name}"
        if "histogram_quantile" in expr:
            assert all(n.endswith("_bucket") for n in METRIC.findall(expr)), where
            assert "le)" in expr, f"{where}: aggregation must keep the le label"


def test_expressions_are_balanced(dashboard: dict[str, Any]) -> None:
    pairs = {")": "(", "]": "[", "}": "{"}
    for where, expr in _expressions(dashboard):
        stack: list[str] = []
        for char in re.sub(r'"[^"]*"', '""', expr):  # ignore brackets inside strings
            if char in "([{":
                stack.append(char)
            elif char in pairs:
                assert stack and stack.pop() == pairs[char], f"{where}: {expr!r}"
        assert not stack and expr.count('"') % 2 == 0, f"{where}: {expr!r}"


def test_dashboard_covers_every_metric(dashboard: dict[str, Any]) -> None:
    named = {n for _, expr in _expressions(dashboard) for n in METRIC.findall(expr)}
    missing = [spec.exported for spec in gm.SPECS if not set(spec.series) & named]
    assert not missing, f"metrics without a panel: {missing}"


def test_rollbacks_are_annotated(dashboard: dict[str, Any]) -> None:
    exprs = [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    assert any(gm.ROLLBACKS.exported in e for e in exprs)


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path


def test_prometheus_parses_every_expression(dashboard: dict[str, Any],
                                            tmp_path: Path) -> None:
    promtool = _promtool()
    rules = []
    for i, (_, expr) in enumerate(_expressions(dashboard)):
        for var, value in GRAFANA_VARS.items():
            expr = expr.replace(var, value)
        if expr.startswith("label_values("):  # a Grafana function, not PromQL
            expr = re.sub(r"label_values\((\w+), \w+\)", r"\1", expr)
        rules.append({"record": f"dashboard:expr_{i}", "expr": expr})
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_scrapes_the_ray_metrics_port() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    assert targets == ["127.0.0.1:8080"]
    text = PROMETHEUS.read_text()
    assert "--metrics-export-port=8080" in text
    assert "/tmp/ray/prom_metrics_service_discovery.json" in text


def test_prometheus_config_is_valid() -> None:
    promtool = _promtool()
    result = subprocess.run([promtool, "check", "config", str(PROMETHEUS)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
