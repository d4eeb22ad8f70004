"""The queue length on the web's /metrics rises while a batch waits and no worker runs (the signal KEDA
and the alerts use), end to end through the real app and a real Redis."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from matteflow.settings import Settings


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(response.get_data(as_text=True))
        for s in f.samples
    }


def test_queue_length_rises_as_batches_are_queued_without_workers(
    redis_url: str, tmp_path: Path, make_jpeg: Callable[..., bytes]
) -> None:
    try:
        from matteflow.web import create_app
    except ImportError as exc:
        pytest.skip(f"matteflow.web.create_app not importable yet: {exc}")
    settings = Settings(redis_url=redis_url, storage_dir=tmp_path, worker_queue="matteflow")
    client = create_app(settings).test_client()
    queue = ("matteflow_queue_length", (("queue", "matteflow"),))
    assert scrape(client)[queue] == 0

    expected = 0
    for batch, count in enumerate((3, 5)):
        images = [make_jpeg(seed=batch * 10 + i) for i in range(count)]
        files = [(io.BytesIO(data), f"p{i}.jpg") for i, data in enumerate(images)]
        before = scrape(client)
        response = client.post("/api/v1/jobs", data={"files": files}, content_type="multipart/form-data")
        assert response.status_code == 202, response.get_data(as_text=True)
        expected += math.ceil(count / settings.task_chunk_size)
        after = scrape(client)
        assert after[queue] == expected  # nothing consumes: every task is still waiting
        grew = after[("matteflow_upload_bytes_total", ())] - before[("matteflow_upload_bytes_total", ())]
        assert grew == sum(len(data) for data in images)
    assert scrape(client)[("matteflow_redis_up", ())] == 1
