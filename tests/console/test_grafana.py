"""The Grafana dashboard in deploy/grafana/ queries only series mailprobe exposes: the
per-monitor ones of `/metrics/monitors` and the controller's and agents' own."""

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import agent.metrics
import controller.observability.metrics
import controller.oracles.metrics
from controller.web.console.scrape_series import FAMILIES

# Both register their process metrics in prometheus_client's default registry on import.
assert agent.metrics and controller.observability.metrics and controller.oracles.metrics

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"


def _exposed() -> set[str]:
    names = {f.name for f in FAMILIES}
    for family in REGISTRY.collect():
        names.add(family.name)
        names |= {f"{family.name}{s}" for s in ("_total", "_bucket", "_sum", "_count")}
    return names


def test_the_dashboard_queries_only_exposed_series() -> None:
    dashboard = json.loads((GRAFANA / "mailprobe.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {n for e in exprs for n in re.findall(r"\bmailprobe_[a-z_]+", e)}
    assert used, exprs
    assert used <= _exposed(), sorted(used - _exposed())
    assert {"mailprobe_check_response_seconds", "mailprobe_check_phase_seconds"} <= used


def test_the_dashboard_shows_uptime_and_names_monitors_by_the_info_series() -> None:
    """Uptime over the dashboard's range comes from `mailprobe_check_up`; a monitor's name is
    read off `mailprobe_monitor_info` (joined on `monitor`), the only series that has it."""
    dashboard = json.loads((GRAFANA / "mailprobe.json").read_text())
    panels = {p["title"]: [t["expr"] for t in p["targets"]] for p in dashboard["panels"]}
    uptime = [e for t, es in panels.items() if t.startswith("Uptime") for e in es]
    assert uptime and "avg_over_time(mailprobe_check_up[$__range])" in uptime[0]
    for expr in (e for es in panels.values() for e in es):
        for selector in re.findall(r"(mailprobe_[a-z_]+)\{[^}]*\bname=", expr):
            assert selector == "mailprobe_monitor_info", expr


def test_the_provisioning_examples_point_at_the_dashboard() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/mailprobe.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"
    scrape = yaml.safe_load((GRAFANA / "prometheus.example.yaml").read_text())
    jobs = {j["job_name"]: j for j in scrape["scrape_configs"]}
    assert jobs["mailprobe-monitors"]["metrics_path"] == "/metrics/monitors"


def test_the_sharded_scrape_example_covers_every_shard_once() -> None:
    """One target per `shard` of `shards`, the shard kept as a label (each target's own `up`)."""
    scrape = yaml.safe_load((GRAFANA / "prometheus.sharded.example.yaml").read_text())
    (job,) = scrape["scrape_configs"]
    assert job["metrics_path"] == "/metrics/monitors"
    (shards,) = job["params"]["shards"]
    got = sorted(int(g["labels"]["__param_shard"]) for g in job["static_configs"])
    assert got == list(range(int(shards)))
    assert {"source_labels": ["__param_shard"], "target_label": "shard"} in job["relabel_configs"]
