"""The periodic sweeps that make the pipeline converge whatever was lost on the way.

- The lease watchdog (every ``lease_check_interval_s``): running items whose lease expired (their worker
  died or hung, see ``leases.py``) go back to queued and are sent again.
- A job whose items have all ended but that is not finalised (its finalize message was lost: worker killed
  between the last item and the send, Redis restarted) gets its finalize task sent again; the archive is
  written by a worker's task, never in this thread.
- A job with no progress for ``job_stale_after_s`` has its released (already sent once), open, unleased items
  that have no task waiting in any queue sent again (their messages were lost with an un-persisted second of
  Redis, or held by a worker that died before starting them); tasks are idempotent, so a duplicate costs
  nothing. Other jobs' work in the queues does not hold this back: each item's own message is looked for.
- Every unfinished job's window is topped up (workers/window.py): a worker that died between ending an image
  and sending the job's next one leaves a slot free, which no later image would otherwise refill.
- A batch taking files in several requests (``open``) that got none for ``open_job_idle_s`` is closed with
  what it has: its sender is gone, and its images still end up in a ZIP.
- An ended job whose callback is still pending gets its notice sent again (workers/callbacks.py).
- A done batch whose archive was marked out of date (an item's result replaced, ``adopt``) and not written
  again within ``REZIP_RESEND_S`` gets its ``rezip_batch`` task sent again.
- Jobs older than ``result_ttl_hours`` lose their files and Redis keys, and job folders that Redis no
  longer knows are removed once they are that old.

Both run in a thread of every worker's main process; a Redis lock lets one of them sweep per interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from matteflow import metrics
from matteflow.forksafe import fork_deferred
from matteflow.settings import Settings

from .callbacks import claim_notice
from .jobstore import ENDED, JobStore, chunked, make_redis
from .queues import (
    FINALIZE_TASK,
    NOTIFY_TASK,
    PROCESS_TASK,
    REZIP_TASK,
    enqueue_headers,
    finalize_queue,
    queue_for_job,
    waiting_items,
)
from .storage import TRASH_PREFIX, JobFiles, is_valid_job_id, remove_tree
from .window import release_tasks

log = logging.getLogger(__name__)

SendTask = Callable[[str, list[Any], Mapping[str, str]], object]  # (task name, args, the job's fields)

# A finalize message is sent again at most this often per job (it may sit behind other work in the queue).
FINALIZE_RESEND_S = 60.0
# Likewise a batch archive's rebuild, counted from when the archive was marked out of date.
REZIP_RESEND_S = 60.0


def requeue_expired_leases(settings: Settings, store: JobStore, send_task: SendTask) -> dict[str, list[int]]:
    """The watchdog: send again every running item whose lease expired. Returns {job id: items re-sent}."""
    requeued: dict[str, list[int]] = {}
    for job_id in store.open_jobs():
        items = store.requeue_expired(job_id)
        if not items:
            continue
        fields = store.job_fields(job_id) or {}
        for chunk in chunked(items, settings.task_chunk_size):
            send_task(PROCESS_TASK, [job_id, chunk], fields)
        requeued[job_id] = items
        metrics.RESENT_TOTAL.labels(reason="lease_expired").inc(len(items))
        log.warning("job %s items %s: lease expired (worker dead or hung): sent again", job_id, items)
    return requeued


@dataclass
class SweepReport:
    finalized: list[str] = field(default_factory=list)
    resent: dict[str, list[int]] = field(default_factory=dict)
    expired: list[str] = field(default_factory=list)
    orphans_removed: list[str] = field(default_factory=list)
    notified: list[str] = field(default_factory=list)
    rezipped: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)  # open batches idle past open_job_idle_s
    released: dict[str, list[int]] = field(default_factory=dict)  # items a job's window had room for


def reconcile_once(settings: Settings, store: JobStore, send_task: SendTask, now: float | None = None) -> SweepReport:
    """One sweep over open and expired jobs. ``send_task(name, args, job_fields)`` enqueues a task."""
    now = time.time() if now is None else now
    report = SweepReport()
    waiting: list[dict[str, set[int]]] = []

    def items_waiting(job_id: str) -> set[int]:
        """The job's items with a task in a queue (read from Redis once per sweep, when a job is stale)."""
        if not waiting:
            waiting.append(waiting_items(store.redis, settings.worker_queue))
        return waiting[0].get(job_id, set())

    for job_id in store.open_jobs():
        fields = store.job_fields(job_id)
        if fields is None or fields["state"] in ENDED:
            store.forget_open(job_id)
            continue
        if fields.get("open") == "1" and now - float(fields["updated_at"]) > settings.open_job_idle_s:
            # A batch whose sender stopped sending (and never closed it): closed with what it got, so its
            # images are not held back for ever; it finishes as any other batch.
            if store.close(job_id) == 0:
                send_task(FINALIZE_TASK, [job_id], fields)
            report.closed.append(job_id)
            log.warning(
                "job %s took no files for %.0fs: closed with %s", job_id, settings.open_job_idle_s, fields["total"]
            )
        elif fields.get("open") == "1" and int(fields["ended"]) >= int(fields["total"]):
            continue  # every item sent so far ended: it waits for its sender, not for a lost message
        elif int(fields["done"]) + int(fields["failed"]) >= int(fields["total"]):
            # Its finalize message was lost: send it again (once per FINALIZE_RESEND_S), a worker writes the ZIP.
            if store.try_lock(f"finalize-sent:{job_id}", FINALIZE_RESEND_S):
                send_task(FINALIZE_TASK, [job_id], fields)
                report.finalized.append(job_id)
                metrics.RESENT_TOTAL.labels(reason="finalize").inc()
        elif now - float(fields["updated_at"]) > settings.job_stale_after_s:
            busy = store.leased_items(job_id) | items_waiting(job_id)  # worked on, or its task is queued
            states = store.item_states(job_id).items()
            # Items past the window's cursor were never sent: the top-up below sends them, in turn.
            released = int(fields.get("released", fields["total"]))
            open_items = sorted(i for i, state in states if state not in ENDED and i not in busy and i < released)
            for chunk in chunked(open_items, settings.task_chunk_size):
                send_task(PROCESS_TASK, [job_id, chunk], fields)
            store.touch(job_id)
            if open_items:
                report.resent[job_id] = open_items
                metrics.RESENT_TOTAL.labels(reason="stalled").inc(len(open_items))
                log.warning(
                    "job %s made no progress for %.0fs: re-sent items %s",
                    job_id,
                    settings.job_stale_after_s,
                    open_items,
                )
        tasks = release_tasks(store, settings, job_id, fields)
        for task in tasks:
            send_task(PROCESS_TASK, [job_id, task], fields)
        if tasks:
            report.released[job_id] = [i for task in tasks for i in task]
    for job_id in store.pending_callbacks():
        # An ended job whose notice was never sent (a worker killed between finishing it and sending) or
        # whose notice was lost with its worker: sent again, once per NOTIFY_RESEND_S.
        fields = store.job_fields(job_id)
        if fields is None:
            store.end_callback(job_id, "gone")
        elif claim_notice(store, job_id):
            send_task(NOTIFY_TASK, [job_id], fields)
            report.notified.append(job_id)
    for job_id in store.stale_zips(marked_before=now - REZIP_RESEND_S):
        # Its rebuild message was lost (or is still waiting behind other work): sent again, once per window.
        fields = store.job_fields(job_id)
        if fields is None or fields["state"] != "done":
            store.forget_stale_zip(job_id)
        elif store.try_lock(f"rezip-sent:{job_id}", REZIP_RESEND_S):
            send_task(REZIP_TASK, [job_id], fields)
            report.rezipped.append(job_id)
            metrics.RESENT_TOTAL.labels(reason="rezip").inc()
    cutoff = now - settings.result_ttl_hours * 3600
    for job_id in store.jobs_created_before(cutoff):
        store.delete(job_id)
        if is_valid_job_id(job_id):
            JobFiles(settings.jobs_dir, job_id).remove()
        report.expired.append(job_id)
    report.orphans_removed = _remove_orphan_folders(settings, store, cutoff)
    if report.finalized or report.expired or report.orphans_removed:
        log.info(
            "reconciler: sent finalize for %s, expired %s, removed %s orphaned folders",
            report.finalized,
            report.expired,
            len(report.orphans_removed),
        )
    return report


