"""The job-submission side of the pipeline, used by the web layer and ``matteflow submit`` tests.

It stores uploads, records jobs in Redis and enqueues work *by task name*: it imports neither the tasks
nor torch/onnxruntime, so the web process stays small. See docs/internal-api.md for the contract.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import redis

from matteflow import metrics
from matteflow.core import errors as core_errors
from matteflow.core.errors import InputError, InvalidOptionError, MattingError
from matteflow.core.imageio import check_memory_budget, probe_image
from matteflow.core.options import MatteOptions, parse_options
from matteflow.fetch import ImageUrl
from matteflow.files import sanitize_name, write_atomic
from matteflow.settings import Settings

from . import heartbeat
from .app import MatteflowCelery, make_celery
from .jobstore import NOT_OPEN, UNKNOWN, JobStore, NewItem, make_redis
from .queues import (
    FINALIZE_TASK,
    REZIP_TASK,
    broker_queue_length,
    enqueue_headers,
    finalize_queue,
)
from .storage import JobFiles, is_valid_job_id
from .window import send_released

# An upload as the client takes it: the bytes, or a seekable binary stream (a request's spooled file part).
Upload = bytes | IO[bytes]


@dataclass(frozen=True)
class SingleResult:
    """A one-image request's result: the encoded image, its media type, the model that ran, its confidence
    (and the mask when asked for)."""

    image: bytes
    media_type: str
    model: str | None
    confidence: float | None
    mask: bytes | None = None  # the 8-bit alpha mask PNG when options.mask
    warnings: tuple[str, ...] = ()  # what the engine warned of (a crop with no subject, a shadow with no floor)


class JobRequestError(Exception):
    """Why a request about an existing job cannot be done: ``status`` (400 / 404 / 409), a stable ``code``."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.retry_after = status, code, retry_after


class AdoptError(JobRequestError):
    """Why one job's result cannot replace an item of another."""


# A batch sent in several requests (an open job): one request adds files at a time, holding this lock while it
# stores them (long enough for a request body of max_upload_mb to be copied to storage; it frees itself if
# the request's process dies). Another request meanwhile is asked to come back (409 + Retry-After).
ADD_FILES_LOCK_S = 300.0
ADD_FILES_RETRY_S = 2


