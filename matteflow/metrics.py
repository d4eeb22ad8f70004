"""Prometheus metrics of every MatteFlow process (web, worker), named ``matteflow_*`` with unit suffixes.

No job ids or file names in labels: label values come from small fixed sets (state, stage, queue,
method, endpoint, status, device, model). In multi-process servers (gunicorn, Celery prefork) set
``PROMETHEUS_MULTIPROC_DIR`` before the first import; :func:`make_registry` then aggregates the files.

Three kinds of metrics live here:

* metric objects the code updates (counters, histograms, the RSS gauge), shared by all processes;
* collectors that read their value at scrape time (queue length from Redis, GPU memory from NVML,
  worker up), registered only in the registry a process exposes;
* helpers that build those registries: :func:`web_registry` for the Flask ``/metrics``,
  :func:`start_worker_metrics_server` for a worker's own port and :func:`start_queue_metrics_server` for
  the one process per deployment that reports the queues (``matteflow exporter``).

The queues are reported by exactly one process: a value read from Redis by every web pod and summed by a
query counts the same backlog once per pod.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app, start_http_server
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler
from prometheus_client.registry import Collector

from matteflow.forksafe import fork_deferred

if TYPE_CHECKING:
    import redis

    from matteflow.settings import Settings

log = logging.getLogger(__name__)

_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own switch, not a MatteFlow setting

# Multi-process mode opens one file per process as each unlabelled metric below is defined; without the
# directory that definition (hence this import) would fail, so it is the one thing done at import time.
if os.environ.get(_MULTIPROC_ENV):
    os.makedirs(os.environ[_MULTIPROC_ENV], exist_ok=True)

STAGES = ("decode", "inference", "postprocess", "encode")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def _outcome_counter(name: str, documentation: str, outcomes: tuple[str, ...]) -> Counter:
    """A counter by ``outcome`` with every outcome exported at 0 from the start: a series born at 1 has no
    increase() to show, so the first of a kind (a callback given up, a fetch refused) would slip past alerts."""
    counter = Counter(name, documentation, ["outcome"])
    for outcome in outcomes:
        counter.labels(outcome=outcome)
    return counter


JOBS_TOTAL = Counter("matteflow_jobs_total", "Jobs by the state they reached.", ["state"])
ITEMS_TOTAL = Counter("matteflow_items_total", "Images by the state they reached.", ["state"])
TASK_RETRIES_TOTAL = Counter("matteflow_task_retries_total", "Task retries after a transient error.")
CALLBACK_OUTCOMES = ("delivered", "retried", "gave_up")
CALLBACKS_TOTAL = _outcome_counter(
    "matteflow_callbacks_total",
    "Deliveries of job-finished callbacks by outcome: delivered, retried (non-2xx, timeout, refused), gave_up.",
    CALLBACK_OUTCOMES,
)
# Sent again by the reconciler (workers/reconcile.py), by why. A steady rate of lease_expired means workers
# die or hang mid-item (OOM kills, preemption, a stuck GPU); stalled means task messages were lost.
RESENT_TOTAL = Counter(
    "matteflow_resent_total",
    "Work the reconciler sent again: images whose lease expired or whose job stalled, a lost finalize, or a "
    "lost rebuild of a batch's ZIP.",
    ["reason"],
)
RESEND_REASONS = ("lease_expired", "stalled", "finalize", "rezip")
TASKS_TOTAL = Counter("matteflow_tasks_total", "Celery tasks by name and the state a run ended in.", ["task", "state"])
STAGE_SECONDS = Histogram(
    "matteflow_stage_seconds",
    "Time per image in each processing stage.",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
)
ITEM_SECONDS = Histogram("matteflow_item_seconds", "Whole time a worker spent on one image.", buckets=_LATENCY_BUCKETS)
HTTP_REQUESTS_TOTAL = Counter(
    "matteflow_http_requests_total", "HTTP requests answered.", ["method", "endpoint", "status"]
)
HTTP_REQUEST_SECONDS = Histogram(
    "matteflow_http_request_seconds",
    "HTTP request latency.",
    ["method", "endpoint"],
    buckets=_LATENCY_BUCKETS,
)
# How sure the network was of each result (core.confidence), by the model that ran (people | general): a
# shift of this distribution is the first sign of photos the model does not understand.
RESULT_CONFIDENCE = Histogram(
    "matteflow_result_confidence",
    "Confidence in [0, 1] of each result, by the model that made it.",
    ["model"],
    buckets=tuple(round(0.1 * step, 1) for step in range(1, 11)),
)
UPLOAD_BYTES_TOTAL = Counter("matteflow_upload_bytes_total", "Bytes of images received.")
# Images named by URL (image_url, matteflow/fetch.py), read by the web process (/matte) and the workers (jobs):
# fetched, failed (the origin gave no image: an HTTP error, too slow, too large, unreachable) or refused (the
# guard: a host not listed, a private address, a redirect to one). A rising refused rate is someone probing.
FETCH_OUTCOMES = ("fetched", "failed", "refused")
FETCHES_TOTAL = _outcome_counter(
    "matteflow_image_fetches_total",
    "Images named by URL, by outcome: fetched, failed (the origin gave no image), refused (not allowed).",
    FETCH_OUTCOMES,
)
FETCH_BYTES_TOTAL = Counter("matteflow_image_fetch_bytes_total", "Bytes of images read from image URLs.")
QUEUE_WAIT_SECONDS = Histogram(
    "matteflow_queue_wait_seconds",
    "Time a task waited in its queue until a worker started it.",
    ["queue"],
    buckets=(0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0),
)
WORKER_RSS_BYTES = Gauge(
    "matteflow_worker_rss_bytes",
    "Resident memory of a worker process (proportional set size where the OS reports it).",
    multiprocess_mode="livesum",
)

# Metric families (names as collected: counters without _total) each process serves from the shared
# objects above. A process never serves what it does not update: a web pod would report the worker
# metrics as zeros (and a worker the HTTP ones), which sums and "is anything happening" panels misread.
WEB_METRICS = frozenset(
    {
        "matteflow_http_requests",
        "matteflow_http_request_seconds",
        "matteflow_upload_bytes",
        "matteflow_image_fetches",
        "matteflow_image_fetch_bytes",
        "matteflow_items",  # uploads that fail the intake check are counted as failed items by the web
    }
)
WORKER_METRICS = frozenset(
    {
        "matteflow_jobs",
        "matteflow_items",
        "matteflow_task_retries",
        "matteflow_resent",
        "matteflow_callbacks",
        "matteflow_tasks",
        "matteflow_stage_seconds",
        "matteflow_item_seconds",
        "matteflow_result_confidence",
        "matteflow_queue_wait_seconds",
        "matteflow_worker_rss_bytes",
        "matteflow_image_fetches",  # a job's image URLs are read by the workers
        "matteflow_image_fetch_bytes",
    }
)


def make_registry() -> CollectorRegistry:
    """A registry to expose: the multi-process aggregate when PROMETHEUS_MULTIPROC_DIR is set, else
    prometheus_client's default registry (this process' metrics). Wrap it, never register into it, when
    adding collectors: see :func:`web_registry`."""
    if os.environ.get(_MULTIPROC_ENV):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)
        return registry
    from prometheus_client import REGISTRY

    return REGISTRY


# --- multi-process bookkeeping -------------------------------------------------------------------------

_DB_FILE = re.compile(r"^[a-z_]+_(\d+)\.db$")


def prepare_multiprocess_dir() -> Path | None:
    """Create PROMETHEUS_MULTIPROC_DIR and delete what earlier runs left in it; call once at the start of
    a process tree (the Celery main process before it forks, a gunicorn master), never from a child.

    Files of the calling process are kept: its unlabelled metrics opened them when this module was
    imported. Returns the directory, or None when multi-process mode is off. A parent that starts its
    children with ``subprocess`` instead sets the variable in their environment and calls this first.
    """
    raw = os.environ.get(_MULTIPROC_ENV)
    if not raw:
        return None
    directory = Path(raw)
    directory.mkdir(parents=True, exist_ok=True)
    own_pid = os.getpid()
    for path in directory.iterdir():
        match = _DB_FILE.match(path.name)
        if match and int(match.group(1)) != own_pid:
            path.unlink(missing_ok=True)
    return directory


def mark_process_dead(pid: int | None = None) -> None:
    """Forget the live gauges (RSS) of an exited child; call it from Celery's ``worker_process_shutdown``
    (or gunicorn's ``child_exit``). Counters of the dead process stay, so totals never go down."""
    if os.environ.get(_MULTIPROC_ENV):
        _multiprocess.mark_process_dead(os.getpid() if pid is None else pid)


def update_worker_rss() -> int:
    """Set ``matteflow_worker_rss_bytes`` for the calling process from psutil; returns the bytes.

    The value is the proportional set size (PSS) on Linux, else the RSS. The multi-process aggregate sums
    the live processes of a prefork worker, and their RSS would count every page the children share with
    the parent (libraries, the imported model code) once per process; PSS splits each shared page between
    the processes sharing it, so the sum is the memory the worker really holds. Cheap (one
    /proc/<pid>/smaps_rollup read): call it after each task in every worker process."""
    import psutil

    process = psutil.Process()
    try:
        used = int(process.memory_full_info().pss)
    except (AttributeError, psutil.Error, OSError):  # no PSS on this OS, or smaps not readable
        used = int(process.memory_info().rss)
    WORKER_RSS_BYTES.set(used)
    return used


# --- scrape-time collectors ----------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueSnapshot:
    lengths: dict[str, int]  # tasks waiting, per queue
    oldest_age_s: dict[str, float]  # how long the oldest of them has waited, per queue
    in_flight: int  # delivered to a worker, not yet acknowledged
    held_back: int = 0  # tasks' worth of images of big batches not yet released to a queue (workers/window.py)


class QueueLengthCollector(Collector):
    """``matteflow_queue_length{queue}``: messages waiting in each Celery queue (one Redis list each, see
    ``workers/queues.py``), and ``matteflow_tasks_in_flight``: messages delivered to a worker and not yet
    acknowledged (running or prefetched; kombu's ``unacked`` hash), read from Redis in one transaction so
    the two never count a task twice or not at all; ``matteflow_queue_oldest_age_seconds{queue}``: how long
    the oldest waiting task has waited (from the send-time header ``workers/queues.py`` adds);
    ``matteflow_tasks_held_back``: the images of big batches that their job's window has not released to the
    bulk queue yet (``workers/window.py``), in tasks of ``task_size`` images, so that waiting work adds up to
    queue lengths + held back (+ in flight) in one unit.

    Also ``matteflow_redis_up``: 1 when Redis answered this scrape. A scrape never fails because Redis
    is down (the queue gauges are then left out), so the other metrics still arrive.
    """

    def __init__(self, redis_url_or_client: str | redis.Redis, queues: Iterable[str], task_size: int = 1) -> None:
        self._queues = tuple(queues)
        self._task_size = max(1, task_size)
        if not self._queues:
            raise ValueError("QueueLengthCollector needs at least one queue name")
        self._client_or_url = redis_url_or_client
        self._client: redis.Redis | None = None

    def _redis(self) -> redis.Redis:
        if self._client is None:
            if isinstance(self._client_or_url, str):
                import redis as redis_lib

                # Short timeouts: a scrape must answer well inside Prometheus' scrape timeout.
                self._client = redis_lib.Redis.from_url(
                    self._client_or_url, socket_timeout=2.0, socket_connect_timeout=2.0
                )
            else:
                self._client = self._client_or_url
        return self._client

    def redis_client(self) -> redis.Redis:
        """The client this collector reads with (made on first use)."""
        return self._redis()

    def read(self) -> QueueSnapshot:
        """Lengths, oldest messages and tasks in flight, one snapshot (and the held-back work, read just
        after: an image released meanwhile may be counted in both, never in neither). Raises redis errors."""
        from matteflow.workers.jobstore import unreleased_items
        from matteflow.workers.queues import UNACKED_KEY, message_enqueued_at

        pipe = self._redis().pipeline(transaction=True)  # MULTI: a task moving list -> hash is seen once
        for queue in self._queues:
            pipe.llen(queue)
            pipe.lindex(queue, -1)  # kombu pushes on the left and pops on the right: the oldest is last
        pipe.hlen(UNACKED_KEY)
        *replies, in_flight = pipe.execute()
        held_back = -(-unreleased_items(self._redis()) // self._task_size)  # whole tasks, rounded up
        now = time.time()
        lengths, oldest = {}, {}
        for i, queue in enumerate(self._queues):
            lengths[queue] = int(replies[2 * i])
            sent_at = message_enqueued_at(replies[2 * i + 1])
            oldest[queue] = max(0.0, now - sent_at) if sent_at is not None else 0.0
        return QueueSnapshot(lengths, oldest, int(in_flight), held_back)

    def queue_lengths(self) -> dict[str, int]:
        """Length of every queue. Raises redis errors."""
        return self.read().lengths

    def describe(self) -> list[Metric]:
        # Registering must not touch Redis (the registry calls describe, not collect, when present).
        return [_queue_family(), _oldest_family(), _in_flight_family(), _held_back_family(), _redis_up_family()]

    def collect(self) -> Iterator[Metric]:
        import redis as redis_lib

        up = _redis_up_family()
        snapshot: QueueSnapshot | None = None
        if self._client_or_url == "":
            log.debug("queue length unavailable: no Redis URL configured")
        else:
            try:
                snapshot = self.read()
            except (redis_lib.RedisError, OSError) as exc:
                log.warning("queue length unavailable: %s", exc)
        if snapshot is not None:
            family = _queue_family()
            for queue, length in snapshot.lengths.items():
                family.add_metric([queue], length)
            yield family
            oldest = _oldest_family()
            for queue, age in snapshot.oldest_age_s.items():
                oldest.add_metric([queue], age)
            yield oldest
            flying = _in_flight_family()
            flying.add_metric([], snapshot.in_flight)
            yield flying
            held = _held_back_family()
            held.add_metric([], snapshot.held_back)
            yield held
        up.add_metric([], 0 if snapshot is None else 1)
        yield up


def _queue_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "matteflow_queue_length", "Tasks waiting in a Celery queue (Redis list length).", labels=["queue"]
    )


def _oldest_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "matteflow_queue_oldest_age_seconds",
        "How long the oldest task waiting in a queue has waited (0 when empty).",
        labels=["queue"],
    )


