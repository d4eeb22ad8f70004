"""Crash recovery with a private Redis and private workers per test (the shared ones stay untouched).

The broker's visibility timeout is short here (25 s) so that a killed worker's unacknowledged tasks come
back within the test; production keeps an hour.
"""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from matteflow.core.options import parse_options
from matteflow.settings import Settings
from matteflow.workers.client import JobClient
from matteflow.workers.procs import EmbeddedRedis, WorkerProcess
from matteflow.workers.storage import JobFiles

from .helpers import wait_for_job, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BATCH = 24


@dataclass
class Stack:
    redis: EmbeddedRedis
    settings: Settings
    client: JobClient
    logs: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    def supervise_until_done(self, job_id: str, timeout: float) -> int:
        """Wait for the job like `matteflow up` (or Kubernetes) would run the worker: a worker that exits is
        started again. Returns how many restarts that took."""
        restarts = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.client.get_job(job_id)
            if job is not None and job["state"] in ("done", "failed"):
                return restarts
            if not any(worker.alive() for worker in self.workers):
                restarts += 1
                self.start_worker(f"restarted{restarts}")
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} not finished after {timeout:g}s: {self.client.get_job(job_id)}")

    def start_worker(self, name: str) -> WorkerProcess:
        worker = WorkerProcess(self.settings, name=name, log_path=self.logs / f"{name}.log").start()
        self.workers.append(worker)
        worker.wait_ready(self.client.celery, timeout=90)
        return worker


@pytest.fixture
def stack(tmp_path: Path, make_test_settings: Callable[..., Settings]) -> Iterator[Stack]:
    redis = EmbeddedRedis(tmp_path / "redis").start()
    settings = make_test_settings(
        redis.url,
        tmp_path / "storage",
        task_time_limit_s=20,
        task_retry_backoff_max_s=1.0,
        broker_visibility_timeout_s=25.0,
        job_stale_after_s=40.0,
    )
    stack = Stack(redis, settings, JobClient(settings), tmp_path / "logs")
    try:
        yield stack
    finally:
        for worker in stack.workers:
            worker.kill()
        redis.kill()


def submit_batch(client: JobClient, make_jpeg: Callable) -> str:
    # Big enough that a 2-process CPU worker needs several seconds, so the crash lands mid-batch.
    files = [(f"p{i}.jpg", make_jpeg(384, 512, seed=i)) for i in range(BATCH)]
    return client.create_job(files, parse_options())


def assert_every_result_exactly_once(client: JobClient, job_id: str) -> None:
    job = wait_for_job(client, job_id, timeout=240)
    assert (job["state"], job["done"], job["failed"], job["total"]) == ("done", BATCH, 0, BATCH)
    out_dir = JobFiles(client.settings.jobs_dir, job_id).out_dir
    assert sorted(p.name for p in out_dir.iterdir() if not p.name.startswith(".")) == sorted(
        f"{i}.png" for i in range(BATCH)
    )
    path, _ = client.results_zip(job_id)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("manifest.json"))
    assert sorted(names) == sorted([f"p{i}.png" for i in range(BATCH)] + ["manifest.json"])
    assert [e["state"] for e in manifest["items"]] == ["done"] * BATCH
    assert (manifest["done"], manifest["failed"]) == (BATCH, 0)


def done_count(client: JobClient, job_id: str) -> int:
    return client.get_job(job_id)["done"]


def test_kill_9_of_a_worker_mid_batch_yields_every_result_once(stack: Stack, make_jpeg: Callable) -> None:
    first = stack.start_worker("first")
    job_id = submit_batch(stack.client, make_jpeg)
    wait_until(lambda: done_count(stack.client, job_id) >= 3, 120, "three items done", interval=0.05)

    first.kill()  # SIGKILL to the worker and its pool: no warm shutdown, no acks
    assert done_count(stack.client, job_id) < BATCH, "the kill came after the batch: make the batch bigger"
    stack.start_worker("second")

    assert_every_result_exactly_once(stack.client, job_id)
    # The tasks the dead worker held came back (visibility timeout) and ran again.
    attempts = [stack.client.store.attempts(job_id, i) for i in range(BATCH)]
    assert max(attempts) >= 2, attempts


def test_redis_restarted_mid_batch_still_completes(stack: Stack, make_jpeg: Callable) -> None:
    stack.start_worker("survivor")
    job_id = submit_batch(stack.client, make_jpeg)
    wait_until(lambda: done_count(stack.client, job_id) >= 3, 120, "three items done", interval=0.05)

    stack.redis.kill()  # a crash: only what reached the append-only file survives
    stack.redis.start()

    assert done_count(stack.client, job_id) < BATCH, "the restart came after the batch: make the batch bigger"
    # Celery 5.7 / kombu 5.7 sometimes exit with "Unrecoverable error: AttributeError('NoneType' object has
    # no attribute 'hostname')" while restoring unacked messages on the reconnect (celery/kombu#970, #582):
    # the worker is supervised in every deployment, so it is here too, and no work may be lost either way.
    restarts = stack.supervise_until_done(job_id, timeout=240)
    assert restarts <= 1
    assert_every_result_exactly_once(stack.client, job_id)


def test_a_warm_shutdown_finishes_running_tasks_and_requeues_the_rest(stack: Stack, make_jpeg: Callable) -> None:
    first = stack.start_worker("first")
    job_id = submit_batch(stack.client, make_jpeg)
    wait_until(lambda: done_count(stack.client, job_id) >= 3, 120, "three items done", interval=0.05)

    assert first.stop(grace=60) == 0  # SIGTERM: Celery's warm shutdown
    stopped_at = done_count(stack.client, job_id)
    assert stopped_at < BATCH, "the shutdown came after the batch: make the batch bigger"
    running = [i for i, state in stack.client.store.item_states(job_id).items() if state == "running"]
    assert running == []  # what was running when the signal came was finished, not abandoned
    stack.start_worker("second")

    assert_every_result_exactly_once(stack.client, job_id)
    # Nothing ran twice: finished tasks were acked, unstarted ones went back to the queue untouched.
    assert {stack.client.store.attempts(job_id, i) for i in range(BATCH)} == {1}
