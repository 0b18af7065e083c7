"""deploy/observability: every metric the dashboard and the alert rules use is exported by a real
server's ``/metrics``, and the files have the shape Grafana, Prometheus and the Collector expect."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import yaml

from servers import ROOT, RemoteServer

DIR = ROOT / "deploy" / "observability"
METRIC = re.compile(r"\b(?:vllm:[a-z0-9_:]+|modelyard_[a-z0-9_]+)")
SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def exported(url: str) -> set[str]:
    """Sample names the server can expose: every ``# TYPE`` family with its type's suffixes."""
    names: set[str] = set()
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "counter":
                names |= {name + "_total", name + "_created"}
            elif kind == "histogram":
                names |= {name + s for s in SUFFIXES[1:]}
    return names


def dashboard_exprs() -> list[str]:
    dash = json.loads((DIR / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    return exprs


def rule_exprs() -> list[str]:
    rules = yaml.safe_load((DIR / "prometheus-rules.yaml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def test_every_metric_used_is_exported(server: RemoteServer) -> None:
    names = exported(server.url)
    used = {m for e in dashboard_exprs() + rule_exprs() for m in METRIC.findall(e)}
    assert len(used) >= 15
    missing = sorted(used - names)
    assert not missing, f"dashboard/rules use metrics /metrics does not export: {missing}"
    # the vLLM names operators' dashboards and KEDA recipes rely on are among them
    assert {"vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:prefix_cache_hits_total"} <= names


def test_dashboard_shape() -> None:
    dash = json.loads((DIR / "grafana-dashboard.json").read_text())
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in (
        "first token",
        "inter-token",
        "tokens / s",
        "queue",
        "kv-cache",
        "prefix-cache",
        "failures",
        "truncation",
        "tenant",
    ):
        assert topic in titles, topic
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    for p in dash["panels"]:
        assert p["targets"] and all(t["refId"] and t["expr"] for t in p["targets"])
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "model", "tenant"}


def test_alert_rules_shape() -> None:
    rules = yaml.safe_load((DIR / "prometheus-rules.yaml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert {
        "ModelyardTTFTHigh",
        "ModelyardErrorRateHigh",
        "ModelyardQueueGrowing",
        "ModelyardKVCacheSaturated",
    } <= set(alerts)
    for rule in alerts.values():
        assert (
            rule["labels"]["severity"] in {"info", "warning", "critical"} and rule["annotations"]["summary"]
        )
        assert rule["expr"].count("(") == rule["expr"].count(")")


def test_collector_config_wires_otlp_to_langfuse() -> None:
    cfg = yaml.safe_load((DIR / "otel-collector.yaml").read_text())
    traces = cfg["service"]["pipelines"]["traces"]
    assert traces["receivers"] == ["otlp"] and "otlphttp/langfuse" in traces["exporters"]
    for section in ("receivers", "processors", "exporters"):
        for pipeline in cfg["service"]["pipelines"].values():
            assert set(pipeline[section]) <= set(cfg[section]), (section, pipeline[section])
    assert cfg["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")


def test_files_exist() -> None:
    assert sorted(p.name for p in Path(DIR).iterdir()) >= [
        "grafana-dashboard.json",
        "otel-collector.yaml",
        "prometheus-rules.yaml",
    ]
