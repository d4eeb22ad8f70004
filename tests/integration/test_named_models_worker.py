"""Named models through a real worker: a mixed batch (auto) on the shipped models, model and confidence per
item in the job JSON and the ZIP's manifest."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from matteflow.core.options import parse_options
from matteflow.workers.client import JobClient
from matteflow.workers.procs import WorkerProcess

from .helpers import wait_for_job

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data"


def test_a_mixed_batch_on_the_shipped_models_reports_the_model_per_item(
    redis_server: str, make_test_settings: Callable, tmp_path: Path
) -> None:
    own_db = redis_server.rsplit("/", 1)[0] + "/3"  # apart from the session worker's jobs and reconciler
    settings = make_test_settings(own_db, tmp_path / "storage", model="default", general_model="general")
    client = JobClient(settings)
    person = (DATA / "people" / "000000522418.jpg").read_bytes()
    thing = (DATA / "objects" / "flower.jpg").read_bytes()
    uploads = [("person.jpg", person), ("flower.jpg", thing), ("broken.png", b"not an image"), ("again.jpg", person)]
    prometheus = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus")}  # the pool's metrics, aggregated
    worker = WorkerProcess(settings, name="named-models", log_path=tmp_path / "worker.log", env=prometheus).start()
    try:
        worker.wait_ready(client.celery, timeout=90)
        auto_job = client.create_job(uploads, parse_options())
        shop_job = client.create_job(uploads[:2], parse_options(preset="ecommerce", model="general"))
        auto = wait_for_job(client, auto_job, timeout=180)
        shop = wait_for_job(client, shop_job, timeout=180)
        auto_zip = client.results_zip(auto_job)
        scraped = requests.get(f"http://127.0.0.1:{settings.worker_metrics_port}/metrics", timeout=10).text
    finally:
        worker.stop()

    assert [item["model"] for item in auto["items"]] == ["ensemble", "general", None, "ensemble"]
    assert [item["model"] for item in shop["items"]] == ["general", "general"]
    for item in auto["items"]:
        if item["state"] == "done":
            assert 0.0 <= item["confidence"] <= 1.0
        else:
            assert item["confidence"] is None
    assert auto_zip is not None
    with zipfile.ZipFile(io.BytesIO(auto_zip[0].read_bytes())) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert [entry["model"] for entry in manifest["items"]] == ["ensemble", "general", None, "ensemble"]
    assert manifest["items"][1]["confidence"] == auto["items"][1]["confidence"]
    assert manifest["options"]["model"] == "auto"
    # The confidence histogram, by model, no job ids: 2 combined results (auto), 1 + 2 general (auto, ecommerce).
    counts = {
        family.name: {s.labels.get("model"): s.value for s in family.samples if s.name.endswith("_count")}
        for family in text_string_to_metric_families(scraped)
        if family.name == "matteflow_result_confidence"
    }
    assert counts == {"matteflow_result_confidence": {"ensemble": 2.0, "general": 3.0}}
    assert 'matteflow_result_confidence_bucket{le="0.5",model="general"}' in scraped
    # Each model was loaded once by the pool process that ran it, never per image.
    log = worker.log_tail(50000)
    assert log.count("loaded model general") <= settings.worker_concurrency
    assert log.count("loaded model people") <= settings.worker_concurrency