def _in_flight_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "matteflow_tasks_in_flight", "Tasks delivered to a worker and not yet acknowledged (running or prefetched)."
    )


def _held_back_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "matteflow_tasks_held_back",
        "Tasks' worth of images of big batches waiting for a place in their job's window (not yet in a queue).",
    )


def _redis_up_family() -> GaugeMetricFamily:
    return GaugeMetricFamily("matteflow_redis_up", "1 when Redis answered the last scrape, else 0.")


class RedisHealthCollector(Collector):
    """Redis' own health from ``INFO``: memory used and its limit (``noeviction`` refuses writes at the
    limit, so intake fails there), and whether the last AOF write and background saves succeeded. Yields
    nothing while Redis does not answer (``matteflow_redis_up`` says so)."""

    _STATUSES = ("aof_last_write_status", "aof_last_bgrewrite_status", "rdb_last_bgsave_status")

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def describe(self) -> list[Metric]:
        return list(_redis_health_families())

    def collect(self) -> Iterator[Metric]:
        import redis as redis_lib

        try:
            info = self._client.info()
        except (redis_lib.RedisError, OSError):
            return
        used, limit, persistence = _redis_health_families()
        used.add_metric([], float(info.get("used_memory", 0)))
        limit.add_metric([], float(info.get("maxmemory", 0)))
        persistence.add_metric([], 1.0 if all(info.get(k, "ok") == "ok" for k in self._STATUSES) else 0.0)
        yield from (used, limit, persistence)


