"""What a worker does with a chunk of one job's items, kept apart from Celery so it can be reasoned about
(and tested) on its own: the task in ``tasks.py`` only turns its outcome into a retry or a return value.

Exactly-once, item by item:
- ``start_item`` refuses an item that already ended, or whose lease another live task holds, so a redelivered
  or duplicated task returns at once; the items it starts are leased to this task and renewed by the
  process's heartbeat (``leases.py``) while it works, so a dead or hung worker's items come back;
- a result already on disk (written atomically before a crash, but not yet marked) is marked done without
  running the network again: the checkpoint;
- every start counts an attempt, so an item whose task keeps killing its worker (or timing out) ends
  ``failed`` after ``task_max_retries + 1`` attempts instead of looping forever (dead letter);
- bad input (core ``InputError``) fails the item with its message at once; anything else (a storage fault
  such as a missing input file included) is transient and the caller retries the still-open items.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from matteflow import metrics
from matteflow.core.errors import InputError, MattingError
from matteflow.core.imageio import decode_image
from matteflow.core.options import MatteOptions, parse_options
from matteflow.fetch import FetchRefused, ImageFetchError, fetch_image
from matteflow.files import write_atomic
from matteflow.settings import Settings

from .jobstore import JobStore
from .leases import LeaseKeeper
from .storage import JobFiles

if TYPE_CHECKING:
    import numpy as np

    from matteflow.core.engine import MatteEngine, MatteResult

log = logging.getLogger(__name__)


@dataclass
class ChunkOutcome:
    """What happened to each index of a chunk. ``retry`` holds the items to try again later;
    ``last_item_ended`` is True when this call ended the job's last open item (so finalise it)."""

    done: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)
    last_item_ended: bool = False
    error: str = ""

    def summary(self) -> dict[str, object]:
        return {"done": self.done, "failed": self.failed, "skipped": self.skipped, "retry": self.retry}


def _has_checkpoint(files: JobFiles, index: int, options: MatteOptions) -> bool:
    if not files.result_path(index, options.extension).is_file():
        return False
    return not options.mask or files.mask_path(index).is_file()


