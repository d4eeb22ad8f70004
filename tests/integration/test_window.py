"""Big batches reach the queue a window at a time (workers/window.py): claims, refills, the reconciler's
top-up and the exporter's count against a real Redis, and two big batches taking turns on a real worker."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from matteflow import metrics
from matteflow.core.options import parse_options
from matteflow.settings import Settings
from matteflow.workers.app import make_celery
from matteflow.workers.client import JobClient
from matteflow.workers.jobstore import JobStore, NewItem, make_redis, unreleased_items
from matteflow.workers.procs import WorkerProcess
from matteflow.workers.queues import FINALIZE_TASK, PROCESS_TASK, queue_name, waiting_items
from matteflow.workers.reconcile import reconcile_once
from matteflow.workers.window import release_tasks, window_items

from .helpers import wait_for_job

pytestmark = pytest.mark.integration


@pytest.fixture
def own_settings(redis_server: str, make_test_settings: Callable, tmp_path: Path) -> Settings:
    """A Redis database no worker reads: nothing here is sent or swept behind the test's back. Batches of 4
    images or more are bulk, with a window of 2 tasks."""
    own_db = redis_server.rsplit("/", 1)[0] + "/6"
    return make_test_settings(own_db, tmp_path / "storage", bulk_batch_from=4, bulk_window=2)


@pytest.fixture
def store(own_settings: Settings) -> Iterator[JobStore]:
    client = make_redis(own_settings)
    client.flushdb()
    yield JobStore(client)
    client.flushdb()


def new_job(store: JobStore, count: int, bad: tuple[int, ...] = ()) -> str:
    job_id = f"win-{time.time_ns()}"
    items = [
        NewItem(f"{i}.jpg", f"{i}_{i}.jpg", *(("cut", "InvalidImageError") if i in bad else ())) for i in range(count)
    ]
    store.create(job_id, items, parse_options().to_dict())
    return job_id


def test_release_hands_out_each_item_once_within_the_window(store: JobStore) -> None:
    job_id = new_job(store, 10, bad=(2,))

    assert store.release(job_id, window=3) == [0, 1, 3]  # item 2 failed at intake: passed over
    assert store.release(job_id, window=3) == []  # the window is full
    assert store.end_item(job_id, 0, "done") > 0
    assert store.end_item(job_id, 0, "done") < 0  # a duplicate end frees no second slot
    assert store.release(job_id, window=3) == [4]
    for index in (1, 3):
        store.end_item(job_id, index, "failed", "bad")
    assert store.release(job_id, window=3, step=2) == [5, 6]  # whole tasks of 2 only: 2 of 3 slots
    assert store.release(job_id, window=3, step=2) == []
    assert store.release(job_id) == [7, 8, 9]  # no window: the rest at once
    assert store.release(job_id) == []
    assert store.job_fields(job_id)["inflight"] == "6"  # 4, 5, 6, 7, 8, 9 released and not ended


def test_a_job_recorded_before_windows_has_everything_released(store: JobStore) -> None:
    job_id = new_job(store, 3)
    store.redis.hdel(f"mf:job:{{{job_id}}}", "released", "inflight")  # as an older release recorded it

    assert store.release(job_id, window=1) == []
    assert store.end_item(job_id, 0, "done") == 2
    assert "inflight" not in store.job_fields(job_id)
    assert unreleased_items(store.redis) == 0


def test_only_bulk_jobs_have_a_window(own_settings: Settings) -> None:
    assert window_items(own_settings, "batch", 4) == 2  # 2 tasks of 1 image
    assert window_items(own_settings, "batch", 3) == 0  # the batch lane: sent whole
    assert window_items(own_settings, "single", 1) == 0
    assert window_items(own_settings.replace(bulk_window=0), "batch", 400) == 0  # off
    assert window_items(own_settings.replace(task_chunk_size=16), "batch", 400) == 32  # tasks, not images


def test_the_reconciler_tops_up_a_window_whose_refill_was_lost_and_resends_only_released_items(
    store: JobStore, own_settings: Settings
) -> None:
    sent: list[list[object]] = []

    def send(name: str, args: list[object], job: Mapping[str, str]) -> None:
        sent.append(args)

    job_id = new_job(store, 8)
    fields = store.job_fields(job_id)
    assert release_tasks(store, own_settings, job_id, fields) == [[0], [1]]  # sent by the intake
    assert unreleased_items(store.redis) == 6
    collector = metrics.QueueLengthCollector(store.redis, ["matteflow.bulk"], task_size=4)
    assert collector.read().held_back == 2  # in tasks of 4 images, rounded up

    assert reconcile_once(own_settings, store, send).released == {}  # the window is full: nothing to add
    for index in (0, 1):  # both end, and the worker dies before sending the next ones
        store.end_item(job_id, index, "done")
    report = reconcile_once(own_settings, store, send)
    assert report.released == {job_id: [2, 3]} and sent == [[job_id, [2]], [job_id, [3]]]

    # Their messages are lost too: once the job is stale, the sweep sends again what was released, not the
    # images still waiting for their turn.
    sent.clear()
    store.touch(job_id, when=time.time() - 3600)
    report = reconcile_once(own_settings, store, send)
    assert report.resent == {job_id: [2, 3]} and report.released == {}
    assert sent == [[job_id, [2]], [job_id, [3]]]
    assert unreleased_items(store.redis) == 4


def test_two_big_batches_take_turns_on_a_real_worker(
    redis_server: str, make_test_settings: Callable, make_jpeg: Callable, tmp_path: Path
) -> None:
    """A 6-photo bulk batch sent just after a 16-photo one ends while the big one is still running (with one
    queue for both, first come first served, it would end last), and both end whole, every image once."""
    own_db = redis_server.rsplit("/", 1)[0] + "/5"  # apart from the session worker's queues and reconciler
    settings = make_test_settings(own_db, tmp_path / "storage", bulk_batch_from=4, bulk_window=2, worker_concurrency=1)
    client = JobClient(settings)
    client.redis.flushdb()
    worker = WorkerProcess(settings, name="window", log_path=tmp_path / "window.log").start()
    try:
        worker.wait_ready(client.celery, timeout=90)
        first = client.create_job([(f"a{i}.jpg", make_jpeg(320, 240, seed=i)) for i in range(16)], parse_options())
        second = client.create_job([(f"b{i}.jpg", make_jpeg(320, 240, seed=50 + i)) for i in range(6)], parse_options())
        assert client.queue_length() <= 4  # two tasks of each job, never the whole backlog

        assert wait_for_job(client, second, timeout=180)["done"] == 6
        behind = client.get_job(first)
        assert behind is not None and behind["done"] + behind["failed"] <= 12, "the first batch ended first"
        finished = wait_for_job(client, first, timeout=180)
    finally:
        worker.stop()
    assert (finished["state"], finished["done"]) == ("done", 16)
    for job_id, count in ((first, 16), (second, 6)):
        assert [client.store.attempts(job_id, i) for i in range(count)] == [1] * count  # each image once
    assert unreleased_items(client.redis) == 0
    client.redis.flushdb()


def test_a_stale_job_resends_only_items_whose_task_is_not_waiting_even_with_other_work_queued(
    store: JobStore, own_settings: Settings
) -> None:
    """Lost messages come back after job_stale_after_s whatever else waits: each item's own task is looked
    for in the queues (real messages sent by Celery to a database no worker reads)."""
    app = make_celery(own_settings)
    job_id = new_job(store, 3)  # a batch-lane job: everything released at once
    assert store.release(job_id) == [0, 1, 2]
    queue = queue_name(own_settings.worker_queue, "batch")
    app.send_task(PROCESS_TASK, args=[job_id, [0]], queue=queue)  # item 0's task still waits; 1 and 2 were lost
    app.send_task(PROCESS_TASK, args=["another-job", [1, 2]], queue=queue)  # someone else's work
    app.send_task(FINALIZE_TASK, args=[job_id], queue=queue_name(own_settings.worker_queue, "interactive"))
    assert waiting_items(store.redis, own_settings.worker_queue) == {job_id: {0}, "another-job": {1, 2}}
    sent: list[list[object]] = []
    store.touch(job_id, when=time.time() - 3600)

    report = reconcile_once(own_settings, store, lambda name, args, job: sent.append(args))

    assert report.resent == {job_id: [1, 2]} and sent == [[job_id, [1]], [job_id, [2]]]