def _redis_health_families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily("matteflow_redis_memory_used_bytes", "Memory Redis uses (INFO used_memory)."),
        GaugeMetricFamily("matteflow_redis_memory_max_bytes", "Redis' maxmemory; 0 means no limit."),
        GaugeMetricFamily(
            "matteflow_redis_persistence_ok", "1 when Redis' last AOF write, AOF rewrite and RDB save succeeded."
        ),
    )


class StorageCollector(Collector):
    """``matteflow_storage_used_bytes`` / ``..._capacity_bytes`` of the volume holding uploads and results
    (read at scrape time; nothing while the folder does not exist)."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)

    def describe(self) -> list[Metric]:
        return list(_storage_families())

    def collect(self) -> Iterator[Metric]:
        import shutil

        try:
            usage = shutil.disk_usage(self._path)
        except OSError:
            return
        used, capacity = _storage_families()
        used.add_metric([], float(usage.used))
        capacity.add_metric([], float(usage.total))
        yield from (used, capacity)


def _storage_families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily("matteflow_storage_used_bytes", "Bytes used on the uploads/results volume."),
        GaugeMetricFamily("matteflow_storage_capacity_bytes", "Size of the uploads/results volume."),
    )


class GpuMemoryCollector(Collector):
    """``matteflow_gpu_memory_used_bytes{device}`` and ``..._total_bytes{device}`` per NVIDIA GPU.

    Reads NVML (the ``nvidia-ml-py`` package, the ``gpu`` extra) at scrape time. Without the package, the
    driver or a GPU it yields nothing and raises nothing, so CPU workers expose the rest as usual.
    "Used" is total minus free, so it includes the driver's reserved memory (~0.5 GiB on an H100, which
    nvidia-smi leaves out): used/total reaching 1 means no allocation can succeed.
    """

    def __init__(self) -> None:
        self._nvml: Any = None
        self._unavailable = False

    def _init_nvml(self) -> Any:
        if self._nvml is None and not self._unavailable:
            try:
                import pynvml
            except ImportError:
                log.info("GPU metrics off: nvidia-ml-py is not installed")
                self._unavailable = True
                return None
            try:
                pynvml.nvmlInit()
            except pynvml.NVMLError as exc:  # no driver / library / GPU: a CPU worker
                log.info("GPU metrics off: NVML unavailable (%s)", exc)
                self._unavailable = True
            else:
                self._nvml = pynvml
        return self._nvml

    def describe(self) -> list[Metric]:
        return list(_gpu_families())

    def collect(self) -> Iterator[Metric]:
        nvml = self._init_nvml()
        if nvml is None:
            return
        used, total = _gpu_families()
        try:
            for index in range(nvml.nvmlDeviceGetCount()):
                info = nvml.nvmlDeviceGetMemoryInfo(nvml.nvmlDeviceGetHandleByIndex(index))
                used.add_metric([str(index)], float(info.used))
                total.add_metric([str(index)], float(info.total))
        except nvml.NVMLError as exc:  # a GPU fell off the bus: report what we have, keep scraping
            log.warning("GPU memory unavailable: %s", exc)
        if total.samples:
            yield used
            yield total


def _gpu_families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily("matteflow_gpu_memory_used_bytes", "GPU memory in use.", labels=["device"]),
        GaugeMetricFamily("matteflow_gpu_memory_total_bytes", "GPU memory installed.", labels=["device"]),
    )


class WorkerUpCollector(Collector):
    """``matteflow_worker_up{queue}`` = 1 from a running worker's metrics server: ``sum()`` of it is the
    worker count. Refreshes the server process' RSS at each scrape, so an idle worker reports too."""

    def __init__(self, queue: str) -> None:
        self._queue = queue

    def describe(self) -> list[Metric]:
        return [_worker_up_family()]

    def collect(self) -> Iterator[Metric]:
        update_worker_rss()
        family = _worker_up_family()
        family.add_metric([self._queue], 1)
        yield family


