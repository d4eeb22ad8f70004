"""Finalising a batch: once every item has ended, package the results as
``batch_results_<YYYYMMDDHHMMSS>.zip`` (results named as the uploads + ``manifest.json``) and mark the job
done. Safe to call any number of times from anywhere (the last item's task, the reconciler): a lock keeps
two callers from building at once and the job store marks the job finished exactly once.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from matteflow import metrics
from matteflow.core.options import parse_options
from matteflow.files import temp_file_beside
from matteflow.settings import Settings

from .jobstore import JobStore
from .storage import JobFiles

log = logging.getLogger(__name__)

# The finalize lock lasts this long and is extended while the ZIP is written, so a slow archive (thousands of
# large results, a slow volume) keeps it, and a dead finaliser's lock lapses soon.
FINALIZE_LOCK_S = 120.0


def iso_time(when: float | None) -> str | None:
    """A Unix time as ISO 8601 in UTC with seconds (``2026-12-02T04:32:11Z``); None stays None."""
    if when is None:
        return None
    return datetime.fromtimestamp(when, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def zip_download_name(when: float) -> str:
    stamp = datetime.fromtimestamp(when, tz=timezone.utc).strftime("%Y%m%d%H%M%S")
    return f"batch_results_{stamp}.zip"


class UniqueNames:
    """Hands out ZIP member names, adding ``_2``, ``_3``... to the stem when a name was already taken
    (two uploads called ``photo.jpg`` become ``photo.png`` and ``photo_2.png``)."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def take(self, wanted: str) -> str:
        path = PurePosixPath(wanted)
        name, n = wanted, 1
        while name.lower() in self._taken:
            n += 1
            name = f"{path.stem}_{n}{path.suffix}"
        self._taken.add(name.lower())
        return name


def write_results_zip(
    job: dict[str, Any], files: JobFiles, target: Path, keepalive: Callable[[], None] = lambda: None
) -> dict[str, Any]:
    """Write the ZIP for ``job`` (as returned by :meth:`JobStore.get`) to ``target`` atomically and return
    its manifest. ``keepalive()`` is called after each item (the caller extends its lock there)."""
    options = parse_options(job["options"])
    extension = options.extension
    with_mask = options.mask
    names = UniqueNames()
    names.take("manifest.json")
    manifest_items = []
    # The job's folder exists since intake; if it is gone the job was deleted: fail, never recreate it.
    fd, tmp = temp_file_beside(target, ".zip.tmp")
    os.close(fd)
    try:
        # Images are already compressed: storing them is as small and far faster than deflating.
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for item in job["items"]:
                entry = {k: item.get(k) for k in ("index", "name", "state", "error", "model", "confidence")}
                entry["result"] = entry["mask"] = None
                stem = PurePosixPath(item["name"]).stem or f"image_{item['index']}"
                if item["state"] == "done":
                    source = files.result_path(item["index"], extension)
                    if source.is_file():
                        entry["result"] = names.take(f"{stem}.{extension}")
                        archive.write(source, entry["result"])
                        stem = PurePosixPath(entry["result"]).stem  # the mask follows its result's name
                    else:
                        entry["error"] = "result file missing from storage"
                    mask = files.mask_path(item["index"])
                    if with_mask and mask.is_file():
                        entry["mask"] = names.take(f"{stem}_mask.png")
                        archive.write(mask, entry["mask"])
                manifest_items.append(entry)
                keepalive()
            manifest = {
                "job_id": job["id"],
                "created_at": iso_time(job["created_at"]),
                "total": job["total"],
                "done": job["done"],
                "failed": job["failed"],
                "options": job["options"],
                "items": manifest_items,
            }
            archive.writestr("manifest.json", json.dumps(manifest, indent=2), compress_type=zipfile.ZIP_DEFLATED)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return manifest


class _LockKeeper:
    """Extends a lock at most every few seconds while long work runs under it."""

    def __init__(self, store: JobStore, name: str, token: str) -> None:
        self.store, self.name, self.token = store, name, token
        self.next_at = time.monotonic() + FINALIZE_LOCK_S / 4

    def __call__(self) -> None:
        if time.monotonic() >= self.next_at:
            if not self.store.extend_lock(self.name, self.token, FINALIZE_LOCK_S):
                raise LockLostError(f"lost the lock {self.name!r} while holding it")
            self.next_at = time.monotonic() + FINALIZE_LOCK_S / 4


