"""Crash recovery with a private Redis and private `matteflow worker` processes per test (the shared ones
stay untouched).

The broker's visibility timeout stays at production's hour: what brings a dead or hung worker's items back
is the item lease (short here: 4 s, renewed every 1.3 s, checked every second), never a broker redelivery.

Every fault is injected while the victim is frozen (SIGSTOP) and the test has checked that the batch is
really mid-way and, where it matters, that the victim holds an item: the scenario happens on a fast machine
as on a slow one. Nothing asserts how fast recovery is, only that it happens within generous bounds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
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

from .helpers import wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BATCH = 16
RECOVERY_BOUND_S = 150.0  # the product's promise after a kill; a bound, not a speed test


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
        worker_concurrency=1,
        task_time_limit_s=60,
        task_retry_backoff_max_s=1.0,
        broker_visibility_timeout_s=3600.0,  # production's: recovery must not wait for the broker
        item_lease_s=4.0,
        lease_check_interval_s=1.0,
        job_stale_after_s=600.0,  # nor for the stale-job sweep: the lease does it
    )
    stack = Stack(redis, settings, JobClient(settings), tmp_path / "logs")
    try:
        yield stack
    finally:
        for worker in stack.workers:
            if worker.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.proc.pid, signal.SIGCONT)
            worker.kill()
        redis.kill()


def submit_batch(client: JobClient, make_jpeg: Callable) -> str:
    files = [(f"p{i}.jpg", make_jpeg(256, 320, seed=i)) for i in range(BATCH)]
    return client.create_job(files, parse_options())


@contextlib.contextmanager
def frozen(worker: WorkerProcess) -> Iterator[None]:
    """SIGSTOP the worker and its pool for the block (SIGCONT after, unless the block killed it)."""
    os.killpg(worker.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.proc.pid, signal.SIGCONT)


def freeze_mid_batch(stack: Stack, worker: WorkerProcess, job_id: str, holding: bool) -> list[int]:
    """Freeze ``worker`` at a moment when the batch is mid-way (>= 2 done, not all) and, with ``holding``,
    the worker holds at least one running item. Returns the running items it holds; the worker stays frozen
    (SIGSTOP) when this returns: the caller kills it, signals it or lets it go on with SIGCONT."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        job = stack.client.get_job(job_id)
        if job["done"] >= 2:
            os.killpg(worker.proc.pid, signal.SIGSTOP)
            states = stack.client.store.item_states(job_id)
            holders = stack.client.store.holders(job_id)
            mine = sorted(
                i for i, s in states.items() if s == "running" and holders.get(i, "").startswith(f"{worker.name}@")
            )
            done = sum(1 for s in states.values() if s == "done")
            if done < BATCH and (mine or not holding):
                return mine
            os.killpg(worker.proc.pid, signal.SIGCONT)
            if done >= BATCH:
                raise AssertionError("the batch ended before the fault could be injected: make it bigger")
        time.sleep(0.02)
    raise AssertionError(f"never caught {worker.name} holding an item of job {job_id}")


def assert_every_result_exactly_once(client: JobClient, job_id: str, timeout: float = 240) -> dict:
    job = wait_for_job(client, job_id, timeout=timeout)
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
    return job


def test_kill_9_mid_batch_the_lease_brings_the_dead_workers_items_back(stack: Stack, make_jpeg: Callable) -> None:
    victim = stack.start_worker("victim")
    survivor = stack.start_worker("survivor")
    job_id = submit_batch(stack.client, make_jpeg)
    stranded = freeze_mid_batch(stack, victim, job_id, holding=True)

    victim.kill()  # SIGKILL to the worker and its pool: no warm shutdown, no ack, no restart by the test
    killed_at = time.monotonic()

    assert_every_result_exactly_once(stack.client, job_id, timeout=RECOVERY_BOUND_S)
    assert time.monotonic() - killed_at < RECOVERY_BOUND_S
    # The survivor ran the dead worker's items again after their lease expired (the broker would wait 1 h).
    assert [stack.client.store.attempts(job_id, i) for i in stranded] == [2] * len(stranded)
    assert "lease expired" in survivor.log_tail(200_000)
    assert survivor.alive()


def test_a_hung_worker_is_treated_like_a_dead_one(stack: Stack, make_jpeg: Callable) -> None:
    hung = stack.start_worker("hung")
    survivor = stack.start_worker("survivor")
    job_id = submit_batch(stack.client, make_jpeg)

    stranded = freeze_mid_batch(stack, hung, job_id, holding=True)  # alive, holding an item, no progress

    assert_every_result_exactly_once(stack.client, job_id, timeout=RECOVERY_BOUND_S)
    assert [stack.client.store.attempts(job_id, i) for i in stranded] == [2] * len(stranded)
    assert hung.alive() and "lease expired" in survivor.log_tail(200_000)
    # Woken up, the hung worker finishes its stale copy: the item state machine keeps the count exact.
    os.killpg(hung.proc.pid, signal.SIGCONT)
    time.sleep(3)
    job = stack.client.get_job(job_id)
    assert (job["state"], job["done"], job["failed"]) == ("done", BATCH, 0)


def test_redis_restarted_mid_batch_still_completes(stack: Stack, make_jpeg: Callable) -> None:
    survivor = stack.start_worker("survivor")
    job_id = submit_batch(stack.client, make_jpeg)
    freeze_mid_batch(stack, survivor, job_id, holding=False)

    with frozen(survivor):
        stack.redis.kill()  # a crash: only what reached the append-only file survives
        stack.redis.start()

    # Celery 5.7 / kombu 5.7 sometimes exit with "Unrecoverable error: AttributeError('NoneType' object has
    # no attribute 'hostname')" while restoring unacked messages on the reconnect (celery/kombu#970, #582):
    # the worker is supervised in every deployment, so it is here too, and no work may be lost either way.
    restarts = stack.supervise_until_done(job_id, timeout=240)
    assert restarts <= 1
    assert_every_result_exactly_once(stack.client, job_id)


def test_a_warm_shutdown_finishes_running_tasks_and_requeues_the_rest(stack: Stack, make_jpeg: Callable) -> None:
    first = stack.start_worker("first")
    job_id = submit_batch(stack.client, make_jpeg)
    held = freeze_mid_batch(stack, first, job_id, holding=True)

    first.proc.send_signal(signal.SIGTERM)  # Celery's warm shutdown, delivered as the worker wakes up
    os.killpg(first.proc.pid, signal.SIGCONT)
    assert first.proc.wait(60) == 0
    first.stop()

    states = stack.client.store.item_states(job_id)
    assert [states[i] for i in held] == ["done"] * len(held)  # what was running was finished, not abandoned
    assert "running" not in states.values()
    assert list(states.values()).count("done") < BATCH
    stack.start_worker("second")

    assert_every_result_exactly_once(stack.client, job_id)
    # Nothing ran twice: finished tasks were acked, unstarted ones went back to the queue untouched.
    assert {stack.client.store.attempts(job_id, i) for i in range(BATCH)} == {1}