def _worker_up_family() -> GaugeMetricFamily:
    return GaugeMetricFamily("matteflow_worker_up", "1 per running worker (Celery main process).", labels=["queue"])


class _CollectorsView(Collector):
    """Exposes other registries/collectors together without re-registering their metrics (registering a
    metric object twice raises), so building a registry per app or test is safe. With ``only``, MatteFlow
    families not named there are left out (prometheus_client's own python_/process_ families stay)."""

    def __init__(self, parts: Sequence[Any], only: frozenset[str] | None = None) -> None:
        self._parts = tuple(parts)
        self._only = only

    def collect(self) -> Iterator[Metric]:
        for part in self._parts:
            for family in part.collect():
                if self._only is None or not family.name.startswith("matteflow_") or family.name in self._only:
                    yield family


# --- registries a process exposes ----------------------------------------------------------------------


def web_registry(settings: Settings, redis_client: redis.Redis | None = None) -> CollectorRegistry:
    """The registry behind the web app's ``/metrics``: the web's own metrics (:data:`WEB_METRICS`), no
    queue gauges (:func:`queue_registry` has them) and no worker metrics. Serve it with
    ``prometheus_client.generate_latest(registry)``. ``settings`` and ``redis_client`` are accepted for
    the callers' sake; nothing here reads Redis."""
    del settings, redis_client
    registry = CollectorRegistry()
    registry.register(_CollectorsView([make_registry()], only=WEB_METRICS))
    return registry


