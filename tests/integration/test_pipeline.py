"""The pipeline end to end against the shared real Redis server and real Celery worker."""

from __future__ import annotations

import io
import json
import os
import re
import time
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import requests
from PIL import Image
from prometheus_client import REGISTRY

from matteflow.core.errors import InvalidImageError
from matteflow.core.options import parse_options
from matteflow.files import write_atomic
from matteflow.settings import Settings
from matteflow.workers.client import JobClient
from matteflow.workers.jobstore import JOBS_KEY
from matteflow.workers.processing import ChunkRunner
from matteflow.workers.procs import WorkerProcess
from matteflow.workers.queues import PROCESS_TASK, queue_for_job
from matteflow.workers.reconcile import reconcile_once
from matteflow.workers.storage import JobFiles

from .helpers import record_job, wait_for_job, wait_until

pytestmark = pytest.mark.integration


def no_network() -> object:
    """Engine factory for runs that must be served from checkpoints: running the network is a failure."""
    raise AssertionError("the network must not run for an item that is already done")


def test_batch_of_20_completes_with_a_zip(celery_worker, job_client: JobClient, make_jpeg: Callable) -> None:
    files = [(f"person_{i}.jpg", make_jpeg(96, 128, seed=i)) for i in range(18)]
    files += [("dup.jpg", make_jpeg(64, 64, seed=50)), ("../../other/dup.jpg", make_jpeg(64, 64, seed=51))]
    job_id = job_client.create_job(files, parse_options(mask=True))

    job = wait_for_job(job_client, job_id, timeout=180)

    assert (job["state"], job["total"], job["done"], job["failed"]) == ("done", 20, 20, 0)
    assert [item["state"] for item in job["items"]] == ["done"] * 20
    assert job["items"][19]["name"] == "dup.jpg"  # the client's path never reaches storage
    assert (JobFiles(job_client.settings.jobs_dir, job_id).in_dir / "19_dup.jpg").is_file()
    path, download_name = job_client.results_zip(job_id)
    assert re.fullmatch(r"batch_results_\d{14}\.zip", download_name)
    # Another process (the web container, a pipeline) reads what the worker wrote: not private to the worker.
    assert path.stat().st_mode & 0o444 == 0o444
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
        first = Image.open(io.BytesIO(archive.read("person_0.png")))
        first.load()
    expected = {f"person_{i}.png" for i in range(18)} | {"dup.png", "dup_2.png"}
    expected |= {f"person_{i}_mask.png" for i in range(18)} | {"dup_mask.png", "dup_2_mask.png"}
    assert names == expected | {"manifest.json"}
    assert (first.mode, first.size) == ("RGBA", (96, 128))
    assert [entry["state"] for entry in manifest["items"]] == ["done"] * 20
    assert manifest["items"][19]["result"] == "dup_2.png"
    result_path, media_type = job_client.item_result(job_id, 3)
    assert media_type == "image/png" and Image.open(result_path).size == (96, 128)
    assert Image.open(job_client.mask_result(job_id, 3)).mode == "L"


def test_a_small_batch_overtakes_a_big_one_sent_before_it(
    celery_worker, job_client: JobClient, make_jpeg: Callable
) -> None:
    """Batches of bulk_batch_from images or more wait in the bulk lane, served after smaller batches: a
    2-photo batch sent after a 30-photo one ends while the big one is still running, and both end whole."""
    client = JobClient(job_client.settings.replace(bulk_batch_from=10), job_client.redis)
    photos = [(f"big{i}.jpg", make_jpeg(width=320, height=240, seed=i)) for i in range(30)]
    big = client.create_job(photos, parse_options({}))
    small = client.create_job([(f"small{i}.jpg", make_jpeg(seed=100 + i)) for i in range(2)], parse_options({}))
    assert wait_for_job(client, small, 120)["done"] == 2
    overtaken = client.get_job(big)
    assert overtaken is not None and overtaken["done"] + overtaken["failed"] < 30, "the big batch ended first"
    finished = wait_for_job(client, big, 300)
    assert finished["state"] == "done" and finished["done"] == 30