class ChunkRunner:
    """Runs one chunk of items of one job against the job store and the job's files."""

    def __init__(
        self,
        store: JobStore,
        settings: Settings,
        engine: Callable[[], MatteEngine],
        job_id: str,
        owner: str | None = None,
        keeper: LeaseKeeper | None = None,
        holder: str = "",
    ) -> None:
        self.store = store
        self.settings = settings
        self.engine = engine
        self.job_id = job_id
        # The lease owner: the Celery task id (kept across its retries and redeliveries), else a fresh token.
        self.owner = owner or secrets.token_hex(8)
        self.keeper = keeper
        self.holder = holder or f"{socket.gethostname()}/{os.getpid()}"
        self.outcome = ChunkOutcome()
        self.max_attempts = settings.task_max_retries + 1

    def _end(self, index: int, state: str, error: str = "", error_type: str = "") -> None:
        self._count_end(index, state, self.store.end_item(self.job_id, index, state, error, error_type))

    def _count_end(self, index: int, state: str, remaining: int) -> None:
        """Account for an item's end as ``end_item`` answered it (``remaining``: items still open, or < 0)."""
        if remaining < 0:  # a duplicate delivery ended it first: nothing to count
            self.outcome.skipped.append(index)
            return
        (self.outcome.done if state == "done" else self.outcome.failed).append(index)
        metrics.ITEMS_TOTAL.labels(state=state).inc()
        if remaining == 0:
            self.outcome.last_item_ended = True

    def run(self, indices: list[int]) -> ChunkOutcome:
        fields = self.store.job_fields(self.job_id)
        if fields is None:  # deleted (or expired) while queued
            self.outcome.skipped.extend(indices)
            return self.outcome
        options = parse_options(json.loads(fields["options"]))
        files = JobFiles(self.settings.jobs_dir, self.job_id)
        todo: list[tuple[int, int]] = []  # (index, attempt)
        # One round trip for the chunk's starts (and one for its stored names): a GPU worker's chunk is 16
        # images or more, and its Redis may be a network hop away (bench/chunk_bench.py).
        attempts = self.store.start_items(self.job_id, indices, self.owner, self.settings.item_lease_s, self.holder)
        for index, attempt in zip(indices, attempts, strict=True):
            if attempt < 0:
                self.outcome.skipped.append(index)
            elif _has_checkpoint(files, index, options):
                log.info("job %s item %s: result already written, marking done", self.job_id, index)
                self._end(index, "done")
            elif attempt > self.max_attempts:
                self._end(
                    index,
                    "failed",
                    f"gave up after {attempt - 1} attempts: the worker died or timed out on this image each time",
                    "MattingError",
                )
            else:
                todo.append((index, attempt))
        if todo:
            # Leases are renewed from here on: reading an input may mean fetching it from its URL first.
            held = self.keeper.holding(self.job_id, self.owner, [i for i, _ in todo]) if self.keeper else None
            with held or contextlib.nullcontext():
                names = self.store.stored_names(self.job_id, [i for i, _ in todo])
                pending = [
                    (i, a, data)
                    for (i, a), stored in zip(todo, names, strict=True)
                    if (data := self._read_input(files, i, a, stored)) is not None
                ]
                if pending:
                    self._process(files, options, pending)
        return self.outcome

    def _backdrop(self, files: JobFiles) -> np.ndarray:
        """The job's background image, decoded (upright RGB), for every item of this chunk."""
        return decode_image(files.backdrop_path.read_bytes(), self.settings.max_pixels).rgb

    def _read_input(self, files: JobFiles, index: int, attempt: int, stored: str | None) -> bytes | None:
        try:
            if not stored:
                raise FileNotFoundError(f"no stored name recorded for item {index}")
            path = files.input_path(index, stored)
            if not path.exists() and (url := self.store.item_url(self.job_id, index)):
                return self._fetch_input(path, url, index, attempt)
            return path.read_bytes()
        except OSError as exc:
            # A storage fault (a network volume remounting, a file not yet visible), not the client's bad
            # image: retried, and dead-lettered with the reason if it persists. A deleted job is left alone.
            reason = exc.strerror or type(exc).__name__  # never the storage path: the client reads this
            if self.store.exists(self.job_id):
                self._transient(index, attempt, OSError(f"the uploaded file cannot be read from storage ({reason})"))
            else:
                self.outcome.skipped.append(index)
            return None

    def _fetch_input(self, path: Path, url: str, index: int, attempt: int) -> bytes | None:
        """Read an item named by URL and store it as its upload (what a rerun and ``?input=1`` then serve).
        A refusal or a permanent answer (404, too large) fails the item; a transient one (timeout, 5xx) is
        retried like any other. OSError (storing it) is the caller's: a storage fault."""
        try:
            _, body = fetch_image(url, self.settings, spool_dir=path.parent)
        except ImageFetchError as exc:
            if exc.transient:
                self._transient(index, attempt, exc)
            else:
                self._end(index, "failed", str(exc), type(exc).__name__)
            return None
        except FetchRefused as exc:
            self._end(index, "failed", str(exc), type(exc).__name__)
            return None
        with body:
            data = body.read()
        write_atomic(path, data, make_parents=False)  # a missing folder: the job was deleted meanwhile
        return data

    def _process(self, files: JobFiles, options: MatteOptions, pending: list[tuple[int, int, bytes]]) -> None:
        started = time.perf_counter()
        try:
            backdrop = self._backdrop(files) if options.background_image else None
        except InputError as exc:  # stored, but not decodable (a truncated body passes the header check)
            for index, _, _ in pending:
                self._end(index, "failed", f"the background image: {exc}", type(exc).__name__)
            return
        except OSError as exc:  # a storage fault: worth another attempt, as for an item's own upload
            for index, attempt, _ in pending:
                reason = exc.strerror or type(exc).__name__
                self._transient(index, attempt, OSError(f"the background image cannot be read from storage ({reason})"))
            return
        try:
            results: list[MatteResult | MattingError] = self.engine().process_many(
                [data for _, _, data in pending], options, backdrop
            )
        except Exception as exc:  # the retry boundary: whatever broke, the items are retried or dead-lettered
            log.warning("job %s items %s: %r", self.job_id, [i for i, _, _ in pending], exc)
            for index, attempt, _ in pending:
                self._transient(index, attempt, exc)
            return
        per_item = (time.perf_counter() - started) / len(pending)
        written: list[tuple[int, MatteResult]] = []
        write_started = time.perf_counter()
        for (index, attempt, _), result in zip(pending, results, strict=True):
            if isinstance(result, InputError):
                self._end(index, "failed", str(result), type(result).__name__)
            elif isinstance(result, MattingError):
                self._transient(index, attempt, result)
            elif self._write_result(files, index, attempt, result):
                written.append((index, result))
        if not written:
            return
        # Every result is on disk before its item is marked done (a crash in between leaves a checkpoint that
        # the next attempt finds); the marks go in one round trip, each item recorded then ended, in order.
        ends = self.store.end_done_items(
            self.job_id, [(index, r.model, r.confidence, r.warnings) for index, r in written]
        )
        per_write = (time.perf_counter() - write_started) / len(written)
        for (index, result), remaining in zip(written, ends, strict=True):
            self._count_end(index, "done", remaining)
            metrics.RESULT_CONFIDENCE.labels(model=result.model).observe(result.confidence)
            for stage, seconds in result.timings.items():
                metrics.STAGE_SECONDS.labels(stage=stage).observe(seconds)
            metrics.ITEM_SECONDS.observe(per_item + per_write)

    def _write_result(self, files: JobFiles, index: int, attempt: int, result: MatteResult) -> bool:
        """Write an item's result (and mask) atomically; False when it could not be (retried, or skipped for
        a job deleted meanwhile)."""
        try:
            # Never recreate the folders: a missing out/ means the job was deleted meanwhile.
            write_atomic(files.result_path(index, result.extension), result.image, make_parents=False)
            if result.mask is not None:
                write_atomic(files.mask_path(index), result.mask, make_parents=False)
        except OSError as exc:  # disk full, storage hiccup: worth another attempt
            if isinstance(exc, FileNotFoundError) and not self.store.exists(self.job_id):
                self.outcome.skipped.append(index)  # deleted while we worked: nothing to keep
            else:
                self._transient(index, attempt, exc)
            return False
        return True

    def hold_for_retry(self, countdown: float) -> None:
        """Keep the leases of the items to retry over the retry's countdown (the retry keeps this task's id,
        so it takes them back); if the worker holding the retry dies, they lapse and the watchdog re-sends."""
        if self.outcome.retry:
            self.store.renew_leases(self.job_id, self.owner, self.outcome.retry, countdown + self.settings.item_lease_s)

    def _transient(self, index: int, attempt: int, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        if attempt >= self.max_attempts:
            self._end(index, "failed", f"failed after {attempt} attempts: {message}", type(exc).__name__)
        else:
            self.outcome.retry.append(index)
            self.outcome.error = message
