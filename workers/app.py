"""The Celery app, configured from :class:`~matteflow.settings.Settings`.

``celery -A matteflow.workers.app worker`` finds ``app`` here: it is built on first access (PEP 562
module ``__getattr__``) from the environment, so importing this module reads nothing and connects to
nothing. The web side (:class:`~matteflow.workers.client.JobClient`) builds its own app with
:func:`make_celery` and enqueues by task name, never importing the tasks (or torch).
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

from celery import Celery, bootsteps, signals

from matteflow.settings import Settings

from .queues import FINALIZE_TASK, PROCESS_TASK, REZIP_TASK, TASKS_MODULE, consumed_queues, finalize_queue, queue_name

log = logging.getLogger(__name__)

# Re-exported for callers that build the app and send by name (tests, tools).
__all__ = ["FINALIZE_TASK", "PROCESS_TASK", "MatteflowCelery", "celery_config", "get_app", "make_celery"]


class MatteflowCelery(Celery):
    """A Celery app that carries the settings it was built from, so tasks read them from ``self.app``."""

    settings: Settings


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for MatteFlow's delivery guarantees.

    acks_late + reject_on_worker_lost + prefetch 1: a task is acknowledged only after it ran, so a killed
    worker's task goes back to the queue (tasks are idempotent, see ``tasks.py``). The broker's visibility
    timeout must outlast the longest task, or Redis would hand a running task to a second worker.
    """
    longest = settings.task_time_limit_s + settings.task_retry_backoff_max_s
    vt = settings.broker_visibility_timeout_s
    if vt <= longest:
        raise ValueError(
            f"broker_visibility_timeout_s ({vt:g}) must exceed task_time_limit_s + task_retry_backoff_max_s "
            f"({longest:g}), or running tasks would be delivered twice"
        )
    transport = {
        "visibility_timeout": vt,
        # How often a worker looks for unacked messages past the visibility timeout (a dead worker's):
        # a tenth of the timeout, at most every 10 s.
        "unacked_restore_interval": max(1, min(10, int(vt // 10))),
        "unacked_restore_throttle": 1,
        # Serve the queues in the order the worker lists them (interactive, batch, bulk) instead of kombu's
        # default round robin; see queues.py for why lanes are queues rather than message priorities.
        "queue_order_strategy": "priority",
    }
    memory_kib = settings.worker_max_memory_mb * 1024
    return {
        "broker_url": settings.redis_url,
        "result_backend": settings.redis_url,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"retry_policy": {"timeout": 10.0}},
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # a worker outlives a broker restart, however long
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": settings.task_time_limit_s,
        "task_soft_time_limit": max(1, int(settings.task_time_limit_s * 0.9)),
        "worker_max_tasks_per_child": settings.worker_max_tasks_per_child or None,
        "worker_max_memory_per_child": memory_kib or None,
        "worker_concurrency": settings.worker_concurrency,
        # Every send names its queue (queues.queue_for_job); these are the fall-backs for a send that does not.
        "task_default_queue": queue_name(settings.worker_queue, "batch"),
        "task_routes": {
            FINALIZE_TASK: {"queue": finalize_queue(settings.worker_queue)},
            REZIP_TASK: {"queue": finalize_queue(settings.worker_queue)},
        },
        "result_expires": timedelta(days=1),
        # task-received/started/succeeded events, so Flower (or celery-exporter) pointed at the same broker
        # sees per-task state; task-sent events too, so it also sees what is waiting.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": True,
        "worker_redirect_stdouts_level": "INFO",
    }


def make_celery(settings: Settings, *, worker: bool = False) -> MatteflowCelery:
    """Build a Celery app from ``settings``. ``worker=True`` adds the tasks module and the worker's
    start-up steps (device check, metrics server, reconciler); the enqueueing side needs neither."""
    app = MatteflowCelery("matteflow", set_as_current=worker, include=[TASKS_MODULE] if worker else [])
    app.settings = settings
    app.conf.update(celery_config(settings))
    if worker:
        signals.worker_init.connect(_prepare_metrics_dir, weak=False, dispatch_uid="matteflow-metrics-dir")
        signals.worker_process_shutdown.connect(
            _forget_process_metrics, weak=False, dispatch_uid="matteflow-metrics-dead"
        )
        signals.task_postrun.connect(_count_task_run, weak=False, dispatch_uid="matteflow-task-runs")
        app.steps["worker"].add(DeviceCheckStep)
        app.steps["worker"].add(MetricsServerStep)
        app.steps["worker"].add(ReconcilerStep)
        app.steps["consumer"].add(ConsumerHeartbeatStep)
        app.steps["worker"].add(HeartbeatStep)
    return app


def _prepare_metrics_dir(**_: Any) -> None:
    """Before the pool forks: clear the multi-process metric files earlier runs left behind."""
    from matteflow import metrics

    metrics.prepare_multiprocess_dir()


def _count_task_run(task: Any = None, state: str | None = None, **_: Any) -> None:
    """Every task run that returned, by task name and end state (success, failure, retry), as
    celery-exporter counts them; in the pool process that ran it."""
    from matteflow import metrics

    name = getattr(task, "name", None) or "unknown"
    metrics.TASKS_TOTAL.labels(task=name, state=(state or "unknown").lower()).inc()


def _forget_process_metrics(pid: int | None = None, **_: Any) -> None:
    """A pool process exits (max tasks/memory per child): drop its live RSS gauge."""
    from matteflow import metrics

    metrics.mark_process_dead(pid)


# Steps that start threads in the main process run after the prefork pool has forked its processes. Without
# it their place in the boot order was left to chance (steps with no requirement are ordered by hash, which
# varies per run), and a thread at its first Redis connection while the pool forked could leave a child
# waiting for good on a lock the thread held (see matteflow/forksafe.py, which also covers the later forks
# that replace pool processes).
_AFTER_THE_POOL = ("celery.worker.components:Pool",)


class DeviceCheckStep(bootsteps.StartStopStep):
    """Say which device the worker will use, and refuse to start when a GPU was asked for and there is
    none (an exception here makes Celery exit with an 'Unrecoverable error')."""

    def start(self, worker: Any) -> None:
        from matteflow.core.model import resolve_device

        settings: Settings = worker.app.settings
        # Ask NVML, not the CUDA runtime, whether a GPU exists: a CUDA context made here, before the pool
        # forks, would make every forked process fail at its first CUDA call.
        os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
        device = resolve_device(settings.device)
        log.info(
            "matteflow worker: model %s, device %s (asked for %s), concurrency %s, queues %s, pid %s",
            settings.model,
            device,
            settings.device,
            worker.concurrency,
            ",".join(consumed_queues(settings.worker_queue)),
            os.getpid(),
        )


class MetricsServerStep(bootsteps.StartStopStep):
    """Serve /metrics for this worker, with /livez and /readyz from the consumer's heartbeat."""

    requires = _AFTER_THE_POOL

    def start(self, worker: Any) -> None:
        from matteflow import metrics

        from .liveness import HEARTBEAT

        settings: Settings = worker.app.settings
        max_age = 4 * max(1.0, settings.worker_heartbeat_interval_s)  # a few missed beats, not one late one
        checks = {"/livez": lambda: HEARTBEAT.alive(max_age), "/readyz": lambda: HEARTBEAT.ready(max_age)}
        metrics.start_worker_metrics_server(settings, checks=checks)


class ConsumerHeartbeatStep(bootsteps.StartStopStep):
    """Beat ``liveness.HEARTBEAT`` from the consumer's own timer (the prefork pool's event loop), so the
    worker's ``/livez`` fails when the consumer stops, not only when the metrics thread does."""

    requires = ("celery.worker.consumer.connection:Connection",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref: Any = None

    def start(self, consumer: Any) -> None:
        from celery.bootsteps import RUN

        from .liveness import HEARTBEAT

        def beat() -> None:
            connection = consumer.connection
            HEARTBEAT.beat(
                consuming=consumer.blueprint.state == RUN,
                connected=bool(connection is not None and connection.connected),
            )

        beat()
        interval = max(1.0, consumer.app.settings.worker_heartbeat_interval_s)
        self.tref = consumer.timer.call_repeatedly(interval, beat)

    def stop(self, consumer: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None


class ReconcilerStep(bootsteps.StartStopStep):
    """Run the lease watchdog and the periodic reconciler (finish orphaned jobs, re-send stalled items, TTL
    cleanup) in a thread of the worker's main process."""

    requires = _AFTER_THE_POOL

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.thread: Any = None

    def start(self, worker: Any) -> None:
        from .reconcile import ReconcilerThread

        self.thread = ReconcilerThread(worker.app)
        self.thread.start()

    def stop(self, worker: Any) -> None:
        if self.thread is not None:
            self.thread.stop(timeout=5.0)


class HeartbeatStep(bootsteps.StartStopStep):
    """Publish this worker's liveness in Redis (what /readyz reads), from a thread of the main process."""

    requires = _AFTER_THE_POOL

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.thread: Any = None

    def start(self, worker: Any) -> None:
        from .heartbeat import HeartbeatThread
        from .jobstore import make_redis

        self.thread = HeartbeatThread(make_redis(worker.app.settings, fast_fail=True), worker.hostname)
        self.thread.start()

    def stop(self, worker: Any) -> None:
        if self.thread is not None:
            self.thread.stop()


_app: MatteflowCelery | None = None


def get_app() -> MatteflowCelery:
    """The worker app built from the environment (``MATTEFLOW_*``), once per process."""
    global _app
    if _app is None:
        _app = make_celery(Settings.from_env(), worker=True)
    return _app


def __getattr__(name: str) -> Any:
    if name == "app":
        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