def test_a_bad_image_among_good_ones_fails_alone(celery_worker, job_client: JobClient, make_jpeg: Callable) -> None:
    truncated = make_jpeg(160, 160, seed=7)[:1800]  # a valid header, but the pixels are cut off
    files = [("a.jpg", make_jpeg(seed=1)), ("notes.txt", b"this is not an image"), ("b.jpg", make_jpeg(seed=2))]
    files += [("cut.jpg", truncated), ("c.jpg", make_jpeg(seed=3))]
    job_id = job_client.create_job(files, parse_options(format="jpeg", background="#00ff00"))

    job = wait_for_job(job_client, job_id, timeout=120)

    assert (job["state"], job["done"], job["failed"]) == ("done", 3, 2)
    states = {item["name"]: (item["state"], item["error"]) for item in job["items"]}
    assert states["notes.txt"][0] == "failed" and states["notes.txt"][1]  # refused at intake
    assert states["cut.jpg"][0] == "failed" and states["cut.jpg"][1]  # failed in the worker
    assert job_client.store.attempts(job_id, 3) == 1  # bad input is never retried
    assert job_client.store.item_error(job_id, 3)[0] == "InvalidImageError"
    path, _ = job_client.results_zip(job_id)
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["a.jpg", "b.jpg", "c.jpg", "manifest.json"]
        manifest = json.loads(archive.read("manifest.json"))
    assert [e["state"] for e in manifest["items"]] == ["done", "failed", "done", "failed", "done"]
    assert manifest["items"][3]["error"] == states["cut.jpg"][1]


def test_a_redelivered_task_does_not_redo_work(celery_worker, job_client: JobClient, make_jpeg: Callable) -> None:
    job_id = job_client.create_job([("a.jpg", make_jpeg(seed=4)), ("b.jpg", make_jpeg(seed=5))], parse_options())
    wait_for_job(job_client, job_id, timeout=120)
    files = JobFiles(job_client.settings.jobs_dir, job_id)
    before = [os.stat(files.result_path(i, "png")) for i in (0, 1)]
    attempts = [job_client.store.attempts(job_id, i) for i in (0, 1)]

    # The same message again, as Redis hands it out after a lost ack.
    summary = job_client.celery.send_task(PROCESS_TASK, args=[job_id, [0, 1]]).get(timeout=60)

    assert summary == {"done": [], "failed": [], "skipped": [0, 1], "retry": []}
    after = [os.stat(files.result_path(i, "png")) for i in (0, 1)]
    assert [(s.st_ino, s.st_mtime_ns) for s in after] == [(s.st_ino, s.st_mtime_ns) for s in before]
    assert [job_client.store.attempts(job_id, i) for i in (0, 1)] == attempts
    job = job_client.get_job(job_id)
    assert (job["done"], job["failed"], job["state"]) == (2, 0, "done")


def test_a_result_written_before_a_crash_is_kept_not_redone(job_client: JobClient, make_jpeg: Callable) -> None:
    job_id, files = record_job(job_client, ["a.jpg"], make_jpeg)
    write_atomic(files.result_path(0, "png"), b"checkpointed result")  # the crash came before the mark

    outcome = ChunkRunner(job_client.store, job_client.settings, no_network, job_id).run([0])

    assert (outcome.done, outcome.last_item_ended) == ([0], True)
    assert files.result_path(0, "png").read_bytes() == b"checkpointed result"
    assert job_client.store.get(job_id)["done"] == 1


def test_an_item_that_keeps_killing_its_worker_is_dead_lettered(job_client: JobClient, make_jpeg: Callable) -> None:
    job_id, _ = record_job(job_client, ["poison.jpg", "fine.jpg"], make_jpeg)
    # Each start whose worker then died; Celery hands the same task (same id: same lease owner) out again.
    for _ in range(job_client.settings.task_max_retries + 1):
        job_client.store.start_item(job_id, 0, "task-1", lease_s=30)
    job_client.store.end_item(job_id, 1, "done")

    outcome = ChunkRunner(job_client.store, job_client.settings, no_network, job_id, owner="task-1").run([0])

    assert (outcome.failed, outcome.retry, outcome.last_item_ended) == ([0], [], True)
    job = job_client.get_job(job_id)
    assert job["items"][0]["state"] == "failed" and "gave up after 3 attempts" in job["items"][0]["error"]


