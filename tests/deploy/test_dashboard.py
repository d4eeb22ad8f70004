"""The Grafana dashboard and the alert rules only query metrics the code really exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from matteflow import metrics
from matteflow.settings import Settings

from .conftest import DEPLOY
from .exposition import SHARED, sample_names, touch_labelled_metrics, worker_exposition

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "matteflow-overview.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
METRIC_NAME = re.compile(r"\bmatteflow_[a-z0-9_]+\b")


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_queries() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def alert_queries() -> list[str]:
    return [r["expr"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def used_metrics(queries: list[str]) -> set[str]:
    return {name for q in queries for name in METRIC_NAME.findall(q)}


@pytest.fixture
def exported(redis_client, tmp_path: Path) -> dict[str, set[str]]:
    """Sample names of the web registry, of a worker (with NVML answering) and of the queue exporter (with a
    real Redis)."""
    touch_labelled_metrics()
    web = generate_latest(metrics.web_registry(Settings())).decode()
    queues = generate_latest(metrics.queue_registry(Settings(storage_dir=tmp_path), redis_client=redis_client)).decode()
    return {
        "web": sample_names(web),
        "worker": sample_names(worker_exposition(Settings())),
        "exporter": sample_names(queues),
    }


def test_dashboard_covers_the_operational_questions() -> None:
    used = used_metrics(dashboard_queries())
    for needed in (
        "matteflow_queue_length",  # queue length
        "matteflow_items_total",  # throughput and failures
        "matteflow_item_seconds_bucket",  # latency percentiles
        "matteflow_stage_seconds_bucket",
        "matteflow_gpu_memory_used_bytes",  # GPU memory
        "matteflow_worker_up",  # worker count
    ):
        assert needed in used, needed
    assert any("histogram_quantile(0.95" in q for q in dashboard_queries())


def test_every_dashboard_and_alert_metric_is_exported(exported) -> None:
    everything = set().union(*exported.values())
    for name in sorted(used_metrics(dashboard_queries() + alert_queries())):
        assert name in everything, f"{name} is queried but exported by no process"


def test_each_metric_has_one_source(exported) -> None:
    """A gauge exported by several processes is summed by the queries: the queue length from every web pod
    once fired "600 waiting" for a backlog of 300. Each MatteFlow metric comes from one kind of process."""
    owners: dict[str, list[str]] = {}
    for process, names in exported.items():
        for name in names:
            if name.startswith("matteflow_") and not name.endswith("_created"):
                owners.setdefault(name, []).append(process)
    shared = {name: where for name, where in owners.items() if len(where) > 1}
    assert set(shared) <= SHARED, shared
    assert owners["matteflow_queue_length"] == ["exporter"]
    assert owners["matteflow_tasks_in_flight"] == ["exporter"]
    assert owners["matteflow_worker_up"] == ["worker"]


def test_dashboard_is_well_formed() -> None:
    board = dashboard()
    assert board["uid"] and board["title"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    # The datasource is a dashboard variable: compose's provisioned one and kube-prometheus-stack's (uid
    # "prometheus") both work, where a hard-coded uid showed "datasource not found" in the chart's Grafana.
    (variable,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    assert yaml.safe_load(DATASOURCES.read_text())["datasources"][0]["type"] == "prometheus"
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${" + variable["name"] + "}", panel["title"]
        assert all(t["datasource"]["uid"] == panel["datasource"]["uid"] for t in panel["targets"] if "datasource" in t)
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every panel query (as recording rules: promtool has no bare-PromQL check)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool missing: `apt-get install prometheus` (make test-system-deps does it)")
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:query{i}", "expr": q} for i, q in enumerate(dashboard_queries())],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# What the web process itself produces (HTTP handling, uploads); the worker metrics in the dashboard come
# from the workers' own ports, the queues from the exporter.
WEB_PRODUCED = {
    "matteflow_http_requests_total",
    "matteflow_http_request_seconds_bucket",
    "matteflow_upload_bytes_total",
}


def test_running_web_apps_serve_their_metrics_and_no_queue_gauges(redis_client, redis_url, tmp_path: Path) -> None:
    """Two real web apps on a real Redis holding a backlog: neither reports the queue (the exporter does, once),
    so a sum over web pods can no longer multiply it."""
    from matteflow.web import create_app
    from matteflow.workers.queues import consumed_queues

    interactive, batch, bulk = consumed_queues("matteflow")
    redis_client.rpush(batch, *[b"m"] * 300)
    settings = Settings(redis_url=redis_url, storage_dir=tmp_path)
    for _ in range(2):
        client = create_app(settings).test_client()
        assert client.get("/healthz").status_code == 200
        response = client.get("/metrics")
        assert response.status_code == 200
        served = sample_names(response.get_data(as_text=True))
        assert served >= WEB_PRODUCED, WEB_PRODUCED - served
        assert not {"matteflow_queue_length", "matteflow_tasks_in_flight", "matteflow_redis_up"} & served
    assert "matteflow_queue_length" in used_metrics(dashboard_queries())
    text = generate_latest(metrics.queue_registry(settings, redis_client=redis_client)).decode()
    queue = {
        s.labels["queue"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "matteflow_queue_length"
    }
    assert queue == {interactive: 0.0, batch: 300.0, bulk: 0.0}
