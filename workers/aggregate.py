"""Finalising a batch: once every item has ended, package the results as
``batch_results_<YYYYMMDDHHMMSS>.zip`` (results named as the uploads + ``manifest.json``) and mark the job
done. Safe to call any number of times from anywhere (the last item's task, the reconciler): a lock keeps
two callers from building at once and the job store marks the job finished exactly once.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from matteflow import metrics
from matteflow.core.options import parse_options
from matteflow.settings import Settings

from .jobstore import JobStore
from .storage import JobFiles

log = logging.getLogger(__name__)

FINALIZE_LOCK_S = 600.0


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


def write_results_zip(job: dict[str, Any], files: JobFiles, target: Path) -> dict[str, Any]:
    """Write the ZIP for ``job`` (as returned by :meth:`JobStore.get`) to ``target`` atomically and return
    its manifest."""
    options = parse_options(job["options"])
    extension = options.extension
    with_mask = options.mask
    names = UniqueNames()
    names.take("manifest.json")
    manifest_items = []
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".results.", suffix=".zip.tmp", dir=target.parent)
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
            manifest = {
                "job_id": job["id"],
                "created_at": job["created_at"],
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


def finalize_job(store: JobStore, settings: Settings, job_id: str) -> str:
    """Finish ``job_id`` if every item has ended. Returns what happened: ``done``, ``already``,
    ``not-ready``, ``busy`` (another process is finalising it) or ``unknown``."""
    job = store.get(job_id)
    if job is None:
        return "unknown"
    if job["state"] in ("done", "failed"):
        store.forget_open(job_id)
        return "already"
    if job["done"] + job["failed"] < job["total"]:
        return "not-ready"
    lock = f"finalize:{job_id}"
    if not store.try_lock(lock, FINALIZE_LOCK_S):
        return "busy"
    try:
        zip_name = ""
        if job["kind"] != "single":  # a one-image request (matte_one) needs no archive
            files = JobFiles(settings.jobs_dir, job_id)
            zip_name = zip_download_name(time.time())
            write_results_zip(job, files, files.zip_path(zip_name))
        changed = store.finish_job(job_id, zip_name)
        if changed == 1:
            metrics.JOBS_TOTAL.labels(state="done").inc()
            log.info("job %s done: %s of %s images, %s failed", job_id, job["done"], job["total"], job["failed"])
            return "done"
        if changed < 0 and zip_name:  # deleted meanwhile: do not leave an archive behind
            JobFiles(settings.jobs_dir, job_id).zip_path(zip_name).unlink(missing_ok=True)
        return "already" if changed == 0 else "unknown"
    finally:
        store.unlock(lock)