class JobClient:
    """Create, inspect and remove jobs; one per process is enough (it is thread-safe)."""

    def __init__(self, settings: Settings, redis_client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.redis = redis_client if redis_client is not None else make_redis(settings)
        self.store = JobStore(self.redis)
        self._celery: MatteflowCelery | None = None
        self._health_redis: redis.Redis | None = None

    @property
    def celery(self) -> MatteflowCelery:
        if self._celery is None:
            self._celery = make_celery(self.settings)
        return self._celery

    def _files(self, job_id: str) -> JobFiles | None:
        return JobFiles(self.settings.jobs_dir, job_id) if is_valid_job_id(job_id) else None

    # -- submitting -------------------------------------------------------------------------------------

    def create_job(
        self,
        files: list[tuple[str, Upload | ImageUrl]],
        options: MatteOptions,
        *,
        kind: str = "batch",
        backdrop: Upload | None = None,
        callback: str = "",
        open_: bool = False,
    ) -> str:
        """Store the uploads, record the job and enqueue its good items; returns the job id.

        Each upload is bytes or a seekable binary stream (copied to storage through a bounded buffer, never
        read whole). A file that fails the header check becomes a failed item with its message (never enqueued).
        An :class:`~matteflow.fetch.ImageUrl` in a file's place (checked with ``check_image_urls``) is recorded
        with its URL and enqueued: the worker that takes it reads it first.
        ``backdrop`` is the background image every item is composited over (``options.background_image``);
        unlike an item, a bad one fails the whole request. ``callback`` is a URL already checked with
        :func:`callbacks.check_callback_url`, told when the job ends. An ``open_`` batch takes more files
        (:meth:`add_files`, maybe none at first) and ends only after :meth:`close_job`: a batch bigger than one
        request may carry. Raises InvalidOptionError for options that are not a MatteOptions or a background
        image missing or not asked for, the InputError of a bad background image, ValueError for no files
        (unless open) or more than ``max_files_per_job``.
        """
        if not isinstance(options, MatteOptions):
            raise InvalidOptionError("options must be parsed with matteflow.core.options.parse_options")
        self._check_backdrop(options, backdrop)
        if open_ and kind != "batch":
            raise ValueError("only a batch job takes files in several requests")
        if not files and not open_:
            raise ValueError("no files")
        if len(files) > self.settings.max_files_per_job:
            raise ValueError(f"too many files: {len(files)} (at most {self.settings.max_files_per_job} per job)")
        job_id = secrets.token_urlsafe(16)
        job_files = JobFiles(self.settings.jobs_dir, job_id)
        job_files.in_dir.mkdir(parents=True)
        job_files.out_dir.mkdir()
        try:
            if backdrop is not None:
                write_atomic(job_files.backdrop_path, backdrop)
            items = self._store_uploads(job_files, files, options, first=0)
            self.store.create(job_id, items, options.to_dict(), kind=kind, callback=callback, open_=open_)
        except BaseException:
            job_files.remove()  # nothing half-made stays behind
            raise
        # If the broker fails from here on, the job is recorded and the reconciler re-sends its items.
        self._enqueue(job_id, items, finalize_if_none=not open_)
        return job_id

    def _store_uploads(
        self, job_files: JobFiles, files: list[tuple[str, Upload | ImageUrl]], options: MatteOptions, first: int
    ) -> list[NewItem]:
        """Check each upload's header and copy the good ones to storage as items ``first``..; a bad one becomes
        a failed item with its message."""
        items: list[NewItem] = []
        for index, (name, data) in enumerate(files, start=first):
            safe = sanitize_name(name)
            stored = f"{index}_{safe}"
            if isinstance(data, ImageUrl):
                items.append(NewItem(safe, stored, url=data.url))
                continue
            try:
                info = probe_image(data, self.settings.max_pixels)
                check_memory_budget(info, options.max_side, self.settings.max_image_memory_mb)
            except InputError as exc:
                items.append(NewItem(safe, stored, str(exc), type(exc).__name__))
                continue
            if not isinstance(data, bytes):
                data.seek(0)
            write_atomic(job_files.input_path(index, stored), data, make_parents=False)  # never revive a deleted job
            items.append(NewItem(safe, stored))
        return items

    def _enqueue(self, job_id: str, items: list[NewItem], finalize_if_none: bool) -> None:
        """Send the job's tasks that its window allows (workers/window.py: a big batch goes a window at a time,
        workers send the rest as images end) to its lane; with ``finalize_if_none`` and no good item among
        ``items``, the finalize task instead (a batch of bad files only)."""
        good = sum(1 for item in items if not item.error)
        if good < len(items):
            metrics.ITEMS_TOTAL.labels(state="failed").inc(len(items) - good)
        with self.celery.producer_or_acquire() as producer:
            if not good and finalize_if_none:
                self.celery.send_task(
                    FINALIZE_TASK,
                    args=[job_id],
                    producer=producer,
                    queue=finalize_queue(self.settings.worker_queue),
                    headers=enqueue_headers(),
                )
            else:
                send_released(self.celery, self.store, self.settings, job_id, producer)

    def add_files(self, job_id: str, files: list[tuple[str, Upload | ImageUrl]]) -> dict[str, int]:
        """Add uploads to an open batch (created with ``open_``) as its next items, and enqueue them: the
        images start while the rest of the batch is still on its way. Returns ``first`` (the index of the
        first added item), ``added`` and ``total``. Raises :class:`JobRequestError`: 404 unknown job, 409 a
        job that takes no more files (``job_closed``) or another request adding files to it right now
        (``job_busy``, with a ``retry_after``), 400 over ``max_files_per_job`` (``too_many_files``)."""
        fields = self.store.job_fields(job_id) if is_valid_job_id(job_id) else None
        if fields is None:
            raise JobRequestError(
                404, "job_not_found", f"no job with id {job_id!r} (it may have expired or been deleted)"
            )
        if fields.get("open") != "1":
            raise _not_open(job_id)
        lock = f"add-files:{job_id}"
        token = self.store.try_lock(lock, ADD_FILES_LOCK_S)
        if token is None:
            raise JobRequestError(
                409, "job_busy", "another request is adding files to this job: send again shortly", ADD_FILES_RETRY_S
            )
        try:
            fields = self.store.job_fields(job_id)  # read again under the lock: the total this request builds on
            if fields is None:
                raise JobRequestError(404, "job_not_found", f"job {job_id!r} was deleted meanwhile")
            if fields.get("open") != "1":
                raise _not_open(job_id)
            first, limit = int(fields["total"]), self.settings.max_files_per_job
            if first + len(files) > limit:
                raise JobRequestError(
                    400,
                    "too_many_files",
                    f"the job holds {first} files; {len(files)} more would pass the limit of {limit} per job "
                    "(MATTEFLOW_MAX_FILES_PER_JOB): close this job and send the rest as another",
                )
            options = parse_options(json.loads(fields["options"]))
            job_files = JobFiles(self.settings.jobs_dir, job_id)
            try:
                items = self._store_uploads(job_files, files, options, first)
                total = self.store.add_items(job_id, first, items, limit)
            except FileNotFoundError:  # its folder went with a DELETE while the files were being stored
                raise JobRequestError(404, "job_not_found", f"job {job_id!r} was deleted meanwhile") from None
            except BaseException:
                job_files.remove_inputs(range(first, first + len(files)))
                raise
            if total < 0:
                job_files.remove_inputs(range(first, first + len(files)))
                if total == NOT_OPEN:
                    raise _not_open(job_id)
                if total == UNKNOWN:
                    raise JobRequestError(404, "job_not_found", f"job {job_id!r} was deleted meanwhile")
                # MOVED or OVER_LIMIT: the lock lapsed under a very slow request and another one added files.
                raise JobRequestError(
                    409, "job_busy", "another request added files meanwhile: send again", ADD_FILES_RETRY_S
                )
        finally:
            self.store.unlock(lock, token)
        self._enqueue(job_id, items, finalize_if_none=False)
        return {"first": first, "added": len(items), "total": total}

    def close_job(self, job_id: str) -> bool:
        """An open batch takes no more files: it ends once its items have (finalised at once if they all
        have). True when this call closed it, False when it was not taking files (closing twice is harmless).
        Raises :class:`JobRequestError` 404 for an unknown job."""
        remaining = self.store.close(job_id) if is_valid_job_id(job_id) else UNKNOWN
        if remaining == UNKNOWN:
            raise JobRequestError(
                404, "job_not_found", f"no job with id {job_id!r} (it may have expired or been deleted)"
            )
        if remaining == 0:
            self.celery.send_task(
                FINALIZE_TASK,
                args=[job_id],
                queue=finalize_queue(self.settings.worker_queue),
                headers=enqueue_headers(),
            )
        return remaining != NOT_OPEN

    def _check_backdrop(self, options: MatteOptions, backdrop: Upload | None) -> None:
        """A background image is there exactly when the options ask for one, and its header is sound."""
        if options.background_image and backdrop is None:
            raise InvalidOptionError(
                "background_image needs the image: send it as a file in the multipart field 'background_image'"
            )
        if backdrop is None:
            return
        if not options.background_image:
            raise InvalidOptionError("a background image was sent but background_image is off")
        try:
            info = probe_image(backdrop, self.settings.max_pixels)
            check_memory_budget(info, None, self.settings.max_image_memory_mb)
        except InputError as exc:
            raise type(exc)(f"the background image: {exc}") from None
        if not isinstance(backdrop, bytes):
            backdrop.seek(0)

    def backdrop_file(self, job_id: str) -> Path | None:
        """The stored background image of ``job_id``, if it has one."""
        files = self._files(job_id)
        path = files.backdrop_path if files is not None else None
        return path if path is not None and path.is_file() else None

    def matte_one(self, data: Upload, name: str, options: MatteOptions, timeout: float) -> tuple[bytes, str]:
        """Run one image (bytes or a seekable binary stream) through the queue and wait for it: (image bytes,
        media type). See matte_one_result."""
        single = self.matte_one_result(data, name, options, timeout)
        return single.image, single.media_type

    def matte_one_result(
        self, data: Upload, name: str, options: MatteOptions, timeout: float, backdrop: Upload | None = None
    ) -> SingleResult:
        """Run one image (bytes or a seekable binary stream) through the queue and wait for it: the image, its
        media type, the model that ran and the result's confidence.

        Raises the core InputError subclass for bad input, TimeoutError when no worker answered in time,
        MattingError when the worker could not process it.
        """
        # Empty, non-image, pixel-bomb and over-budget uploads are answered at once, before anything is stored.
        info = probe_image(data, self.settings.max_pixels)
        check_memory_budget(info, options.max_side, self.settings.max_image_memory_mb)
        job_id = self.create_job([(name, data)], options, kind="single", backdrop=backdrop)
        try:
            deadline = time.monotonic() + timeout
            while (state := self.store.item_state(job_id, 0)) not in ("done", "failed"):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no worker finished the image within {timeout:g}s")
                self.store.wait_event(job_id, remaining)
            if state == "failed":
                error_type, message = self.store.item_error(job_id, 0)
                raise _error_class(error_type)(message)
            found = self.item_result(job_id, 0)
            if found is None:
                raise MattingError("the result vanished from storage")
            model, confidence, warnings = self.store.item_result_info(job_id, 0)
            mask = self.mask_result(job_id, 0) if options.mask else None
            mask_bytes = mask.read_bytes() if mask is not None else None
            return SingleResult(found[0].read_bytes(), found[1], model, confidence, mask_bytes, tuple(warnings))
        finally:
            self.delete_job(job_id)

    # -- reading ----------------------------------------------------------------------------------------

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        """The job's state and items (see docs/internal-api.md), None for an unknown id."""
        if not is_valid_job_id(job_id):
            return None
        return self.store.get(job_id)

    def get_item(self, job_id: str, index: int) -> dict[str, Any] | None:
        """One item (index, name, state, error) with its job's ``total`` and ``options``; None for an unknown
        job. Cheap: it does not read the job's other items."""
        if not is_valid_job_id(job_id):
            return None
        return self.store.get_item(job_id, index)

    def item_result(self, job_id: str, index: int) -> tuple[Path, str] | None:
        """(path, media type) of a done item's result image, else None."""
        files = self._files(job_id)
        if files is None or self.store.item_state(job_id, index) != "done":
            return None
        job = self.store.job_fields(job_id)
        if job is None:
            return None
        options = parse_options(json.loads(job["options"]))
        path = files.result_path(index, options.extension)
        return (path, options.media_type) if path.is_file() else None

    def input_file(self, job_id: str, index: int) -> Path | None:
        """The stored upload of item ``index`` (None when it failed intake and was never stored)."""
        files = self._files(job_id)
        stored = self.store.stored_name(job_id, index) if files else None
        if files is None or stored is None:
            return None
        path = files.input_path(index, stored)
        return path if path.is_file() else None

    def mask_result(self, job_id: str, index: int) -> Path | None:
        files = self._files(job_id)
        if files is None or self.store.item_state(job_id, index) != "done":
            return None
        path = files.mask_path(index)
        return path if path.is_file() else None

    def results_zip(self, job_id: str) -> tuple[Path, str] | None:
        """(path, download name) of a finished batch's ZIP, else None."""
        files = self._files(job_id)
        job = self.store.job_fields(job_id) if files else None
        if files is None or job is None or job["state"] != "done" or not job.get("zip"):
            return None
        path = files.zip_path(job["zip"])
        return (path, job["zip"]) if path.is_file() else None

    def adopt_result(self, job_id: str, index: int, from_job: str, from_item: int = 0) -> dict[str, Any]:
        """Make item ``from_item`` of job ``from_job`` (typically a re-run of this one photo with the other
        model) the result of item ``index`` of the finished batch ``job_id``, and have its ZIP written again.

        Both must be done, with results of the same format (and a mask where the batch has masks). The files
        are copied (each job keeps its own, and expires on its own); the item takes the other result's model
        and confidence. The batch's ZIP is rebuilt by a worker shortly after (``rezip_batch``); until then the
        old one is served. Raises :class:`AdoptError`. Returns the item's new ``model`` and ``confidence``.
        """
        target = self._done_item(job_id, index, "job")
        source = self._done_item(from_job, from_item, "from_job")
        if target["kind"] == "single":
            raise AdoptError(409, "no_zip", "a single-image job has no batch ZIP to put a result into")
        want, have = parse_options(target["options"]), parse_options(source["options"])
        if want.extension != have.extension or (want.mask and not have.mask):
            raise AdoptError(
                409,
                "incompatible_result",
                f"the result is {have.extension}{' with a mask' if have.mask else ''}; this batch needs "
                f"{want.extension}{' with a mask' if want.mask else ''} (re-run it with the batch's options)",
            )
        into, out_of = JobFiles(self.settings.jobs_dir, job_id), JobFiles(self.settings.jobs_dir, from_job)
        copies = [(out_of.result_path(from_item, have.extension), into.result_path(index, want.extension))]
        if want.mask:
            copies.append((out_of.mask_path(from_item), into.mask_path(index)))
        try:
            for source_path, target_path in copies:
                with source_path.open("rb") as stream:
                    # Never recreates a deleted job's folder: the write fails instead.
                    write_atomic(target_path, stream, make_parents=False)
        except FileNotFoundError:
            raise AdoptError(404, "job_not_found", "one of the two jobs was deleted meanwhile") from None
        item = source["items"][from_item]
        model, confidence = item.get("model"), item.get("confidence")
        if model is not None and confidence is not None:
            self.store.record_result(job_id, index, model, confidence, item.get("warnings") or ())
        if not self.store.mark_zip_stale(job_id):  # deleted meanwhile
            raise AdoptError(404, "job_not_found", "the batch was deleted meanwhile")
        self.celery.send_task(
            REZIP_TASK, args=[job_id], queue=finalize_queue(self.settings.worker_queue), headers=enqueue_headers()
        )
        return {"model": model, "confidence": confidence}

    def _done_item(self, job_id: str, index: int, field: str) -> dict[str, Any]:
        """The finished job ``job_id`` whose item ``index`` is done, else :class:`AdoptError`."""
        job = self.get_job(job_id)
        if job is None:
            raise AdoptError(404, "job_not_found", f"{field}: no job with id {job_id!r} (expired or deleted?)")
        if not 0 <= index < job["total"]:
            raise AdoptError(404, "item_not_found", f"{field}: job {job_id!r} has no item {index}")
        if job["state"] != "done":
            raise AdoptError(409, "not_ready", f"{field}: job {job_id!r} is {job['state']}, not done")
        if job["items"][index]["state"] != "done":
            raise AdoptError(409, "item_failed", f"{field}: item {index} of job {job_id!r} has no result")
        return job

    def delete_job(self, job_id: str) -> bool:
        """Remove the job's records and files; queued tasks of it then do nothing. True if it existed."""
        files = self._files(job_id)
        if files is None:
            return False
        existed = self.store.delete(job_id)
        return files.remove() or existed

    # -- health -----------------------------------------------------------------------------------------

    def redis_ok(self) -> bool:
        if self._health_redis is None:
            self._health_redis = make_redis(self.settings, fast_fail=True)
        try:
            return bool(self._health_redis.ping())
        except redis.RedisError:
            return False

    def workers_alive(self, timeout: float = 1.0) -> int:
        """How many workers published a heartbeat lately (``workers/heartbeat.py``): one Redis round trip,
        no broadcast ping. ``timeout`` bounds that round trip (kept for callers of the ping version)."""
        if self._health_redis is None:
            self._health_redis = make_redis(self.settings, fast_fail=True)
        return heartbeat.count_alive(self._health_redis)

    def queue_length(self) -> int:
        """Tasks waiting in the deployment's queues (not counting those a worker already holds)."""
        return broker_queue_length(self.redis, self.settings.worker_queue)


def _not_open(job_id: str) -> JobRequestError:
    return JobRequestError(
        409,
        "job_closed",
        f"job {job_id!r} takes no more files (it was closed, or created without open=true): send them as a new job",
    )


def _error_class(name: str) -> type[MattingError]:
    """The core error class a worker recorded by name (only MattingError subclasses are trusted)."""
    found = getattr(core_errors, name, None)
    if isinstance(found, type) and issubclass(found, MattingError):
        return found
    return MattingError
