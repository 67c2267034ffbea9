"""Prometheus, Grafana and the dashboard in docker-compose.yml, checked statically (no Docker here).

The dashboard may only query metrics that exist: Tidings' own (tidings.telemetry) and the SDK
metrics that tests/test_metrics.py finds in a real scrape (`SDK_METRICS_ON_DASHBOARD`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_metrics import SDK_METRICS_ON_DASHBOARD
from tidings.settings import Settings
from tidings.telemetry import metrics
from tidings.telemetry.receiver import CALLBACKS

ROOT = Path(__file__).resolve().parent.parent
COUNTERS = [
    metrics.DELIVERIES,
    metrics.PROVIDER_RESPONSES,
    metrics.FALLBACKS,
    metrics.ESCALATIONS,
    metrics.DEVICES_DEACTIVATED,
    metrics.NOTIFICATIONS,
]
HISTOGRAMS = [metrics.DELIVERY_ATTEMPTS, metrics.DELIVERY_LATENCY]
TIDINGS_SERIES = (
    {f"{name}_total" for name in COUNTERS}
    | {f"{name}_{part}" for name in HISTOGRAMS for part in ("bucket", "sum", "count")}
    | {f"{CALLBACKS._name}_total"}
)


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    result: dict[str, Any] = loaded["services"]
    return result


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / "deploy/grafana/tidings-dashboard.json").read_text())
    return loaded


def mounted(service: dict[str, Any]) -> dict[str, Path]:
    """Container path → repository path of every bind mount of a file or folder in the repo."""
    result = {}
    for volume in service.get("volumes", []):
        source, target, *_ = str(volume).split(":")
        if source.startswith("./"):
            result[target] = ROOT / source
    return result


def test_prometheus_scrapes_every_worker_and_the_receiver(services: dict[str, Any]) -> None:
    prometheus = services["prometheus"]
    assert "9090:9090" in prometheus["ports"]
    config_path = mounted(prometheus)["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load(config_path.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}

    worker_env = services["worker"]["environment"]
    address = worker_env["TIDINGS_METRICS__PROMETHEUS_ADDRESS"]
    settings = Settings.model_validate(
        {
            "metrics": {"prometheus_address": address},
            "logging": {"format": worker_env["TIDINGS_LOGGING__FORMAT"]},
        }
    )
    host, port = settings.metrics.prometheus_address.rsplit(":", 1)
    assert host == "0.0.0.0"  # reachable from the prometheus container
    [sd] = jobs["tidings-worker"]["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["port"] == int(port)  # each replica, no published port
    assert "ports" not in services["worker"]

    receiver_port = services["receiver"]["environment"]["TIDINGS_RECEIVER__PORT"]
    [static] = jobs["tidings-receiver"]["static_configs"]
    assert static["targets"] == [f"receiver:{receiver_port}"]
    assert jobs["tidings-receiver"]["metrics_path"] == "/metrics"


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    assert "3000:3000" in grafana["ports"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD")
    mounts = mounted(grafana)
    provisioning = mounts["/etc/grafana/provisioning"]
    [datasource] = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    [provider] = yaml.safe_load((provisioning / "dashboards/tidings.yml").read_text())["providers"]
    folder = provider["options"]["path"]
    dashboards = [target for target in mounts if target.startswith(folder + "/")]
    assert dashboards and all(mounts[d].is_file() for d in dashboards)
    assert mounts[f"{folder}/tidings.json"] == ROOT / "deploy/grafana/tidings-dashboard.json"


def test_dashboard_queries_only_real_metrics_and_shows_all_of_ours(dashboard: dict[str, Any]) -> None:
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    names = {n for e in exprs for n in re.findall(r"\b(?:tidings|temporal)_[a-z_]+\b", e)}
    sdk = {n for n in names if n.startswith("temporal_")}
    ours = names - sdk
    assert ours <= TIDINGS_SERIES, ours - TIDINGS_SERIES
    assert sdk <= set(SDK_METRICS_ON_DASHBOARD), sdk - set(SDK_METRICS_ON_DASHBOARD)
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in ours}
    assert shown == {*COUNTERS, *HISTOGRAMS, CALLBACKS._name}
    for panel in panels:
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"


def test_tracing_is_off_unless_its_endpoint_is_set(services: dict[str, Any]) -> None:
    for name in ("worker", "receiver"):
        env = services[name]["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "${OTEL_EXPORTER_OTLP_ENDPOINT:-}"
        assert "OTEL_TRACES_EXPORTER" not in env