def queue_registry(settings: Settings, redis_client: redis.Redis | None = None) -> CollectorRegistry:
    """The metrics of a deployment's shared state, read at scrape time: the queues (waiting, oldest age, in
    flight, Redis up) and Redis' memory and persistence from ``redis_client`` or ``settings.redis_url``, the
    storage volume's usage from ``settings.storage_dir``. One process per deployment serves it."""
    from matteflow.workers.queues import consumed_queues

    registry = CollectorRegistry()
    source: str | redis.Redis = redis_client if redis_client is not None else settings.redis_url
    queues = QueueLengthCollector(source, consumed_queues(settings.worker_queue), settings.task_chunk_size)
    registry.register(queues)
    if source != "":
        registry.register(_LazyRedisHealth(queues))
    registry.register(StorageCollector(settings.storage_dir))
    return registry


class _LazyRedisHealth(RedisHealthCollector):
    """Redis health on the queue collector's client (one connection, made at the first scrape)."""

    def __init__(self, queues: QueueLengthCollector) -> None:
        self._queues = queues

    def collect(self) -> Iterator[Metric]:
        self._client = self._queues.redis_client()
        yield from super().collect()


def start_queue_metrics_server(settings: Settings, host: str | None = None) -> tuple[str, int] | None:
    """Serve :func:`queue_registry` on ``<host>:<settings.queue_metrics_port>`` from a daemon thread (host
    default ``settings.queue_metrics_host``). Returns the bound address, or None when the port is 0 (off)."""
    port = settings.queue_metrics_port
    if port <= 0:
        log.info("queue metrics server off (queue_metrics_port=%d)", port)
        return None
    host = settings.queue_metrics_host if host is None else host
    start_http_server(port, addr=host, registry=queue_registry(settings))
    log.info("queue metrics on http://%s:%d/metrics", host, port)
    return host, port


