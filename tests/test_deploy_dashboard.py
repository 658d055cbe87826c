"""The Grafana dashboard only queries metrics that streambind (or Ray) really exports."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import pytest
import ray

from streambind.metrics import exported_metric_names

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "streambind.json"

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_VARIABLES = re.compile(r"\$\{?\w+\}?")
_IDENT = re.compile(r"(?<![\w.:])[A-Za-z_:][\w:]*(?!\w)")
_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "atan2",
}
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.*?)\s*,\s*\w+\s*\)\s*$", re.DOTALL)


def metric_names(expr: str) -> set[str]:
    """Metric identifiers referenced by a PromQL expression (or Grafana label_values)."""
    m = _LABEL_VALUES.match(expr)
    if m:
        expr = m.group(1)
    expr = _STRINGS.sub(" ", expr)
    expr = _MATCHERS.sub(" ", expr)
    expr = _RANGES.sub(" ", expr)
    expr = _GROUPING.sub(" ", expr)
    expr = _VARIABLES.sub(" ", expr)
    names = set()
    for token in _IDENT.finditer(expr):
        rest = expr[token.end() :].lstrip()
        if rest.startswith("(") or token.group().lower() in _KEYWORDS:
            continue  # a function or aggregation, or an operator keyword
        names.add(token.group())
    return names


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


@cache
def _ray_serve_sources() -> str:
    root = Path(ray.__file__).parent / "serve"
    return "\n".join(p.read_text(errors="ignore") for p in root.rglob("*.py"))


def is_ray_metric(name: str) -> bool:
    """Ray exports its metrics with the ``ray_`` prefix; the rest is defined in Ray's code."""
    quoted = f'"{name.removeprefix("ray_")}"'
    return name.startswith("ray_serve_") and quoted in _ray_serve_sources()


def test_extractor_finds_metrics_and_ignores_functions_labels_and_variables():
    expr = (
        'histogram_quantile(0.99, sum by (le, modality) (rate(foo_bucket{modality=~"$m",'
        ' le!="+Inf"}[$__rate_interval]))) / on(job) group_left(x) bar_total offset 5m'
        " > bool 0 or vector(1) unless absent(baz:rate5m)"
    )
    assert metric_names(expr) == {"foo_bucket", "bar_total", "baz:rate5m"}
    assert metric_names("label_values(streambind_events_total, modality)") == {
        "streambind_events_total"
    }


def test_every_dashboard_metric_is_exported():
    exported = exported_metric_names()
    used: set[str] = set()
    for expr in dashboard_exprs():
        names = metric_names(expr)
        assert names, f"no metric found in {expr!r}"
        used |= names
    unknown = {n for n in used if n not in exported and not is_ray_metric(n)}
    assert unknown == set()
    # The panels the issue asks for are there: lag, events/s, latency percentiles,
    # batch sizes, DLQ rate.
    assert {
        "streambind_consumer_lag_records",
        "streambind_events_total",
        "streambind_end_to_end_latency_seconds_bucket",
        "streambind_batch_size_bucket",
        "streambind_dlq_total",
    } <= used
    latency = [e for e in dashboard_exprs() if "end_to_end_latency_seconds_bucket" in e]
    quantiles = {float(q) for e in latency for q in re.findall(r"histogram_quantile\(([\d.]+)", e)}
    assert {0.5, 0.99} <= quantiles


@pytest.mark.parametrize("name", ["streambind_event_total", "ray_serve_no_such_metric"])
def test_a_misspelled_metric_is_caught(name):
    assert name not in exported_metric_names() and not is_ray_metric(name)


def test_dashboard_shape():
    board = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    assert board["uid"] == "streambind"
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert all(t["refId"] and t["expr"] for t in panel["targets"])
        # Counters are shown as rates, never as raw ever-growing totals.
        for target in panel["targets"]:
            for name in metric_names(target["expr"]):
                if name.endswith(("_total", "_bucket", "_sum", "_count")):
                    assert re.search(rf"(rate|increase)\({re.escape(name)}\b", target["expr"])


def test_the_chart_ships_the_same_dashboard():
    chart_copy = DASHBOARD.parents[2] / "helm" / "streambind" / "files" / "grafana" / DASHBOARD.name
    assert chart_copy.read_bytes() == DASHBOARD.read_bytes()
