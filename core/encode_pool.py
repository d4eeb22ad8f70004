"""Encoding results in a pool, so PNG/WebP/JPEG encoding never serialises a GPU worker.

PNG encoding of a 1080p RGBA cut-out costs ~40-100 ms of one core (zlib), more than the GPU spends on a whole
batch: a worker that encoded each image in the thread that made it would be bound by that. A pool sized to
the cores encodes a batch in parallel.

Threads by default: OpenCV releases the GIL while it converts and encodes, so threads encode in parallel
with no pixels to pickle. Measured on the 2-core dev machine (32 1080p cut-outs, 2 encoders): threads 46.6
against processes 34.6 images/s, and 1.0 against 2.3 ms of the calling process's GIL per image (py-spy
``--gil``; a GPU worker's GIL is what limits it, bench/README.md section 5). Processes (``kind="processes"``,
started with ``spawn``, never ``fork``: the worker is multi-threaded and holds a CUDA context) keep an encoder
that runs out of memory from taking the worker with it; they import only numpy, OpenCV and Pillow. A daemonic
process (a Celery prefork child) may not start children: there the pool is always threads.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from .imageio import encode_image, encode_mask

EncodedImage = tuple[bytes, bytes | None, float]  # image bytes, mask bytes (or None), seconds spent


def encode_result(pixels: np.ndarray, fmt: str, mask: np.ndarray | None) -> EncodedImage:
    """Encode one result (``pixels`` H x W x 3|4 uint8, optional H x W uint8 ``mask``); also its seconds."""
    started = time.perf_counter()
    image = encode_image(pixels, fmt)
    mask_bytes = encode_mask(mask) if mask is not None else None
    return image, mask_bytes, time.perf_counter() - started


def _init_process() -> None:
    import cv2

    cv2.setNumThreads(1)  # one image per process: the pool is the parallelism


class EncodePool:
    """A lazily started pool of ``processes`` encoders (0 = one per core): threads, or processes where
    ``kind`` asks for them outside a daemonic process (``kind`` says which it is). Thread-safe.

    A pool whose process died (killed, out of memory) raises ``BrokenProcessPool`` to the caller of that
    batch (a transient error: the worker retries the items) and is rebuilt on the next call.
    """

    def __init__(self, processes: int = 0, kind: str = "threads") -> None:
        if kind not in ("threads", "processes"):
            raise ValueError(f"an encoder pool is threads or processes, not {kind!r}")
        self.processes = processes if processes > 0 else max(1, os.cpu_count() or 1)
        self.kind = "threads" if multiprocessing.current_process().daemon else kind
        self._executor: Executor | None = None
        self._lock = threading.Lock()

    def _pool(self) -> Executor:
        with self._lock:
            if self._executor is None:
                if self.kind == "threads":
                    self._executor = ThreadPoolExecutor(self.processes, thread_name_prefix="matteflow-encode")
                else:
                    self._executor = ProcessPoolExecutor(
                        self.processes, mp_context=multiprocessing.get_context("spawn"), initializer=_init_process
                    )
            return self._executor

    def submit(self, pixels: np.ndarray, fmt: str, mask: np.ndarray | None) -> Future[EncodedImage]:
        return self._pool().submit(encode_result, pixels, fmt, mask)

    def encode_many(self, jobs: list[tuple[np.ndarray, str, np.ndarray | None]]) -> list[EncodedImage]:
        """Encode several results in parallel; results in the order of ``jobs``. Errors propagate."""
        futures = [self.submit(*job) for job in jobs]
        try:
            return [future.result() for future in futures]
        except BrokenProcessPool:
            with self._lock:
                broken, self._executor = self._executor, None
            if broken is not None:
                broken.shutdown(wait=False, cancel_futures=True)
            raise

    def pids(self) -> list[int]:
        """The encoder processes now running (tests, metrics)."""
        executor = self._executor
        processes = getattr(executor, "_processes", None) or {}
        return sorted(processes)

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
