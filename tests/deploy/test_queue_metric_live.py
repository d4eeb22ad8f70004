"""What the autoscaler counts, live: a real Redis, the real job client and a real Celery worker.

Batch items used to travel with kombu priority 6, i.e. in a list KEDA never read: a 12-image batch left the
counted list at 0. Here the lists KEDA reads are taken from the rendered prod ScaledObject, filled by the
real client, and watched while a real worker drains them: they (and the exporter's gauges, which add the
work in flight) rise with the batch and fall to 0, and the worker serves interactive work first.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from matteflow import metrics
from matteflow.core.options import parse_options
from matteflow.settings import Settings
from matteflow.workers.app import make_celery
from matteflow.workers.client import JobClient
from matteflow.workers.procs import WorkerProcess
from matteflow.workers.queues import UNACKED_KEY, consumed_queues

from .test_k8s import one, settings_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BATCH = 12
SINGLES = 3
_OWN_DATABASE = 12  # no other test's worker reads it (the session worker uses 0, tests/deploy 13)


def keda_redis_lists() -> list[str]:
    scaled = one("prod", "ScaledObject", "matteflow-worker")
    return [t["metadata"]["listName"] for t in scaled["spec"]["triggers"] if t["type"] == "redis"]


def gauges(registry: CollectorRegistry) -> tuple[float, float]:
    """(tasks waiting in all queues, tasks in flight) as the exporter reports them."""
    waiting = sum(s.value for f in registry.collect() for s in f.samples if s.name == "matteflow_queue_length")
    return waiting, registry.get_sample_value("matteflow_tasks_in_flight") or 0.0


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_autoscaler_counts_a_queued_batch_and_a_real_worker_drains_it_interactive_first(
    redis_server: str, tmp_path: Path, make_jpeg: Callable[..., bytes], make_test_settings: Callable[..., Settings]
) -> None:
    url = f"{redis_server.rsplit('/', 1)[0]}/{_OWN_DATABASE}"
    raw = redis.Redis.from_url(url)
    raw.flushdb()
    # The queue base name of the prod overlay, so the lists are exactly the ones its triggers name.
    base = settings_of("prod")["MATTEFLOW_WORKER_QUEUE"]
    settings = make_test_settings(url, tmp_path / "storage", worker_queue=base, worker_concurrency=1)
    lists = keda_redis_lists()
    assert sorted(lists) == sorted(consumed_queues(base)), "a queue without a KEDA trigger is work KEDA never sees"

    client = JobClient(settings, raw)
    options = parse_options({})
    batch_id = client.create_job([(f"b{i}.jpg", make_jpeg(seed=i)) for i in range(BATCH)], options, kind="batch")
    single_ids = [
        client.create_job([("s.jpg", make_jpeg(seed=50 + i))], options, kind="single") for i in range(SINGLES)
    ]

    # No worker yet: every task waits in a list KEDA reads, and the exporter says the same.
    assert sum(raw.llen(name) for name in lists) == BATCH + SINGLES
    registry = metrics.queue_registry(settings, redis_client=raw)
    assert gauges(registry) == (BATCH + SINGLES, 0)

    worker = WorkerProcess(
        settings,
        name="keda-live",
        log_path=tmp_path / "worker.log",
        env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus")},
    ).start()
    try:
        worker.wait_ready(make_celery(settings), timeout=120)
        probes = f"http://127.0.0.1:{settings.worker_metrics_port}"
        assert status(f"{probes}/livez") == 200 and status(f"{probes}/readyz") == 200, worker.log_tail()

        most_in_flight = 0.0
        batch_done_when_singles_ended: int | None = None
        deadline = time.monotonic() + 240
        while True:
            waiting, in_flight = gauges(registry)
            most_in_flight = max(most_in_flight, in_flight)
            # Waiting + in flight never exceeds what was queued (+ one finalisation per job): no double count.
            assert waiting + in_flight <= BATCH + 2 * SINGLES + 1
            states = [client.store.item_state(job_id, 0) for job_id in single_ids]
            batch_done = int(client.store.job_fields(batch_id)["done"])
            if batch_done_when_singles_ended is None and all(s == "done" for s in states):
                batch_done_when_singles_ended = batch_done
            if client.store.job_fields(batch_id)["state"] == "done" and (waiting, in_flight) == (0, 0):
                break
            assert time.monotonic() < deadline, f"not drained: {waiting=} {in_flight=}\n{worker.log_tail()}"
            time.sleep(0.05)
        with urllib.request.urlopen(f"{probes}/metrics", timeout=5) as response:
            worker_metrics = response.read().decode()
    finally:
        worker.stop(grace=30)

    assert most_in_flight >= 1, "the work a worker holds must be counted while it runs"
    # The worker measured each task's wait in its queue (the send-time header travelled through Celery).
    waits = {
        s.labels["queue"]: s.value
        for f in text_string_to_metric_families(worker_metrics)
        for s in f.samples
        if s.name == "matteflow_queue_wait_seconds_count"
    }
    interactive, batch, _bulk = consumed_queues(base)
    assert waits.get(batch) == BATCH and waits.get(interactive, 0) >= SINGLES, waits
    runs = {
        (s.labels["task"], s.labels["state"]): s.value
        for f in text_string_to_metric_families(worker_metrics)
        for s in f.samples
        if s.name == "matteflow_tasks_total"
    }
    assert runs.get(("matteflow.process_images", "success")) == BATCH + SINGLES, runs
    assert runs.get(("matteflow.finalize_batch", "success"), 0) >= 1 + SINGLES, runs
    # The worker took the interactive lane first: the three one-image requests queued after the batch were
    # done before more than one batch item (the one it may have started first).
    assert batch_done_when_singles_ended is not None and batch_done_when_singles_ended <= 1
    assert raw.hlen(UNACKED_KEY) == 0
    raw.close()
