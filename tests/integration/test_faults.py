"""Faults at the edges of the pipeline, against the shared real Redis and `matteflow worker` (and a private
worker where a test needs other settings): deletes racing workers, locks that expire, storage that fails,
chunks of several items, the shipped ONNX model."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import redis
from PIL import Image

from matteflow.core.engine import MatteResult
from matteflow.core.options import parse_options
from matteflow.files import write_atomic
from matteflow.settings import Settings
from matteflow.web import create_app
from matteflow.workers.aggregate import finalize_job, rebuild_zip
from matteflow.workers.client import JobClient
from matteflow.workers.jobstore import ALREADY_ENDED, LEASED, JobStore, NewItem, make_redis
from matteflow.workers.leases import LeaseKeeper
from matteflow.workers.processing import ChunkRunner
from matteflow.workers.procs import WorkerProcess
from matteflow.workers.queues import REZIP_TASK
from matteflow.workers.reconcile import REZIP_RESEND_S, reconcile_once
from matteflow.workers.storage import JobFiles

from .helpers import record_job, wait_for_job, wait_until

pytestmark = pytest.mark.integration


def test_delete_while_running_answers_200_and_nothing_comes_back(
    celery_worker, job_client: JobClient, make_jpeg: Callable
) -> None:
    api = create_app(job_client.settings).test_client()
    files = [(f"d{i}.jpg", make_jpeg(256, 320, seed=i)) for i in range(12)]
    job_id = job_client.create_job(files, parse_options())
    wait_until(lambda: "running" in job_client.store.item_states(job_id).values(), 120, "a running item", 0.02)

    response = api.delete(f"/api/v1/jobs/{job_id}")

    assert response.status_code == 200, response.get_data(as_text=True)
    folder = job_client.settings.jobs_dir / job_id
    assert not folder.exists()
    # The items still in the worker's hands end without recreating the folder or the job.
    time.sleep(5)
    assert not folder.exists() and job_client.get_job(job_id) is None
    assert list(job_client.redis.scan_iter(f"mf:job:{{{job_id}}}*")) == []  # no key of it came back either
    assert api.get(f"/api/v1/jobs/{job_id}").status_code == 404
    # The worker is fine: the next job runs.
    after = job_client.create_job([("after.jpg", make_jpeg(seed=1))], parse_options())
    assert wait_for_job(job_client, after, timeout=120)["done"] == 1


def test_touch_never_recreates_a_deleted_job(job_client: JobClient, make_jpeg: Callable) -> None:
    job_id, _ = record_job(job_client, ["a.jpg"], make_jpeg)
    assert job_client.store.touch(job_id) is True
    job_client.delete_job(job_id)

    assert job_client.store.touch(job_id) is False
    assert job_client.store.job_fields(job_id) is None and job_client.get_job(job_id) is None


def test_a_lock_that_expired_is_never_released_by_its_old_holder(job_client: JobClient) -> None:
    store = job_client.store
    name = f"test-{time.time_ns()}"
    first = store.try_lock(name, 0.2)
    assert first and store.try_lock(name, 5.0) is None
    time.sleep(0.4)  # the first holder stalled past its lock
    second = store.try_lock(name, 5.0)
    assert second and second != first

    assert store.unlock(name, first) is False  # compare-and-delete: the second holder keeps it
    assert store.extend_lock(name, first, 5.0) is False
    assert store.try_lock(name, 5.0) is None
    assert store.unlock(name, second) is True
    assert store.try_lock(name, 0.1)


def test_finalize_reads_the_job_again_under_its_lock(job_client: JobClient, make_jpeg: Callable) -> None:
    job_id, files = record_job(job_client, ["a.jpg"], make_jpeg)
    write_atomic(files.result_path(0, "png"), make_jpeg(seed=0))
    job_client.store.end_item(job_id, 0, "done")
    token = job_client.store.try_lock(f"finalize:{job_id}", 30.0)  # another finaliser is writing the ZIP
    assert finalize_job(job_client.store, job_client.settings, job_id) == "busy"
    job_client.store.finish_job(job_id, "batch_results_20260101000000.zip")  # ... and finishes
    job_client.store.unlock(f"finalize:{job_id}", token)

    assert finalize_job(job_client.store, job_client.settings, job_id) == "already"
    assert sorted(p.name for p in files.root.glob("*.zip")) == []  # no second archive was written


def test_writing_a_batch_zip_again_waits_for_the_lock_and_leaves_one_archive(
    job_client: JobClient, make_jpeg: Callable
) -> None:
    store, settings = job_client.store, job_client.settings
    job_id, files = record_job(job_client, ["a.jpg"], make_jpeg)
    write_atomic(files.result_path(0, "png"), make_jpeg(seed=0))
    store.end_item(job_id, 0, "done")
    assert rebuild_zip(store, settings, job_id) == "not-done"  # finalising writes the first archive
    token = store.try_lock(f"finalize:{job_id}", 30.0)
    assert finalize_job(store, settings, job_id) == "busy"
    store.finish_job(job_id, "batch_results_20260101000000.zip")  # an older archive, named by the job
    (files.root / "batch_results_20260101000000.zip").write_bytes(b"old")
    assert rebuild_zip(store, settings, job_id) == "busy"  # another process holds the archive lock
    store.unlock(f"finalize:{job_id}", token)

    assert store.mark_zip_stale(job_id) and store.zip_stale_since(job_id)
    assert rebuild_zip(store, settings, job_id) == "rebuilt"
    assert store.zip_stale_since(job_id) is None  # written: no longer out of date
    archives = sorted(p.name for p in files.root.glob("*.zip"))
    assert len(archives) == 1 and archives[0] == store.job_fields(job_id)["zip"] != "batch_results_20260101000000.zip"
    JobFiles(settings.jobs_dir, job_id).remove()
    store.delete(job_id)
    assert rebuild_zip(store, settings, job_id) == "unknown"
    assert store.replace_zip(job_id, "x.zip") is None and store.job_fields(job_id) is None  # never recreated


def test_a_replacement_marked_while_the_archive_was_written_keeps_the_job_marked(job_client: JobClient) -> None:
    store, job_id = _private_job(job_client)
    assert store.mark_zip_stale(job_id) is False  # not done: finalising writes the archive anyway
    store.end_item(job_id, 0, "done")
    store.finish_job(job_id, "batch_results_20260101000000.zip")
    store.mark_zip_stale(job_id)
    began_from = store.zip_stale_since(job_id)
    time.sleep(0.01)
    store.mark_zip_stale(job_id)  # another replacement while the rebuild wrote the archive
    assert (
        store.replace_zip(job_id, "batch_results_20260101000001.zip", began_from) == "batch_results_20260101000000.zip"
    )
    assert store.zip_stale_since(job_id) > began_from  # its own rebuild (or the reconciler) writes it again

    sent: list[tuple[str, list[object]]] = []

    def send(name: str, args: list[object], job: Mapping[str, str]) -> object:
        sent.append((name, args))
        return None

    settings = job_client.settings
    assert job_id not in reconcile_once(settings, store, send).rezipped  # its own message may still come
    later = time.time() + REZIP_RESEND_S + 1
    report, again = reconcile_once(settings, store, send, now=later), reconcile_once(settings, store, send, now=later)
    assert job_id in report.rezipped and job_id not in again.rezipped  # once per window, not per sweep
    assert sent.count((REZIP_TASK, [job_id])) == 1
    store.delete(job_id)
    assert store.zip_stale_since(job_id) is None


def test_a_finalize_that_cannot_write_its_archive_retries_then_fails_the_job(
    celery_worker, job_client: JobClient, make_jpeg: Callable
) -> None:
    job_id, files = record_job(job_client, ["a.jpg"], make_jpeg)
    write_atomic(files.result_path(0, "png"), make_jpeg(seed=0))
    # The job's folder is replaced by a file: every archive write fails with an OSError (root ignores modes).
    job_client.store.end_item(job_id, 0, "done")  # ended here, so no finalize message: the reconciler sends it
    JobFiles(job_client.settings.jobs_dir, job_id).remove()
    files.root.write_bytes(b"not a folder")

    job = wait_for_job(job_client, job_id, timeout=120)  # the reconciler sends finalize; it retries, then fails

    assert job["state"] == "failed" and "could not write the results archive" in job["error"]
    response = create_app(job_client.settings).test_client().get(f"/api/v1/jobs/{job_id}/results.zip")
    assert response.status_code == 410 and response.get_json()["error"] == "job_failed"
    files.root.unlink()


def _private_job(client: JobClient) -> tuple[JobStore, str]:
    """A one-item job in a Redis database of its own: no worker's watchdog re-sends it behind the test's back."""
    own_db = client.settings.redis_url.rsplit("/", 1)[0] + "/3"
    store = JobStore(make_redis(client.settings.replace(redis_url=own_db)))
    job_id = f"private-{time.time_ns()}"
    store.create(job_id, [NewItem("a.jpg", "0_a.jpg")], parse_options().to_dict())
    return store, job_id


def _no_network() -> object:
    raise AssertionError("the network must not run here")


def test_a_missing_input_is_a_storage_fault_retried_not_a_bad_image(job_client: JobClient, make_jpeg: Callable) -> None:
    job_id, files = record_job(job_client, ["gone.jpg"], make_jpeg)
    files.input_path(0, "0_gone.jpg").unlink()  # e.g. a network volume not (yet) showing the file

    def run() -> object:  # the task and its retries (one task id, so one lease owner)
        return ChunkRunner(job_client.store, job_client.settings, _no_network, job_id, owner="task-1").run([0])

    outcome = run()

    assert (outcome.retry, outcome.failed) == ([0], [])
    assert "cannot be read from storage" in outcome.error
    for _ in range(job_client.settings.task_max_retries):  # still missing on every retry: dead-lettered
        outcome = run()
    assert outcome.failed == [0]
    etype, message = job_client.store.item_error(job_id, 0)
    assert etype == "OSError" and "cannot be read from storage" in message


def test_a_leased_item_is_left_to_its_holder_and_requeued_when_the_lease_lapses(
    job_client: JobClient, make_jpeg: Callable
) -> None:
    store, job_id = _private_job(job_client)
    assert store.start_item(job_id, 0, "task-a", lease_s=0.5) == 1
    assert store.start_item(job_id, 0, "task-b", lease_s=30) == LEASED  # a duplicate: left alone
    assert store.requeue_expired(job_id) == []
    assert store.renew_leases(job_id, "task-b", [0], 30) == [0]  # not its lease
    time.sleep(0.7)  # task-a died: nobody renewed

    assert store.requeue_expired(job_id) == [0]
    assert store.item_states(job_id)[0] == "queued" and store.holders(job_id) == {}
    assert store.renew_leases(job_id, "task-a", [0], 30) == [0]  # the old owner lost it
    assert store.start_item(job_id, 0, "task-b", lease_s=30) == 2  # the re-sent copy takes it
    assert store.end_item(job_id, 0, "done") == 0
    assert store.end_item(job_id, 0, "done") < 0  # the late old owner's finish is a no-op


def test_a_chunks_batched_starts_and_ends_answer_item_by_item_like_the_single_calls(job_client: JobClient) -> None:
    store, _ = _private_job(job_client)
    own = f"private-{time.time_ns()}"
    items = [NewItem(name, f"{i}_{name}") for i, name in enumerate(("a.jpg", "b.jpg", "c.jpg"))]
    store.create(own, items, parse_options().to_dict())
    assert store.start_item(own, 1, "task-a", lease_s=30) == 1  # another live task holds item 1
    assert store.start_item(own, 2, "task-a", lease_s=30) == 1 and store.end_item(own, 2, "done") == 2

    assert store.start_items(own, [0, 1, 2], "task-b", 30, "host/1") == [1, LEASED, ALREADY_ENDED]
    assert store.holders(own)[0] == "host/1"
    assert store.stored_names(own, [0, 2, 1]) == ["0_a.jpg", "2_c.jpg", "1_b.jpg"]
    assert store.end_done_items(own, [(0, "general", 0.75, ["no subject"])]) == [1]  # item 1 still open
    assert store.item_result_info(own, 0) == ("general", 0.75, ["no subject"])
    assert store.item_states(own) == {0: "done", 1: "running", 2: "done"}
    # A duplicate's late marks are refused item by item; the last open item's end says 0 (finalise).
    assert store.end_done_items(own, [(0, "people", 0.5, []), (1, "people", 0.9, [])]) == [ALREADY_ENDED, 0]
    assert store.item_result_info(own, 1)[:2] == ("people", 0.9)


class _CountedConnection(redis.Connection):
    requests = 0  # every command, or every pipeline, is one request to Redis

    def send_packed_command(self, command: object, check_health: bool = True) -> None:
        type(self).requests += 1
        super().send_packed_command(command, check_health)


def test_a_chunks_bookkeeping_costs_a_few_requests_to_redis_not_a_few_per_image(
    job_client: JobClient, make_jpeg: Callable
) -> None:
    job_id, _ = record_job(job_client, [f"p{i}.jpg" for i in range(16)], make_jpeg)
    pool = redis.ConnectionPool.from_url(job_client.settings.redis_url, connection_class=_CountedConnection)
    store = JobStore(redis.Redis(connection_pool=pool))

    class ReadyEngine:  # every result ready at once: the bookkeeping alone
        def process_many(self, datas: list[bytes], options: object, backdrop: object = None) -> list[MatteResult]:
            return [MatteResult(b"result", None, "png", "image/png", 4, 4, 0.9) for _ in datas]

    store.redis.ping()  # the connection's own handshake is not the chunk's
    before = _CountedConnection.requests
    outcome = ChunkRunner(store, job_client.settings, ReadyEngine, job_id, owner="task-1").run(list(range(16)))

    assert sorted(outcome.done) == list(range(16)) and outcome.last_item_ended
    assert _CountedConnection.requests - before <= 8  # 65 when each image had its own requests
    assert set(job_client.store.item_states(job_id).values()) == {"done"}


def test_a_chunk_of_several_items_is_exact_item_by_item(
    celery_worker, job_client: JobClient, make_jpeg: Callable
) -> None:
    chunking = JobClient(job_client.settings.replace(task_chunk_size=4), job_client.redis)
    files = [(f"c{i}.jpg", make_jpeg(seed=i)) for i in range(9)] + [("bad.txt", b"not an image")]
    job_id = chunking.create_job(files, parse_options())

    job = wait_for_job(job_client, job_id, timeout=120)

    assert (job["state"], job["done"], job["failed"]) == ("done", 9, 1)
    assert [job_client.store.attempts(job_id, i) for i in range(9)] == [1] * 9


def test_the_shipped_onnx_model_runs_through_a_real_worker(
    redis_server: str, make_test_settings: Callable[..., Settings], make_jpeg: Callable, tmp_path: Path
) -> None:
    own_db = redis_server.rsplit("/", 1)[0] + "/2"  # apart from the session worker's jobs and reconciler
    settings = make_test_settings(own_db, tmp_path / "storage", model="default", worker_concurrency=1)
    client = JobClient(settings)
    worker = WorkerProcess(settings, name="onnx", log_path=tmp_path / "onnx.log").start()
    try:
        worker.wait_ready(client.celery, timeout=90)
        portrait = Image.open(Path(__file__).parents[1] / "data" / "people" / "000000522418.jpg")
        buffer = io.BytesIO()
        portrait.convert("RGB").resize((320, 240)).save(buffer, "JPEG")
        job_id = client.create_job([("person.jpg", buffer.getvalue())], parse_options())
        job = wait_for_job(client, job_id, timeout=120)
    finally:
        worker.stop()

    assert (job["state"], job["done"]) == ("done", 1)
    result = Image.open(client.item_result(job_id, 0)[0])
    alpha = result.getchannel("A")
    assert result.size == (320, 240) and alpha.getextrema() == (0, 255)  # a real matte: some in, some out


def test_the_heartbeat_renews_a_lease_until_the_item_runs_past_the_time_limit(
    job_client: JobClient, make_jpeg: Callable
) -> None:
    # A worker alive but stuck in one item (a runaway call) keeps its heartbeat thread: past the task time
    # limit the keeper stops renewing, so the watchdog treats the item like a dead worker's.
    settings = job_client.settings.replace(item_lease_s=0.6, task_time_limit_s=3)
    store, job_id = _private_job(job_client)
    keeper = LeaseKeeper(store, settings)
    assert store.start_item(job_id, 0, "task-a", settings.item_lease_s) == 1
    with keeper.holding(job_id, "task-a", [0]):
        time.sleep(1.5)  # more than two leases: only the heartbeat kept it
        assert store.requeue_expired(job_id) == [] and store.leased_items(job_id) == {0}
        wait_until(lambda: store.requeue_expired(job_id) == [0], 10, "the lease to lapse past the time limit")
    assert store.item_states(job_id)[0] == "queued"
