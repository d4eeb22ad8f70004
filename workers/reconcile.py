"""The periodic sweep that makes the pipeline converge whatever was lost on the way.

- A job whose items have all ended but that is not finalised (its finalize message was lost: worker killed
  between the last item and the send, Redis restarted) is finalised here.
- A job with no progress for ``job_stale_after_s`` has its open items sent again (their messages may have
  been lost with an un-persisted second of Redis); tasks are idempotent, so a duplicate costs nothing.
- Jobs older than ``result_ttl_hours`` lose their files and Redis keys, and job folders that Redis no
  longer knows are removed once they are that old.

It runs in a thread of every worker's main process; a Redis lock lets one of them sweep per interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from matteflow.settings import Settings

from .aggregate import finalize_job
from .jobstore import ENDED, JobStore, chunked, make_redis
from .queues import PROCESS_TASK, broker_queue_length, enqueue_headers, queue_for_kind
from .storage import JobFiles, is_valid_job_id

log = logging.getLogger(__name__)

SendTask = Callable[[str, list[Any], str], object]  # (task name, args, job kind)


@dataclass
class SweepReport:
    finalized: list[str] = field(default_factory=list)
    resent: dict[str, list[int]] = field(default_factory=dict)
    expired: list[str] = field(default_factory=list)
    orphans_removed: list[str] = field(default_factory=list)


def reconcile_once(settings: Settings, store: JobStore, send_task: SendTask, now: float | None = None) -> SweepReport:
    """One sweep over open and expired jobs. ``send_task(name, args, kind)`` enqueues a task."""
    now = time.time() if now is None else now
    report = SweepReport()
    busy: list[bool] = []

    def queue_busy() -> bool:
        """Messages still waiting may be the stalled job's own: re-send only once the queue is empty
        (a lost message shows then), asking Redis once per sweep."""
        if not busy:
            busy.append(broker_queue_length(store.redis, settings.worker_queue) > 0)
        return busy[0]

    for job_id in store.open_jobs():
        fields = store.job_fields(job_id)
        if fields is None or fields["state"] in ENDED:
            store.forget_open(job_id)
            continue
        if int(fields["done"]) + int(fields["failed"]) >= int(fields["total"]):
            if finalize_job(store, settings, job_id) == "done":
                report.finalized.append(job_id)
        elif now - float(fields["updated_at"]) > settings.job_stale_after_s and not queue_busy():
            open_items = sorted(i for i, state in store.item_states(job_id).items() if state not in ENDED)
            for chunk in chunked(open_items, settings.task_chunk_size):
                send_task(PROCESS_TASK, [job_id, chunk], fields.get("kind", "batch"))
            store.touch(job_id)
            report.resent[job_id] = open_items
            log.warning(
                "job %s made no progress for %.0fs: re-sent items %s", job_id, settings.job_stale_after_s, open_items
            )
    cutoff = now - settings.result_ttl_hours * 3600
    for job_id in store.jobs_created_before(cutoff):
        store.delete(job_id)
        if is_valid_job_id(job_id):
            JobFiles(settings.jobs_dir, job_id).remove()
        report.expired.append(job_id)
    report.orphans_removed = _remove_orphan_folders(settings, store, cutoff)
    if report.finalized or report.expired or report.orphans_removed:
        log.info(
            "reconciler: finalised %s, expired %s, removed %s orphaned folders",
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
    old = [p.name for p in jobs_dir.iterdir() if p.is_dir() and is_valid_job_id(p.name) and p.stat().st_mtime < cutoff]
    orphans = sorted(set(old) - store.known(old))
    for job_id in orphans:
        JobFiles(jobs_dir, job_id).remove()
    return orphans


class ReconcilerThread(threading.Thread):
    """Runs :func:`reconcile_once` every ``settings.reconcile_interval_s`` until :meth:`stop`."""

    def __init__(self, app: Any) -> None:
        super().__init__(name="matteflow-reconciler", daemon=True)
        self.app = app
        self.settings: Settings = app.settings
        self._stop_event = threading.Event()

    def _send(self, name: str, args: list[Any], kind: str) -> object:
        queue = queue_for_kind(self.settings.worker_queue, kind)
        return self.app.send_task(name, args=args, queue=queue, headers=enqueue_headers())

    def run(self) -> None:
        store = JobStore(make_redis(self.settings))
        interval = max(0.1, self.settings.reconcile_interval_s)
        while not self._stop_event.wait(interval):
            try:
                # One sweeper per interval across all workers; the lock expires before the next one.
                if store.try_lock("reconcile", interval * 0.9):
                    reconcile_once(self.settings, store, self._send)
            except Exception:  # Redis down, disk trouble: log it and try again next interval
                log.exception("reconciler sweep failed; retrying in %.0fs", interval)

    def stop(self, timeout: float) -> None:
        self._stop_event.set()
        self.join(timeout)