def test_the_reconciler_finishes_a_job_whose_finalize_was_lost(
    celery_worker, job_client: JobClient, make_jpeg: Callable
) -> None:
    job_id, files = record_job(job_client, ["a.jpg", "b.jpg"], make_jpeg)
    for index in (0, 1):
        write_atomic(files.result_path(index, "png"), make_jpeg(seed=index))
    # Both items end here, in-process: nobody sends the finalize message that the last task would.
    ChunkRunner(job_client.store, job_client.settings, no_network, job_id).run([0, 1])
    assert job_client.get_job(job_id)["state"] != "done"

    job = wait_for_job(job_client, job_id, timeout=30)  # the worker's reconciler sweeps every second

    assert (job["state"], job["done"]) == ("done", 2)
    path, _ = job_client.results_zip(job_id)
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["a.png", "b.png", "manifest.json"]


def test_ttl_cleanup_removes_old_jobs(celery_worker, job_client: JobClient, make_jpeg: Callable) -> None:
    settings: Settings = job_client.settings
    old_id = job_client.create_job([("old.jpg", make_jpeg(seed=8))], parse_options())
    fresh_id = job_client.create_job([("new.jpg", make_jpeg(seed=9))], parse_options())
    wait_for_job(job_client, old_id, timeout=120)
    wait_for_job(job_client, fresh_id, timeout=120)
    eight_days_ago = time.time() - (settings.result_ttl_hours + 24) * 3600
    job_client.redis.zadd(JOBS_KEY, {old_id: eight_days_ago})
    orphan = settings.jobs_dir / "OrphanFolderFromALostRedis0"
    (orphan / "out").mkdir(parents=True)
    os.utime(orphan, (eight_days_ago, eight_days_ago))

    wait_until(lambda: job_client.get_job(old_id) is None and not orphan.exists(), 30, "the TTL sweep")

    assert not (settings.jobs_dir / old_id).exists()
    assert job_client.results_zip(old_id) is None
    assert job_client.get_job(fresh_id)["state"] == "done" and (settings.jobs_dir / fresh_id).is_dir()


def test_matte_one_runs_through_the_queue(celery_worker, job_client: JobClient, make_jpeg: Callable) -> None:
    data, media_type = job_client.matte_one(make_jpeg(80, 60, seed=3), "one.jpg", parse_options(format="webp"), 60)

    assert media_type == "image/webp"
    assert Image.open(io.BytesIO(data)).size == (80, 60)
    with pytest.raises(InvalidImageError):
        job_client.matte_one(b"GIF89a but not really", "x.gif", parse_options(), 60)
    truncated = make_jpeg(160, 160, seed=7)[:1800]
    with pytest.raises(InvalidImageError):  # passes the header check, fails in the worker: same class
        job_client.matte_one(truncated, "cut.jpg", parse_options(), 60)


def test_job_client_reports_health_and_removes_jobs(celery_worker, job_client: JobClient, make_jpeg: Callable) -> None:
    assert job_client.redis_ok() is True
    assert job_client.workers_alive(timeout=2.0) >= 1
    assert isinstance(job_client.queue_length(), int)
    assert job_client.get_job("no-such-job-id-at-all") is None
    assert job_client.get_job("../../etc") is None
    job_id = job_client.create_job([("x.jpg", make_jpeg(seed=1))], parse_options())
    assert len(job_id) >= 22  # 16 random bytes in URL-safe base64
    wait_for_job(job_client, job_id, timeout=120)

    assert job_client.delete_job(job_id) is True

    assert job_client.get_job(job_id) is None
    assert not Path(job_client.settings.jobs_dir / job_id).exists()
    assert job_client.delete_job(job_id) is False
    with pytest.raises(ValueError):
        job_client.create_job([], parse_options())


def test_the_worker_serves_its_metrics(celery_worker, job_client: JobClient, make_jpeg: Callable) -> None:
    job_id = job_client.create_job([("m.jpg", make_jpeg(seed=6))], parse_options())
    wait_for_job(job_client, job_id, timeout=120)
    url = f"http://127.0.0.1:{job_client.settings.worker_metrics_port}/metrics"

    text = requests.get(url, timeout=10).text

    done = re.search(r'^matteflow_items_total\{state="done"\} (\S+)$', text, re.MULTILINE)
    assert done and float(done.group(1)) >= 1
    assert re.search(r'^matteflow_stage_seconds_count\{stage="inference"\} [1-9]', text, re.MULTILINE)
    assert re.search(r"^matteflow_worker_rss_bytes [1-9]", text, re.MULTILINE)


