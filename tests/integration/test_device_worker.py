"""A GPU-style worker (torch post-processing, encoder processes) run on the CPU: chunked tasks
through a real worker process and a real Redis end every item exactly once, a bad image failing alone."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from collections.abc import Callable, Iterator

import pytest
from PIL import Image

from matteflow.core.options import parse_options
from matteflow.settings import Settings
from matteflow.workers.app import PROCESS_TASK
from matteflow.workers.client import JobClient
from matteflow.workers.procs import EmbeddedRedis, WorkerProcess
from matteflow.workers.storage import JobFiles

from .helpers import wait_for_job

pytest.importorskip("torch")
pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHUNK = 4


@pytest.fixture(scope="module", params=["threads", "prefork"])
def device_stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    make_test_settings: Callable[..., Settings],
) -> Iterator:
    """A private Redis and a worker like a GPU one, in both pools a GPU worker runs (threads; prefork with the
    child owning the device, as the Kubernetes prod overlay runs it), with encoder processes asked for."""
    root = tmp_path_factory.mktemp(f"device-worker-{request.param}")
    redis = EmbeddedRedis(root / "redis").start()
    settings = make_test_settings(
        redis.url,
        root / "storage",
        task_chunk_size=CHUNK,
        gpu_batch_size=3,  # smaller than a chunk: the device batches are split too
        postprocess="torch",
        encode_processes=2,
        # Processes asked for (threads are the default): the threads pool spawns them, a prefork child cannot.
        encode_pool="processes",
        worker_pool=request.param,
        worker_concurrency=1 if request.param == "prefork" else 2,
    )
    worker = WorkerProcess(
        settings,
        name="device",
        command=[sys.executable, "-m", "matteflow", "worker", "--name", "device"],
        log_path=root / "worker.log",
    ).start()
    client = JobClient(settings)
    try:
        worker.wait_ready(client.celery, timeout=120)
        yield client, request.param, root / "worker.log"
    finally:
        worker.kill()
        redis.kill()


def test_a_chunked_task_ends_every_item_once_and_a_bad_image_alone(device_stack, make_jpeg: Callable) -> None:
    client, pool, log_path = device_stack
    truncated = make_jpeg(160, 160, seed=9)[:1800]  # a valid header, the pixels cut off: fails in the worker
    sizes = [(96, 128), (96, 128), (128, 96), (96, 128), (128, 96), (96, 128)]
    files = [(f"p{i}.jpg", make_jpeg(w, h, seed=i)) for i, (w, h) in enumerate(sizes)]
    files.insert(2, ("cut.jpg", truncated))
    files.insert(5, ("notes.txt", b"not an image"))  # refused at intake, never enqueued
    job_id = client.create_job(files, parse_options(mask=True))

    job = wait_for_job(client, job_id, timeout=240)

    assert (job["state"], job["total"], job["done"], job["failed"]) == ("done", 8, 6, 2)
    states = [item["state"] for item in job["items"]]
    assert states == ["done", "done", "failed", "done", "done", "failed", "done", "done"]
    assert client.store.item_error(job_id, 2)[0] == "InvalidImageError"
    enqueued = [i for i in range(8) if i != 5]
    assert [client.store.attempts(job_id, i) for i in enqueued] == [1] * 7  # nothing ran twice, nothing retried
    files_dir = JobFiles(client.settings.jobs_dir, job_id)
    for index, item in enumerate(job["items"]):
        if item["state"] != "done":
            continue
        result = Image.open(files_dir.result_path(index, "png"))
        width, height = sizes[[i for i in range(8) if i not in (2, 5)].index(index)]
        assert (result.mode, result.size) == ("RGBA", (width, height))
        assert Image.open(files_dir.mask_path(index)).size == (width, height)
    path, _ = client.results_zip(job_id)
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert Image.open(io.BytesIO(archive.read("p0.png"))).mode == "RGBA"
    assert [e["state"] for e in manifest["items"]] == states
    log = log_path.read_text(errors="replace")
    # A prefork child is daemonic (no children of its own): its encoders are threads (OpenCV frees the GIL).
    kind = "threads" if pool == "prefork" else "processes"
    assert f"torch post-processing on cpu in batches of 3, 2 encoder {kind}" in log


def test_a_redelivered_chunk_does_not_redo_or_recount(device_stack, make_jpeg: Callable) -> None:
    client, _, _ = device_stack
    job_id = client.create_job([(f"r{i}.jpg", make_jpeg(seed=20 + i)) for i in range(CHUNK)], parse_options())
    wait_for_job(client, job_id, timeout=240)

    summary = client.celery.send_task(PROCESS_TASK, args=[job_id, list(range(CHUNK))]).get(timeout=120)

    assert summary == {"done": [], "failed": [], "skipped": list(range(CHUNK)), "retry": []}
    job = client.get_job(job_id)
    assert (job["done"], job["failed"]) == (CHUNK, 0)
    assert [client.store.attempts(job_id, i) for i in range(CHUNK)] == [1] * CHUNK
