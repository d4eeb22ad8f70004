"""A big batch reaches its queue a window at a time, so that big batches share the workers.

Why: a lane is one first-come-first-served Redis list. With every image of a 10,000-photo batch sent at once,
a second big batch sent a minute later waited behind all 10,000, and a third behind both. Now each job in
the bulk lane keeps at most ``Settings.bulk_window`` tasks in the queue or running (its window); whenever one
of its images ends, the worker that ended it sends the job's next one. Two big batches then alternate in the
list, each getting about half of the workers, and a new one starts within one window of each running job.
A lone big batch still has every worker, as long as the window is bigger than the workers can hold at once
(the default is 64 tasks; ``0`` sends everything at once, first come, first served).

Batches under ``Settings.bulk_batch_from`` images (the batch lane) and one-image requests are sent whole:
they are short, and the bulk lane already waits for them.

Exactly once still holds: :meth:`JobStore.release` hands out each item once, atomically, and a release whose
sender died before sending leaves items that are released but have no message: the reconciler's stale-job
sweep re-sends those as it does lost messages, and tops up every unfinished job's window each sweep.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from matteflow.settings import Settings

from .jobstore import ENDED, JobStore, chunked
from .queues import BULK, PROCESS_TASK, enqueue_headers, lane_for_job, queue_for_job


def window_items(settings: Settings, kind: str, total: int) -> int:
    """How many of a job's items may be released and not ended at once: 0 (no limit) outside the bulk lane."""
    if settings.bulk_window <= 0 or lane_for_job(kind, total, settings.bulk_batch_from) != BULK:
        return 0
    return settings.bulk_window * settings.task_chunk_size


def release_tasks(store: JobStore, settings: Settings, job_id: str, job: Mapping[str, str]) -> list[list[int]]:
    """Claim the job's next items within its window (``job``: its fields as read, for its kind and total)
    and return them as the index lists of the tasks to send to its lane."""
    window = window_items(settings, job.get("kind", "batch"), int(job.get("total", 0)))
    step = settings.task_chunk_size
    return chunked(store.release(job_id, window, step), step)


def send_released(app: Any, store: JobStore, settings: Settings, job_id: str, producer: Any = None) -> int:
    """Release what the job's window allows now and send those tasks to its lane; returns how many tasks.
    Called when a job gets items (creation, a part of an open batch) and by a worker after it ended some."""
    job = store.job_fields(job_id)
    if job is None or job.get("state") in ENDED:  # deleted or finished meanwhile
        return 0
    queue = queue_for_job(settings.worker_queue, job.get("kind", "batch"), int(job["total"]), settings.bulk_batch_from)
    tasks = release_tasks(store, settings, job_id, job)
    for task in tasks:
        app.send_task(PROCESS_TASK, args=[job_id, task], producer=producer, queue=queue, headers=enqueue_headers())
    return len(tasks)