def resent_count(reason: str) -> float:
    """This process's matteflow_resent_total{reason} (the reconciler below runs in the test process)."""
    return REGISTRY.get_sample_value("matteflow_resent_total", {"reason": reason}) or 0.0


def test_the_reconciler_resends_items_whose_messages_were_lost(
    celery_worker, job_client: JobClient, make_jpeg: Callable
) -> None:
    sent: list[list[object]] = []

    def send(name: str, args: list[object], job: Mapping[str, str]) -> object:
        sent.append(args)
        settings = job_client.settings
        queue = queue_for_job(settings.worker_queue, job["kind"], int(job["total"]), settings.bulk_batch_from)
        return job_client.celery.send_task(name, args=args, queue=queue)

    # Hold the sweep lock, so the worker's own reconciler stays out of this sweep.
    tokens: list[str] = []
    wait_until(lambda: tokens.append(job_client.store.try_lock("reconcile", 10.0)) or tokens[-1], 15, "the lock", 0.01)
    try:
        job_id, _ = record_job(job_client, ["a.jpg", "b.jpg"], make_jpeg)  # recorded, but no message sent
        job_client.store.touch(job_id, when=time.time() - 3600)
        resent_before = resent_count("stalled")
        report = reconcile_once(job_client.settings, job_client.store, send)
    finally:
        job_client.store.unlock("reconcile", tokens[-1])

    assert report.resent == {job_id: [0, 1]} and sent == [[job_id, [0]], [job_id, [1]]]
    assert resent_count("stalled") - resent_before == 2  # what operators see: matteflow_resent_total
    job = wait_for_job(job_client, job_id, timeout=120)
    assert (job["state"], job["done"]) == ("done", 2)


def test_a_single_image_overtakes_a_queued_batch(celery_worker, job_client: JobClient, make_jpeg: Callable) -> None:
    batch = [(f"q{i}.jpg", make_jpeg(384, 512, seed=i)) for i in range(12)]
    job_id = job_client.create_job(batch, parse_options())

    # The people model alone: what is measured is when the image is served, not how long auto takes on it
    # (two networks on an unsure photo, maybe loading the second one in that pool process first).
    job_client.matte_one(make_jpeg(64, 64, seed=1), "urgent.jpg", parse_options(model="people"), 60)

    # Served next, not after the batch: at most the tasks already running when it arrived finished first.
    assert job_client.get_job(job_id)["done"] <= len(batch) // 2
    assert wait_for_job(job_client, job_id, timeout=120)["done"] == len(batch)


def test_a_transient_failure_retries_with_backoff_then_ends_failed(
    redis_server: str, make_test_settings: Callable, make_jpeg: Callable, tmp_path: Path
) -> None:
    # A worker whose model cannot load: a deployment error, retried (it may be fixed), never looping.
    own_db = redis_server.rsplit("/", 1)[0] + "/1"  # apart from the session worker's jobs and reconciler
    settings = make_test_settings(own_db, tmp_path / "storage", model="onnx:/nonexistent/model.onnx")
    client = JobClient(settings)
    worker = WorkerProcess(settings, name="broken", log_path=tmp_path / "broken.log").start()
    try:
        worker.wait_ready(client.celery, timeout=90)
        job_id = client.create_job([("a.jpg", make_jpeg(seed=1)), ("b.jpg", make_jpeg(seed=2))], parse_options())

        job = wait_for_job(client, job_id, timeout=120)
    finally:
        worker.stop()

    assert (job["state"], job["done"], job["failed"]) == ("done", 0, 2)
    attempts = settings.task_max_retries + 1
    for item in job["items"]:
        assert item["error"].startswith(f"failed after {attempts} attempts: ModelError")
    assert [client.store.attempts(job_id, i) for i in (0, 1)] == [attempts, attempts]
    assert "retry in" in worker.log_tail(20000)