def worker_registry(settings: Settings) -> CollectorRegistry:
    """The registry a worker serves: :func:`make_registry` (all worker processes in prefork mode) plus
    GPU memory, worker up and the RSS refresh."""
    registry = CollectorRegistry()
    registry.register(_CollectorsView([make_registry()], only=WORKER_METRICS))
    registry.register(GpuMemoryCollector())
    registry.register(WorkerUpCollector(settings.worker_queue))
    return registry


HealthCheck = Callable[[], tuple[bool, str]]


def start_worker_metrics_server(
    settings: Settings, host: str | None = None, checks: Mapping[str, HealthCheck] | None = None
) -> None:
    """Serve :func:`worker_registry` on ``http://<host>:<settings.worker_metrics_port>/metrics`` from a
    daemon thread, and each of ``checks`` on its path (``/livez`` -> 200 or 503 with the reason). Call once
    in the Celery main process, after :func:`prepare_multiprocess_dir`. ``host`` defaults to
    ``settings.worker_metrics_host``: 127.0.0.1 on one machine, 0.0.0.0 in a pod (Prometheus scrapes the
    pod IP).

    A port of 0 turns the server off. A port already in use is logged, not raised: a worker without
    metrics still processes images, whereas a crash at start-up would stop the queue.
    """
    port = settings.worker_metrics_port
    if port <= 0:
        log.info("worker metrics server off (worker_metrics_port=%d)", port)
        return
    host = settings.worker_metrics_host if host is None else host
    try:
        app = _with_checks(make_wsgi_app(worker_registry(settings)), checks or {})
        _serve_in_thread(_forks_deferred(app), host, port)
    except OSError as exc:
        log.error("worker metrics not served: cannot listen on %s:%d (%s)", host, port, exc)
        return
    log.info("worker metrics on http://%s:%d/metrics", host, port)


def _with_checks(metrics_app: Callable[..., Any], checks: Mapping[str, HealthCheck]) -> Callable[..., Any]:
    """A WSGI app answering ``checks`` by path and everything else with the metrics."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        check = checks.get(environ.get("PATH_INFO", ""))
        if check is None:
            return metrics_app(environ, start_response)
        ok, reason = check()
        start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8")])
        return [f"{'ok' if ok else 'failing'}: {reason}\n".encode()]

    return app


def _forks_deferred(app: Callable[..., Any]) -> Callable[..., Any]:
    """``app`` answering each request with forks of this process held off. The worker's main process forks
    pool processes, and a scrape holds prometheus_client's lock of all multi-process values while it sets the
    RSS gauge (and imports what it first needs): a child forked then would wait for that lock for good at its
    first metric update. See matteflow/forksafe.py."""

    def deferring(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        with fork_deferred():
            return app(environ, start_response)

    return deferring


def _serve_in_thread(app: Callable[..., Any], host: str, port: int) -> None:
    """prometheus_client's own threaded, silent WSGI server, in a daemon thread."""
    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_SilentHandler)
    threading.Thread(target=server.serve_forever, name="matteflow-metrics", daemon=True).start()