def _remove_orphan_folders(settings: Settings, store: JobStore, cutoff: float) -> list[str]:
    """Job folders older than the TTL that Redis does not know (e.g. Redis lost its data) are garbage."""
    jobs_dir = settings.jobs_dir
    if not jobs_dir.is_dir():
        return []
    old: list[str] = []
    for path in jobs_dir.iterdir():
        if path.name.startswith(TRASH_PREFIX):  # a removal interrupted midway (the process died)
            remove_tree(path)
        elif path.is_dir() and is_valid_job_id(path.name) and path.stat().st_mtime < cutoff:
            old.append(path.name)
    orphans = sorted(set(old) - store.known(old))
    for job_id in orphans:
        JobFiles(jobs_dir, job_id).remove()
    return orphans


class ReconcilerThread(threading.Thread):
    """Runs the lease watchdog every ``settings.lease_check_interval_s`` and :func:`reconcile_once` every
    ``settings.reconcile_interval_s`` until :meth:`stop`."""

    def __init__(self, app: Any) -> None:
        super().__init__(name="matteflow-reconciler", daemon=True)
        self.app = app
        self.settings: Settings = app.settings
        self._stop_event = threading.Event()

    def _send(self, name: str, args: list[Any], job: Mapping[str, str]) -> object:
        base = self.settings.worker_queue
        if name in (FINALIZE_TASK, NOTIFY_TASK, REZIP_TASK):
            queue = finalize_queue(base)
        else:  # image tasks go back to their job's lane
            kind, total = job.get("kind", "batch"), int(job.get("total", 0))
            queue = queue_for_job(base, kind, total, self.settings.bulk_batch_from)
        return self.app.send_task(name, args=args, queue=queue, headers=enqueue_headers())

    def run(self) -> None:
        # The Celery main process may fork a pool process at any time: a fork waits for the unit of work in
        # progress to end (matteflow/forksafe.py), so no child inherits a lock this thread held. Between
        # units the thread only sleeps.
        with fork_deferred():
            store = JobStore(make_redis(self.settings))
        sweeps = [
            # (lock name, interval, what): one process across all workers runs each per interval; the lock
            # expires before the next one.
            ("watchdog", max(0.1, self.settings.lease_check_interval_s), requeue_expired_leases),
            ("reconcile", max(0.1, self.settings.reconcile_interval_s), reconcile_once),
        ]
        due = [time.monotonic() + interval for _, interval, _ in sweeps]
        while not self._stop_event.wait(max(0.0, min(due) - time.monotonic())):
            for n, (lock, interval, sweep) in enumerate(sweeps):
                if time.monotonic() < due[n]:
                    continue
                due[n] = time.monotonic() + interval
                with fork_deferred():
                    try:
                        if store.try_lock(lock, interval * 0.9):
                            sweep(self.settings, store, self._send)
                    except Exception:  # Redis down, disk trouble: log it and try again next interval
                        log.exception("%s sweep failed; retrying in %.0fs", lock, interval)

    def stop(self, timeout: float) -> None:
        self._stop_event.set()
        self.join(timeout)
