"""Pool processes forked while the worker's main-process threads work still run their first task at once.

The defect this guards against (workers/README.md, "Pool processes forked beside threads"): a prefork pool
process forked while a thread of the main process held a lock (the heartbeat's first Redis connection
importing ``encodings.idna``) hung on its first task until the hard time limit killed it. Here a real worker
recycles its pool processes after every task while /metrics is scraped, and ``slow_thread_imports`` (put on
the worker's PYTHONPATH) stretches every import done by a non-main thread to a second, so a fork that does
not wait for the threads lands inside one. Everything else is real: Redis, the worker, the tasks.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from matteflow.core.options import parse_options
from matteflow.workers.client import JobClient
from matteflow.workers.procs import WorkerProcess

from .helpers import wait_for_job

pytestmark = pytest.mark.integration

SLOW_THREAD_IMPORTS = Path(__file__).resolve().parent / "slow_thread_imports"
TIME_LIMIT_S = 120  # a hung pool process holds its item this long; a healthy run needs a fraction of it


def test_recycled_pool_processes_never_hang_on_their_first_task(
    redis_server: str, make_test_settings: Callable, make_jpeg: Callable, tmp_path: Path
) -> None:
    own_db = redis_server.rsplit("/", 1)[0] + "/4"  # apart from the session worker's jobs and reconciler
    settings = make_test_settings(
        own_db,
        tmp_path / "storage",
        worker_max_tasks_per_child=1,  # a fresh fork for every task
        task_time_limit_s=TIME_LIMIT_S,
        broker_visibility_timeout_s=2 * TIME_LIMIT_S,
        job_stale_after_s=600.0,  # no re-send by the sweep: a hung item must show as late
        log_level="DEBUG",  # Celery logs its boot order at debug level
    )
    client = JobClient(settings)
    items = 8
    # Enqueued before the worker starts, so the first two forks get a task the moment they exist.
    job_id = client.create_job([(f"{i}.jpg", make_jpeg(48, 64, seed=i)) for i in range(items)], parse_options())
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SLOW_THREAD_IMPORTS), os.environ.get("PYTHONPATH")])),
        "MATTEFLOW_TEST_SLOW_THREAD_IMPORTS_S": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
    }
    log_path = tmp_path / "worker.log"
    worker = WorkerProcess(settings, name="forks", log_path=log_path, env=env).start()
    scraping = threading.Event()
    scraped: list[int] = []

    def scrape() -> None:  # the metrics thread works (and takes its locks) while pool processes are forked
        url = f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"
        while not scraping.is_set():
            with contextlib.suppress(requests.RequestException):  # not listening yet
                scraped.append(requests.get(url, timeout=10).status_code)
            time.sleep(0.05)

    scraper = threading.Thread(target=scrape, daemon=True)
    scraper.start()
    try:
        # A hang costs TIME_LIMIT_S; allow half of it (a loaded 2-core machine runs this in about 30 s).
        job = wait_for_job(client, job_id, timeout=TIME_LIMIT_S / 2)
    finally:
        scraping.set()
        scraper.join(15)
        worker.stop()

    log = log_path.read_text(errors="replace")
    assert (job["state"], job["done"]) == ("done", items), log[-5000:]
    assert "Hard time limit" not in log
    assert 200 in scraped
    forks = len(set(re.findall(r"ForkPoolWorker-(\d+)", log)))
    assert forks >= items  # one pool process per task: each of them ran its first task
    boot_order = re.search(r"Worker: New boot order: \{([^}]*)\}", log)
    assert boot_order is not None
    order = [step.strip() for step in boot_order.group(1).split(",")]
    for step in ("ReconcilerStep", "MetricsServerStep", "HeartbeatStep"):
        assert order.index(step) > order.index("Pool"), order  # threads start once the pool has forked
