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
from .exposition import WEB_ONLY, WORKER_ONLY, sample_names, touch_labelled_metrics, worker_exposition

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
def exported(redis_client) -> dict[str, set[str]]:
    """Sample names of the web registry (with a real Redis) and of a worker (with NVML answering)."""
    touch_labelled_metrics()
    web = generate_latest(metrics.web_registry(Settings(), redis_client=redis_client)).decode()
    return {"web": sample_names(web), "worker": sample_names(worker_exposition(Settings()))}


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
    for name in sorted(used_metrics(dashboard_queries() + alert_queries())):
        where = {"worker"} if name in WORKER_ONLY else {"web"} if name in WEB_ONLY else {"web", "worker"}
        for process in where:
            assert name in exported[process], f"{name} is queried but not exported by the {process}"


def test_worker_only_metrics_are_not_claimed_by_the_web(exported) -> None:
    # Keeps WORKER_ONLY/WEB_ONLY honest: if a metric moves, the lists above must move with it.
    assert not WORKER_ONLY & exported["web"]
    assert not WEB_ONLY & exported["worker"]
    assert exported["worker"] >= WORKER_ONLY and exported["web"] >= WEB_ONLY


def test_dashboard_is_well_formed() -> None:
    board = dashboard()
    assert board["uid"] and board["title"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    datasource_uid = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]["uid"]
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == datasource_uid, panel["title"]
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


# What the web process itself produces (HTTP handling, uploads, the queue read from Redis); the worker
# metrics in the dashboard come from the workers' own ports.
WEB_PRODUCED = {
    "matteflow_http_requests_total",
    "matteflow_http_request_seconds_bucket",
    "matteflow_upload_bytes_total",
} | WEB_ONLY


def test_running_web_app_serves_the_dashboards_web_metrics(redis_client, redis_url, tmp_path: Path) -> None:
    try:
        from matteflow.web import create_app
    except ImportError as exc:  # the web app needs workers.client (pipeline engineer) to import
        pytest.skip(f"matteflow.web.create_app not importable yet: {exc}")
    redis_client.rpush("matteflow", b"a", b"b", b"c")
    app = create_app(Settings(redis_url=redis_url, storage_dir=tmp_path))
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    response = client.get("/metrics")
    assert response.status_code == 200
    served = sample_names(response.get_data(as_text=True))
    assert served >= WEB_PRODUCED, WEB_PRODUCED - served
    assert "matteflow_queue_length" in used_metrics(dashboard_queries())
    queue = {
        s.labels["queue"]: s.value
        for f in text_string_to_metric_families(response.get_data(as_text=True))
        for s in f.samples
        if s.name == "matteflow_queue_length"
    }
    assert queue == {"matteflow": 3.0}
