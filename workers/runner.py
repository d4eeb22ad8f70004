"""``matteflow worker``: one Celery worker on the settings' queue.

A GPU worker runs a single process with ``worker_concurrency`` threads (``threads`` pool: one CUDA context,
the model loaded once, batches formed by chunked tasks of ``task_chunk_size`` images); a CPU worker forks
``worker_concurrency`` pool processes (default: one per core).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence

from matteflow.core.errors import ModelError
from matteflow.settings import Settings

from .app import make_celery
from .queues import consumed_queues

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="matteflow worker", description="Run a Celery worker that mattes images from the Redis queue."
    )
    parser.add_argument("--concurrency", "-c", type=int, help="pool processes (default: settings, = cores)")
    parser.add_argument("--pool", choices=("prefork", "solo", "threads"), help="default: threads on a GPU")
    parser.add_argument("--name", default="matteflow", help="node name (the host name is appended)")
    parser.add_argument("--loglevel", help="default: MATTEFLOW_LOG_LEVEL")
    return parser


POOLS = ("prefork", "threads", "solo")
# Celery enforces task_time_limit / task_soft_time_limit only in the prefork pool (it kills or signals the
# child process); the threads and solo pools run a task to its end, however long it hangs.
TIME_LIMITED_POOLS = frozenset({"prefork"})


def choose_pool(settings: Settings, device: str, requested: str | None = None) -> str:
    """The Celery pool: ``requested`` (``--pool``), else ``MATTEFLOW_WORKER_POOL``, else threads on a GPU (one
    process, one CUDA context) and prefork on the CPU. Raises ValueError for an unknown name."""
    pool = requested or settings.worker_pool or ("threads" if device.startswith("cuda") else "prefork")
    if pool not in POOLS:
        raise ValueError(f"unknown worker pool {pool!r} (MATTEFLOW_WORKER_POOL): use {', '.join(POOLS)}")
    return pool


def worker_argv(settings: Settings, name: str, pool: str, loglevel: str) -> list[str]:
    concurrency = 1 if pool == "solo" else settings.worker_concurrency
    return [
        "worker",
        "--hostname", f"{name}@%h",
        "--queues", ",".join(consumed_queues(settings.worker_queue)),  # in the order served
        "--concurrency", str(concurrency),
        "--pool", pool,
        "--loglevel", loglevel,
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    settings = Settings.from_env()
    if args.concurrency is not None:
        if args.concurrency < 1:
            build_parser().error("--concurrency must be at least 1")
        settings = settings.replace(worker_concurrency=args.concurrency)
    loglevel = (args.loglevel or settings.log_level).upper()
    logging.basicConfig(level=loglevel, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    if not settings.redis_url:
        log.error("no broker: set MATTEFLOW_REDIS_URL (or run the whole service with `matteflow up`)")
        return 1
    from matteflow.core.model import resolve_device

    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # no CUDA context before a fork
    try:
        device = resolve_device(settings.device)
    except ModelError as exc:
        log.error("refusing to start: %s", exc)
        return 1
    # A GPU worker is one process (one CUDA context, one model) whose threads overlap the CPU stages
    # (decode, post-processing, encoding) of several tasks around the shared network; a CPU worker forks.
    try:
        pool = choose_pool(settings, device, args.pool)
    except ValueError as exc:
        log.error("%s", exc)
        return 1
    if pool not in TIME_LIMITED_POOLS and settings.task_time_limit_s > 0:
        log.warning(
            "the %s pool does not enforce MATTEFLOW_TASK_TIME_LIMIT_S (%ss): a hung task holds this worker; "
            "use MATTEFLOW_WORKER_POOL=prefork where a limit matters (Kubernetes)",
            pool,
            settings.task_time_limit_s,
        )
    if pool == "prefork" and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Without it, what pool processes count never reaches this worker's /metrics. Set here, at the
        # entry point, before matteflow.metrics is first imported.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="matteflow-metrics-")
    log.info("starting worker %s on %s (pool %s)", args.name, device, pool)
    try:
        app = make_celery(settings, worker=True)
    except ValueError as exc:  # inconsistent settings (e.g. visibility timeout shorter than a task)
        log.error("bad settings: %s", exc)
        return 1
    try:
        app.worker_main(argv=worker_argv(settings, args.name, pool, loglevel))
    except SystemExit as exc:  # celery's command line ends by raising SystemExit
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
