"""The Celery tasks: thin wrappers that turn ``processing`` / ``aggregate`` outcomes into retries.

Each model (``people``, ``general``) is loaded once per worker process, lazily on the first task that needs
it (a pool process that never gets a task, or never an object photo, never pays for it), and reused for
every later task of that process.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import threading
import time
from typing import TYPE_CHECKING, Any

import requests
from celery import Task, shared_task

from matteflow import metrics
from matteflow.settings import Settings, usable_cpus

from . import callbacks
from .aggregate import LockLostError, finalize_job, rebuild_zip
from .jobstore import ENDED, JobStore, make_redis
from .leases import lease_keeper
from .processing import ChunkRunner
from .queues import (
    ENQUEUED_AT_HEADER,
    FINALIZE_TASK,
    NOTIFY_TASK,
    PROCESS_TASK,
    REZIP_TASK,
    enqueue_headers,
    finalize_queue,
)
from .window import send_released

if TYPE_CHECKING:
    from matteflow.core.engine import MatteEngine

log = logging.getLogger(__name__)


@functools.cache
def job_store(settings: Settings) -> JobStore:
    """One Redis client per process (and per settings: tests may run several)."""
    return JobStore(make_redis(settings))


_ENGINE_LOCK = threading.Lock()


def engine(settings: Settings) -> MatteEngine:
    """The process's engine, built on first use and shared by the pool's threads (GPU workers)."""
    with _ENGINE_LOCK:  # one load even when several threads start their first task together
        return _build_engine(settings)


@functools.cache
def _build_engine(settings: Settings) -> MatteEngine:
    """Threads per process are the usable cores (the container's CPU limit, not the node's core count)
    shared out between the pool's processes, so two processes on two cores do not fight over four threads.
    The models themselves load on first use (ModelSet)."""
    from matteflow.core.engine import MatteEngine
    from matteflow.core.registry import PEOPLE, ModelSet

    threads = max(1, usable_cpus() // max(1, settings.worker_concurrency))
    if any(spec == "unet-random" or spec.startswith("torch:") for spec in (settings.model, settings.general_model)):
        _limit_torch_threads(threads)
    models = ModelSet.from_specs(settings.model, settings.general_model, settings.device, threads=threads)
    # The people model decides the device path (it is the first network every default request runs).
    device = str(getattr(models.get(PEOPLE), "device", "cpu"))
    if uses_device_postprocess(settings, device):
        from matteflow.core.device_engine import DeviceMatteEngine
        from matteflow.core.encode_pool import EncodePool

        _limit_torch_threads(threads)
        encoder = EncodePool(settings.encode_processes or usable_cpus(), kind=settings.encode_pool)
        log.info(
            "pid %s: torch post-processing on %s in batches of %s, %s encoder %s",
            os.getpid(),
            device,
            settings.gpu_batch_size,
            encoder.processes,
            encoder.kind,
        )
        return DeviceMatteEngine(
            models,
            max_pixels=settings.max_pixels,
            memory_budget_mb=settings.max_image_memory_mb,
            encoder=encoder,
            max_batch=settings.gpu_batch_size,
        )
    # The numpy path's OpenCV calls get the same share of the cores as the network, not OpenCV's default of a
    # thread per core in every pool process (the CLI ran 7 % faster with OpenCV on one thread per image:
    # bench/README.md, section 1).
    import cv2

    cv2.setNumThreads(threads)
    return MatteEngine(models, max_pixels=settings.max_pixels, memory_budget_mb=settings.max_image_memory_mb)


def uses_device_postprocess(settings: Settings, model_device: str) -> bool:
    """torch post-processing (batched, on the model's device) on a GPU, or when asked for; else numpy."""
    if settings.postprocess not in ("auto", "numpy", "torch"):
        raise ValueError(f"MATTEFLOW_POSTPROCESS must be auto, numpy or torch, got {settings.postprocess!r}")
    if settings.postprocess == "auto":
        return model_device.startswith("cuda")
    return settings.postprocess == "torch"


def _limit_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def backoff_seconds(settings: Settings, retries: int) -> float:
    """Exponential backoff with a cap and jitter (half to full), so retries of many items spread out.
    (Celery's get_exponential_backoff_interval works in whole seconds only.)"""
    ceiling = min(settings.task_retry_backoff_max_s, settings.task_retry_backoff_s * (2**retries))
    return ceiling * random.uniform(0.5, 1.0)


@shared_task(bind=True, name=PROCESS_TASK, max_retries=None)
def process_images(self: Task, job_id: str, indices: list[int]) -> dict[str, Any]:
    """Matte the given items of one job (one image, or a chunk that a GPU batches through the network)."""
    settings: Settings = self.app.settings
    _observe_queue_wait(self.request)
    store = job_store(settings)
    keeper = lease_keeper(store, settings)
    holder = f"{self.request.hostname}/{os.getpid()}"  # node name (name@host) and pool process
    runner = ChunkRunner(store, settings, functools.partial(engine, settings), job_id, self.request.id, keeper, holder)
    outcome = runner.run([int(i) for i in indices])
    metrics.update_worker_rss()
    if (outcome.done or outcome.failed) and not outcome.last_item_ended:
        # Their slots in the job's window are free: a big batch gets its next images sent (workers/window.py).
        send_released(self.app, store, settings, job_id)
    if outcome.last_item_ended:
        self.app.send_task(
            FINALIZE_TASK, args=[job_id], queue=finalize_queue(settings.worker_queue), headers=enqueue_headers()
        )
    if outcome.retry:
        # Attempts are counted per item in Redis (they also count crashes), so the task itself retries
        # without limit: the items dead-letter themselves after task_max_retries.
        metrics.TASK_RETRIES_TOTAL.inc()
        countdown = backoff_seconds(settings, self.request.retries)
        runner.hold_for_retry(countdown)
        log.info("job %s items %s: retry in %.1fs (%s)", job_id, outcome.retry, countdown, outcome.error)
        raise self.retry(args=[job_id, outcome.retry], countdown=countdown)
    return outcome.summary()


def _observe_queue_wait(request: Any) -> None:
    """How long a task waited in its queue before a worker started it (first delivery only: a retry's wait
    includes its own countdown)."""
    sent_at = getattr(request, ENQUEUED_AT_HEADER, None)
    if sent_at is None or request.retries:
        return
    queue = (request.delivery_info or {}).get("routing_key") or "unknown"
    metrics.QUEUE_WAIT_SECONDS.labels(queue=queue).observe(max(0.0, time.time() - float(sent_at)))


@shared_task(bind=True, name=FINALIZE_TASK, max_retries=None)
def finalize_batch(self: Task, job_id: str) -> str:
    """Write the batch ZIP and mark the job done (no-op unless every item has ended)."""
    settings: Settings = self.app.settings
    _observe_queue_wait(self.request)
    store = job_store(settings)
    try:
        outcome = finalize_job(store, settings, job_id)
        if outcome in ("done", "already"):
            send_notice(self.app, store, job_id)
        return outcome
    except LockLostError:  # we stalled past the lock; whoever holds it now finishes the job
        log.warning("job %s: lost the finalize lock while writing the archive; leaving it to its holder", job_id)
        return "busy"
    except OSError as exc:  # disk full, storage hiccup: worth another try, then the job fails visibly
        if not store.exists(job_id):  # deleted while we wrote its archive: nothing to finish
            return "unknown"
        if self.request.retries >= settings.task_max_retries:
            store.finish_job(job_id, state="failed", error=f"could not write the results archive: {exc}")
            metrics.JOBS_TOTAL.labels(state="failed").inc()
            send_notice(self.app, store, job_id)
            return "failed"
        metrics.TASK_RETRIES_TOTAL.inc()
        raise self.retry(exc=exc, countdown=backoff_seconds(settings, self.request.retries)) from exc


@shared_task(bind=True, name=REZIP_TASK, max_retries=None)
def rezip_batch(self: Task, job_id: str) -> str:
    """Write a done batch's ZIP again after one of its items' results was replaced (``POST .../adopt``)."""
    settings: Settings = self.app.settings
    _observe_queue_wait(self.request)
    store = job_store(settings)
    try:
        outcome = rebuild_zip(store, settings, job_id)
    except (LockLostError, OSError) as exc:
        outcome, error = "busy", exc
    else:
        error = None
    if outcome != "busy":
        return outcome
    # Someone else is writing this job's archive, perhaps from before the replacement: write it again after.
    if self.request.retries >= settings.task_max_retries:
        log.warning("job %s: gave up writing the results archive again: %s", job_id, error or "lock held")
        return "gave-up"
    metrics.TASK_RETRIES_TOTAL.inc()
    raise self.retry(countdown=backoff_seconds(settings, self.request.retries))


def send_notice(app: Any, store: JobStore, job_id: str) -> bool:
    """Enqueue the job's callback if it has one to send (:func:`callbacks.claim_notice`)."""
    if not callbacks.claim_notice(store, job_id):
        return False
    settings: Settings = app.settings
    app.send_task(NOTIFY_TASK, args=[job_id], queue=finalize_queue(settings.worker_queue), headers=enqueue_headers())
    return True


@shared_task(bind=True, name=NOTIFY_TASK, max_retries=None)
def notify_job(self: Task, job_id: str) -> str:
    """POST the finished job's status to its callback URL; retried with backoff, then given up."""
    settings: Settings = self.app.settings
    store = job_store(settings)
    job = store.job_fields(job_id)
    if job is None or job.get("callback_state") != "pending" or job.get("state") not in ENDED:
        return "nothing"  # deleted, already delivered or given up, or not finished
    body = callbacks.notice_body(job, settings)
    headers = callbacks.notice_headers(body, job_id, settings)
    try:
        # No redirects: a receiver on an allowed host must not bounce the POST to one that is not.
        response = requests.post(
            job["callback"], data=body, headers=headers, timeout=settings.callback_timeout_s, allow_redirects=False
        )
        failure = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    except requests.RequestException as exc:
        failure = type(exc).__name__
    if failure is None:
        store.end_callback(job_id, "delivered")
        metrics.CALLBACKS_TOTAL.labels(outcome="delivered").inc()
        return "delivered"
    if self.request.retries + 1 >= settings.callback_max_attempts:
        store.end_callback(job_id, "gave_up")
        metrics.CALLBACKS_TOTAL.labels(outcome="gave_up").inc()
        log.warning("job %s: callback not delivered after %s attempts (%s)", job_id, self.request.retries + 1, failure)
        return "gave_up"
    metrics.CALLBACKS_TOTAL.labels(outcome="retried").inc()
    countdown = backoff_seconds(settings, self.request.retries)
    log.info("job %s: callback failed (%s); retry in %.1fs", job_id, failure, countdown)
    raise self.retry(countdown=countdown)