class LockLostError(RuntimeError):
    """The lock expired under us (the process stalled longer than the lock): stop, another may go on."""


@contextmanager
def _archive_lock(store: JobStore, job_id: str) -> Iterator[_LockKeeper | None]:
    """The job's archive lock, shared by finalising and rebuilding: yields the keeper that extends it while an
    archive is written, or None when another process holds it; released on the way out."""
    lock = f"finalize:{job_id}"
    token = store.try_lock(lock, FINALIZE_LOCK_S)
    if token is None:
        yield None
        return
    try:
        yield _LockKeeper(store, lock, token)
    finally:
        store.unlock(lock, token)


def finalize_job(store: JobStore, settings: Settings, job_id: str) -> str:
    """Finish ``job_id`` if every item has ended. Returns what happened: ``done``, ``already``,
    ``not-ready``, ``busy`` (another process is finalising it) or ``unknown``."""
    fields = store.job_fields(job_id)
    if fields is None:
        return "unknown"
    if fields["state"] in ("done", "failed"):
        store.forget_open(job_id)
        return "already"
    if int(fields["done"]) + int(fields["failed"]) < int(fields["total"]) or fields.get("open") == "1":
        return "not-ready"  # items still open, or a batch still taking files
    with _archive_lock(store, job_id) as keeper:
        if keeper is None:
            return "busy"
        # Read again under the lock: a finaliser whose lock we now hold may have finished the job meanwhile.
        job = store.get(job_id)
        if job is None:
            return "unknown"
        if job["state"] in ("done", "failed"):
            store.forget_open(job_id)
            return "already"
        zip_name = ""
        files = JobFiles(settings.jobs_dir, job_id)
        if job["kind"] != "single":  # a one-image request (matte_one) needs no archive
            zip_name = zip_download_name(time.time())
            write_results_zip(job, files, files.zip_path(zip_name), keepalive=keeper)
        changed = store.finish_job(job_id, zip_name)
        if changed == 1:
            metrics.JOBS_TOTAL.labels(state="done").inc()
            log.info("job %s done: %s of %s images, %s failed", job_id, job["done"], job["total"], job["failed"])
            return "done"
        if zip_name and (changed < 0 or (store.job_fields(job_id) or {}).get("zip") != zip_name):
            # Deleted meanwhile, or someone else's archive is the recorded one: leave no second ZIP behind.
            files.zip_path(zip_name).unlink(missing_ok=True)
        return "already" if changed == 0 else "unknown"


def rebuild_zip(store: JobStore, settings: Settings, job_id: str) -> str:
    """Write a done batch's ZIP again and point the job at it: one of its items' results was replaced since
    (:meth:`workers.client.JobClient.adopt_result`). Returns ``rebuilt``, ``busy`` (another process holds the
    job's archive lock: try again later), ``not-done`` (a single-image job, or not finished: finalising
    writes the archive anyway) or ``unknown`` (deleted)."""
    with _archive_lock(store, job_id) as keeper:
        if keeper is None:
            return "busy"
        # The mark first, then the job: a replacement marked after this read is written by its own rebuild.
        stale_since = store.zip_stale_since(job_id)
        job = store.get(job_id)
        if job is None:
            store.forget_stale_zip(job_id)
            return "unknown"
        if job["state"] != "done" or job["kind"] == "single":
            return "not-done"
        files = JobFiles(settings.jobs_dir, job_id)
        zip_name = zip_download_name(time.time())
        write_results_zip(job, files, files.zip_path(zip_name), keepalive=keeper)
        old = store.replace_zip(job_id, zip_name, stale_since)
        if old is None:  # deleted meanwhile: leave nothing behind
            files.zip_path(zip_name).unlink(missing_ok=True)
            return "unknown"
        if old and old != zip_name:  # a download already reading the old archive keeps its open file
            files.zip_path(old).unlink(missing_ok=True)
        log.info("job %s: results archive written again (%s)", job_id, zip_name)
        return "rebuilt"
