"""`matteflow up` end to end: its queue metrics (served by the supervisor, as `matteflow exporter` does in a
cluster) show the queue rise as a batch is queued and fall as the worker drains it, and the worker's own
port shows what it did (counted across its pool processes)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BATCH = 24


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    text = requests.get(url, timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def wait_for(check: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; service log:\n{log.read_text()[-3000:]}")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[str, str, str, Path]]:
    """A running `matteflow up` (embedded Redis, one CPU worker with one pool process, the web app):
    (web URL, worker metrics URL, queue metrics URL, log)."""
    web_port, metrics_port, queue_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MATTEFLOW_", "PROMETHEUS_"))}
    env.update(
        MATTEFLOW_STORAGE_DIR=str(tmp_path / "var"),
        MATTEFLOW_MODEL="unet-random",
        MATTEFLOW_DEVICE="cpu",
        MATTEFLOW_WORKER_CONCURRENCY="1",
        MATTEFLOW_WORKER_METRICS_PORT=str(metrics_port),
        MATTEFLOW_QUEUE_METRICS_PORT=str(queue_port),
        MATTEFLOW_TASK_TIME_LIMIT_S="60",
        MATTEFLOW_BROKER_VISIBILITY_TIMEOUT_S="300",
    )
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "matteflow", "up", "--port", str(web_port)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    web = f"http://127.0.0.1:{web_port}"
    worker = f"http://127.0.0.1:{metrics_port}/metrics"
    queues = f"http://127.0.0.1:{queue_port}/metrics"
    try:
        wait_for(lambda: requests.get(f"{web}/healthz", timeout=2).ok, 90, "the web app", log)
        wait_for(lambda: requests.get(worker, timeout=2).ok, 90, "the worker's metrics port", log)
        wait_for(lambda: requests.get(queues, timeout=2).ok, 30, "the queue metrics port", log)
        yield web, worker, queues, log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_queue_length_rises_with_a_batch_and_falls_as_the_worker_drains_it(
    service: tuple[str, str, str, Path], make_jpeg: Callable[..., bytes]
) -> None:
    web, worker, queues, log = service
    queue = ("matteflow_queue_length", (("queue", "matteflow.batch"),))
    assert scrape(queues)[queue] == 0
    files = [("files", (f"p{i}.jpg", make_jpeg(seed=i), "image/jpeg")) for i in range(BATCH)]
    response = requests.post(f"{web}/api/v1/jobs", files=files, timeout=60)
    assert response.status_code == 202, response.text
    # One pool process with prefetch 1 holds at most one task (two while it finishes one): every other item
    # not yet done waits in the queue. Items only ever get done, so the count read after the scrape bounds
    # the waiting ones from below whatever the machine's speed.
    waiting = scrape(queues)
    done = requests.get(web + response.json()["status_url"], timeout=5).json()["done"]
    assert waiting[queue] >= BATCH - done - 2
    assert ("matteflow_tasks_in_flight", ()) in waiting  # what the worker holds is reported beside it
    wait_for(lambda: scrape(queues)[queue] == 0, 180, "the worker to drain the queue", log)
    status = response.json()["status_url"]
    wait_for(lambda: requests.get(web + status, timeout=5).json()["state"] == "done", 60, "the job", log)

    counted = scrape(worker)
    assert counted[("matteflow_items_total", (("state", "done"),))] == BATCH
    assert counted[("matteflow_stage_seconds_count", (("stage", "inference"),))] == BATCH
    assert counted[("matteflow_worker_up", (("queue", "matteflow"),))] == 1
    assert counted[("matteflow_worker_rss_bytes", ())] > 50e6  # main + pool process
